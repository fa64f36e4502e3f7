"""Benchmark entry ``align_pair``: both alignment stages on synthetic pairs, one core.

Setup (untimed) writes a few subjects of the profile's synthetic cohort and loads
them; each timed repeat aligns every loaded pair at the profile's ``align_*``
settings. Nothing here starts threads: scipy's FFTs run on one worker by default
and torch is not involved.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["N_PAIRS", "pair_workload"]

#: Pairs aligned per timed repeat.
N_PAIRS = 8


def pair_workload(workdir: Path, profile: str, *, n_pairs: int = N_PAIRS):
    """:class:`spinelib.bench.harness.BenchWorkload` timing :func:`spinelib.align.align_pair`."""
    from .harness import BenchWorkload
    from ..io import load_subject, read_manifest
    from ..profiles import get_profile
    from ..synth.cohort import generate_cohort
    from ..synth.config import SynthConfig
    from ..align.config import AlignConfig
    from ..align.pair import align_pair

    params = get_profile(profile, {"n_subjects": int(n_pairs)})
    manifest = generate_cohort(Path(workdir) / "cohort", SynthConfig.from_profile(params), jobs=1)
    subjects = [load_subject(row) for row in read_manifest(manifest).to_dict(orient="records")]
    config = AlignConfig.from_profile(params)

    def run() -> int:
        for s in subjects:
            align_pair(s.dxa, s.fat.data, s.water.data, s.seg.data, s.fat.affine, config)
        return len(subjects)

    return BenchWorkload(
        run=run,
        unit="pairs",
        description=f"two-stage DXA<->MRI alignment of {len(subjects)} synthetic '{profile}' pairs, one core",
        extra={"align_pixel_mm": config.pixel_mm, "align_angle_range_deg": config.angle_range_deg},
    )
