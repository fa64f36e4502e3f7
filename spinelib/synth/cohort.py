"""Write a synthetic cohort to disk: subject folders, then ``manifest.csv`` (formats in :mod:`spinelib.io`).

* Deterministic: subject ``i`` depends only on ``(seed, i)`` and the cohort's sizes
  (:class:`~spinelib.synth.config.SynthConfig`), and
  every file writer is byte-deterministic, so two runs give identical files whatever
  ``jobs`` is.
* Fanned out by :func:`spinelib.util.workers.fan_out` (local processes or a Dask cluster) and
  shardable (``Shard``): N shards write disjoint subjects; the manifest comes last.
* Resumable: each subject folder is written whole or not at all (``atomic_dir``); a
  complete folder whose ``truth.json`` matches the request is skipped on the next run.
  The manifest is written last, atomically.
* Splits are by subject, fixed by the seed: a seeded permutation of the indices cut by
  ``split_fractions`` (train, val, test).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..util.atomic import atomic_dir, ensure_writable_dir, remove_stale_temporaries, write_json_atomic
from ..errors import InvalidArgumentError, SubjectsFailedError
from ..io.manifest import SPLITS, check_split_fractions, manifest_row
from ..util.workers import Engine, Failed, Shard, fan_out
from .config import SynthConfig
from .subject import make_subject, subject_id, subject_signature

__all__ = ["generate_cohort", "assign_splits", "write_subject", "estimate_subject_mb", "SUBJECT_FILES"]

log = logging.getLogger("spinelib.synth")

#: files of one subject folder; ``seg_dxa.nii.gz`` is the label volume of the DXA-session
#: anatomy (named by ``truth.json``'s ``dxa_session_seg``), not listed in the manifest
SUBJECT_FILES = ("dxa.npz", "mri_fat.nii.gz", "mri_water.nii.gz", "seg.nii.gz", "seg_dxa.nii.gz", "truth.json")


def assign_splits(n: int, seed: int, fractions) -> list[str]:
    """Split name of each subject index: a seeded permutation cut by ``fractions``.

    Validation and test get at least one subject each when ``n >= 3`` and their
    fraction is positive.
    """
    f = check_split_fractions(fractions)
    n_val = int(round(f[1] * n))
    n_test = int(round(f[2] * n))
    if n >= 3:
        n_val = max(n_val, 1) if f[1] > 0 else 0
        n_test = max(n_test, 1) if f[2] > 0 else 0
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).permutation(n)
    out = ["train"] * n
    for k, idx in enumerate(perm):
        if k < n_test:
            out[idx] = "test"
        elif k < n_test + n_val:
            out[idx] = "val"
    return out


def _is_complete(folder: Path, index: int, config: SynthConfig) -> bool:
    """Whether ``folder`` holds every file of subject ``index`` generated with this signature."""
    if not all((folder / f).is_file() for f in SUBJECT_FILES):
        return False
    try:
        truth = json.loads((folder / "truth.json").read_text())
    except (OSError, ValueError):
        return False
    sig = truth.get("signature")
    return truth.get("index") == index and sig == subject_signature(config)


def write_subject(folder: str | Path, index: int, config: SynthConfig) -> str:
    """Generate subject ``index`` and write its folder atomically; returns its id."""
    return _write(folder, make_subject(index, config), config)


def _write(folder: str | Path, s, config: SynthConfig) -> str:
    """Write the files of :class:`~spinelib.synth.subject.Subject` ``s`` into ``folder`` atomically."""
    from ..io import write_dxa, write_nifti, write_truth

    s.truth["signature"] = subject_signature(config)
    with atomic_dir(folder) as tmp:
        write_dxa(tmp / "dxa.npz", s.bone, s.tissue, s.pixel_spacing_mm, lateral_bone=s.lateral_bone,
                  lateral_tissue=s.lateral_tissue, lateral_pixel_spacing_mm=s.lateral_pixel_spacing_mm)
        write_nifti(tmp / "mri_fat.nii.gz", s.fat, s.affine)
        write_nifti(tmp / "mri_water.nii.gz", s.water, s.affine)
        write_nifti(tmp / "seg.nii.gz", s.seg, s.affine)
        write_nifti(tmp / s.truth["dxa_session_seg"], s.seg_dxa, s.affine)
        write_truth(tmp / "truth.json", s.truth)
    return s.subject_id


def _write_item(item: tuple[str, int, SynthConfig]) -> str:
    """Fan-out item: write one subject folder (:func:`write_subject`)."""
    return write_subject(*item)


def estimate_subject_mb(config: SynthConfig) -> float:
    """Disk space one subject folder needs, in MiB, with a safety margin of 1.5.

    Measured: 0.65 MiB at 6 mm MRI voxels and 4.4 mm DXA pixels (smoke); the three
    compressed volumes dominate and scale with the number of voxels, the DXA with pixels.
    """
    voxel = float(np.prod(np.asarray(config.mri_voxel_mm, float)))
    pixel = config.dxa_pixel_mm ** 2
    return 1.5 * (0.55 * 216.0 / voxel + 0.1 * 19.36 / pixel)


def generate_cohort(out_dir: str | Path, config: SynthConfig, *, jobs: int | Engine = 1, shard: Shard | None = None,
                    progress: bool = True) -> Path | None:
    """Generate ``config.n_subjects`` subjects into ``out_dir``; returns ``manifest.csv``'s path.

    Parameters
    ----------
    out_dir : cohort folder (created). Existing complete subjects are kept.
    config : the cohort's settings (:class:`~spinelib.synth.config.SynthConfig`, from a
        profile with :meth:`~spinelib.synth.config.SynthConfig.from_profile`).
    jobs : worker processes (1: in this process), or an :class:`~spinelib.util.workers.Engine`
        (a Dask cluster).
    shard : write only this shard's subjects (:class:`~spinelib.util.workers.Shard`); the
        manifest is written by whichever shard finds every subject complete.
    progress : show a tqdm progress bar.

    Returns
    -------
    The manifest's path, or ``None`` when subjects of other shards are still missing.

    Raises
    ------
    SubjectsFailedError
        Some subjects could not be written (each listed with its reason; the others were).
    """
    if not isinstance(config, SynthConfig):
        raise InvalidArgumentError(f"config must be a SynthConfig (SynthConfig.from_profile(params)), "
                                   f"got {type(config).__name__}")
    n = config.n_subjects
    engine = Engine.of(jobs)
    shard = shard or Shard()
    out = ensure_writable_dir(out_dir, probe=True)
    if shard.is_whole:  # shards run at once: another one's temporaries are not stale
        remove_stale_temporaries(out)
    splits = assign_splits(n, config.seed, config.split_fractions)
    todo = [i for i in shard.positions(n) if not _is_complete(out / subject_id(i), i, config)]
    if todo:
        # the old manifest may describe subjects of another generator version or profile:
        # until every subject is rewritten, no manifest should present a mixed cohort
        for stale in ("manifest.csv", "cohort.json"):
            (out / stale).unlink(missing_ok=True)
    # fail before any work when the subjects still to write will not fit
    ensure_writable_dir(out, min_free_mb=estimate_subject_mb(config) * len(todo))
    log.info("cohort %s: %d subjects, shard %s, %d to generate on %s", out, n, shard, len(todo), engine.describe())
    _write_subjects(out, todo, config, engine, progress)
    if not shard.is_whole and not all(_is_complete(out / subject_id(i), i, config) for i in range(n)):
        log.info("shard %s done; the manifest is written when every shard is", shard)
        return None
    return _write_index(out, config, splits)


def _write_subjects(out: Path, todo: list[int], config: SynthConfig, engine: Engine, progress: bool) -> None:
    """Write the subjects ``todo`` through the fan-out; raise if any failed."""
    results = fan_out(_write_item, [(str(out / subject_id(i)), i, config) for i in todo],
                      keys=[subject_id(i) for i in todo], engine=engine, desc="synth", unit="subj", progress=progress)
    failed = [r for r in results if isinstance(r, Failed)]
    if failed:
        raise SubjectsFailedError(f"{len(failed)} of {len(todo)} subjects could not be written to {out} (a rerun "
                                  "resumes): " + "; ".join(f"{f.key}: {f.reason}" for f in failed[:10]))


def _write_index(out: Path, config: SynthConfig, splits: list[str]) -> Path:
    """Write ``cohort.json``, then ``manifest.csv`` (last: it marks the cohort complete); returns its path."""
    from ..io import write_manifest

    # only what defines the cohort (not how it was run), so reruns give identical bytes
    write_json_atomic(out / "cohort.json", {
        "n_subjects": config.n_subjects,
        "profile": config.profile,
        "split_fractions": list(config.split_fractions),
        "splits": {k: splits.count(k) for k in SPLITS},
        "signature": subject_signature(config),
    })
    return write_manifest(out / "manifest.csv",
                          [manifest_row(subject_id(i), splits[i], truth=True) for i in range(config.n_subjects)])
