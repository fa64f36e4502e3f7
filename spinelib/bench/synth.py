"""Benchmark entry ``synth_cohort``: generate the profile's cohort with one job per core."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .harness import BenchWorkload
from ..profiles import get_profile

__all__ = ["cohort_workload"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _du_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cohort_workload(workdir: Path, profile: str) -> BenchWorkload:
    """Each repeat writes the whole cohort of ``profile`` from scratch (no resume)."""
    from ..synth.cohort import generate_cohort
    from ..synth.config import SynthConfig

    params = get_profile(profile)
    config = SynthConfig.from_profile(params)
    jobs = _cores()
    workdir = Path(workdir)
    out = workdir / "cohort"
    extra: dict = {"jobs": jobs, "profile_params": {k: params[k] for k in ("n_subjects", "mri_voxel_mm", "dxa_pixel_mm")}}

    def run() -> int:
        if out.exists():
            shutil.rmtree(out)
        generate_cohort(out, config, jobs=jobs, progress=False)
        extra["disk_bytes"] = _du_bytes(out)
        extra["disk_mb_per_subject"] = extra["disk_bytes"] / 2**20 / config.n_subjects
        return config.n_subjects

    def teardown() -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    return BenchWorkload(run=run, unit="subjects", teardown=teardown, extra=extra,
                         description=f"synthetic cohort, profile {profile}, {params['n_subjects']} subjects, {jobs} jobs")
