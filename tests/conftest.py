"""Shared fixtures: one smoke cohort and one smoke run for the whole test session.

Generating the cohort and running the notebooks are the slow parts of the suite, so
every test that needs them shares these session fixtures instead of building its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SMOKE_SUBJECTS = 40


@pytest.fixture(scope="session")
def smoke_cohort(tmp_path_factory) -> Path:
    """Manifest path of a 40-subject synthetic cohort at the smoke profile."""
    from spinelib.profiles import get_profile
    from spinelib.synth.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort-smoke")
    params = get_profile("smoke", {"n_subjects": SMOKE_SUBJECTS})
    return generate_cohort(out, params, jobs=2, progress=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_cohort) -> Path:
    """A run folder with every section whose notebook exists executed at the smoke profile."""
    from spinelib.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("run-smoke")
    # from the first section on; sections whose notebook is not written stop the run quietly
    run_pipeline(run_dir, profile="smoke", data=str(smoke_cohort), sections="alignment", progress_bar=False)
    return run_dir
