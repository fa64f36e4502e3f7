"""Shared fixtures: one smoke cohort and one smoke run for the whole test session.

Generating the cohort and running the notebooks are the slow parts of the suite, so
every test that needs them shares these session fixtures instead of building its own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from spinelib.synth.config import SynthConfig

SMOKE_SUBJECTS = 40


#: Helper modules of ``tests/data`` shared by several test modules.
DATA_MODULES: tuple[str, ...] = ("pipeline_fixtures", "ukb_zips", "totalseg_fixtures", "disk_cohort")


def _register_data_modules() -> None:
    """Make each ``tests/data/<name>.py`` importable as ``spinelib_tests_<name>``.

    ``tests`` is not a package; conftest is imported before any test module, so the test
    modules can simply ``import spinelib_tests_pipeline_fixtures as fx``.
    """
    for short in DATA_MODULES:
        name = f"spinelib_tests_{short}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "data" / f"{short}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


_register_data_modules()


@pytest.fixture(scope="session")
def smoke_cohort(tmp_path_factory) -> Path:
    """Manifest path of a 40-subject synthetic cohort at the smoke profile."""
    from spinelib.profiles import get_profile
    from spinelib.synth.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort-smoke")
    params = get_profile("smoke", {"n_subjects": SMOKE_SUBJECTS})
    return generate_cohort(out, SynthConfig.from_profile(params), jobs=2, progress=False)


@pytest.fixture(scope="session")
def smoke_shifted_cohort(tmp_path_factory) -> Path:
    """A small shifted cohort (another seed, more severe scoliosis) for generalisation."""
    from spinelib.profiles import get_profile
    from spinelib.synth.cohort import generate_cohort

    params = get_profile("smoke", {"n_subjects": 6, "seed": 7, "scoliosis_severity": 2.5, "posture_change_mm": 2.0})
    return generate_cohort(tmp_path_factory.mktemp("cohort-shifted"), SynthConfig.from_profile(params), jobs=1,
                           progress=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_cohort, smoke_shifted_cohort) -> Path:
    """A run folder with every section executed at the smoke profile (with a shifted cohort)."""
    from spinelib.run.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("run-smoke")
    run_pipeline(run_dir, profile="smoke", data=str(smoke_cohort),
                 overrides={"shifted_data": str(smoke_shifted_cohort)}, stream=None, progress_bar=False)
    return run_dir
