"""A cohort's targets: every subject aligned and targeted through the fan-out, into a store.

:func:`prepare_cohort_targets` is the alignment section's step: it runs
:func:`spinelib.study.subject_targets.subject_targets` on every manifest row
(:func:`spinelib.util.workers.fan_out`), keeps each subject's result in the run's store
(:func:`target_store`) so that a killed run resumes, and gathers the alignment table, the
estimated targets, the truth targets and the truth table (:class:`CohortTargets`).
:func:`align_cohort_targets` is its per-subject half, which a cluster runs shard by shard
(``spinelib align --shard I/N``, :func:`align_into_store`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from .config import TargetConfig
from .subject_targets import TRUTH_TABLE_COLUMNS, _truth_record, subject_targets
from .targets import ANATOMY_MRI, TargetSet

if TYPE_CHECKING:
    from ..util.workers import Engine, Shard

log = logging.getLogger(__name__)

__all__ = ["CohortTargets", "target_store", "align_cohort_targets", "align_into_store",
           "prepare_cohort_targets", "prepare_cohort"]

def _cohort_item(args: tuple[dict, TargetConfig]) -> tuple[dict, tuple | None, dict]:
    """Fan-out item: :func:`subject_targets` as a plain record (curves as their arrays)."""
    rec, est, trec = subject_targets(*args)
    if "curves" in trec:
        trec["curves"] = {"values": trec["curves"].values, "extent_mm": trec["curves"].extent_mm}
    if est is not None:
        est = tuple(np.asarray(v, dtype=float) for v in est)
    return rec, est, trec


def _file_key(row: Mapping[str, Any]) -> str:
    """The identity of a subject's files (paths, sizes, modification times), for the store.

    A cohort rewritten in place (another generator version, a re-ingested visit) changes
    the key, so a stored result never outlives the files it was computed from.
    """
    import hashlib
    import os

    h = hashlib.sha256()
    for col in ("dxa_path", "mri_fat_path", "mri_water_path", "seg_path", "truth_path"):
        path = str(row.get(col) or "")
        h.update(f"{col}={path}".encode())
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        h.update(b"-" if st is None else f":{st.st_size}:{st.st_mtime_ns}".encode())
    # the DXA-session labels named by truth.json are written with it (one atomic folder)
    return "s" + h.hexdigest()[:32]


def target_store(run_dir: str | Path, config: TargetConfig) -> Path:
    """Where a run keeps each subject's alignment and targets (``cache/targets-<digest>``,
    the digest of :meth:`TargetConfig.key`: other settings, another folder)."""
    from ..io.runfolder import run_paths
    from ..util.workers import store_folder

    return store_folder(run_paths(run_dir)["cache"], "targets", _checked(config).key())


def _checked(config: TargetConfig) -> TargetConfig:
    if not isinstance(config, TargetConfig):
        raise InvalidArgumentError(f"config must be a TargetConfig (TargetConfig.from_profile(params)), "
                                   f"got {type(config).__name__}")
    return config


def _failed_result(row: dict, reason: str, config: TargetConfig) -> tuple[dict, None, dict]:
    """The result of a subject whose worker raised: untrusted, no targets, no truth targets."""
    from ..align.cohort import align_loaded

    rec = align_loaded(None, row, config.align)
    rec["reason"] = f"failed: {reason}"
    return rec, None, _truth_record(rec["subject_id"], rec["split"], rec["reason"])


def align_cohort_targets(manifest_df: Any, config: TargetConfig, *, jobs: "int | Engine" = 1,
                         shard: "Shard | None" = None, store: str | Path | None = None,
                         progress: bool = True) -> list[tuple[dict, tuple | None, dict]]:
    """Align and read the targets of the manifest rows of ``shard``; one result per row.

    The per-subject half of :func:`prepare_cohort_targets`, which a cluster runs shard by
    shard (``spinelib align --shard I/N``) into a shared ``store``.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    config : the target settings (:class:`~spinelib.study.config.TargetConfig`).
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine`.
    shard : the rows to do (all by default).
    store : folder of stored per-subject results (:func:`target_store`): read when there,
        written when computed.

    Returns
    -------
    list of ``(alignment record, targets or None, truth record)`` (:func:`subject_targets`,
    curves as ``{"values", "extent_mm"}``), one per row of the shard, in manifest order.
    """
    from ..util.workers import Failed, Shard, fan_out

    _checked(config)
    every = [dict(r) for r in manifest_df.to_dict(orient="records")]
    rows = [every[i] for i in (shard or Shard()).positions(len(every))]
    res = fan_out(_cohort_item, [(r, config) for r in rows], keys=[_file_key(r) for r in rows], engine=jobs,
                  desc="align + targets", unit="subject", progress=progress, store=store)
    out = []
    for row, r in zip(rows, res):
        rec, est, trec = _failed_result(row, r.reason, config) if isinstance(r, Failed) else r
        # a stored result may come from a run that saw other (pseudonymised) ids
        for d in (rec, trec):
            d.update(subject_id=str(row["subject_id"]), split=str(row["split"]))
        out.append((rec, est, trec))
    return out


def align_into_store(run_dir: str | Path, manifest_df: Any, config: TargetConfig, *,
                     jobs: "int | Engine" = 1, shard: "Shard | None" = None, progress: bool = True) -> str:
    """Align and target the rows of ``shard`` into the run's store (:func:`target_store`),
    where the alignment section reads them back (``spinelib align``).

    Returns
    -------
    One line: how many subjects were done, how many are trusted and how many failed to
    load or run.
    """
    store = target_store(run_dir, config)
    out = align_cohort_targets(manifest_df, config, jobs=jobs, shard=shard, store=store, progress=progress)
    trusted = sum(bool(r["trusted"]) for r, _, _ in out)
    failed = [r for r, _, _ in out if str(r["reason"]).startswith(("failed:", "load failed:"))]
    return f"{len(out)} subjects aligned into {store}: {trusted} trusted, {len(failed)} failed to load or run"


@dataclass(frozen=True)
class CohortTargets:
    """Everything the alignment section learns about a cohort.

    Attributes
    ----------
    alignment : DataFrame, one alignment row per manifest row (``ALIGNMENT_COLUMNS``).
    targets : TargetSet of the trusted subjects (estimated alignment, MRI-session anatomy):
        what the models train on, and the paper's way of measuring them.
    truth : TargetSet of every subject with truth targets (true transform, DXA-session
        anatomy where the cohort has it; see ``truth.anatomy``), rejected alignments
        included; empty on real data.
    truth_table : DataFrame with :data:`TRUTH_TABLE_COLUMNS`, one row per manifest row.
    """

    alignment: Any
    targets: TargetSet
    truth: TargetSet
    truth_table: Any


def _target_set(ok: Sequence[tuple[dict, tuple]], k: int) -> TargetSet:
    return TargetSet(
        subject_id=np.array([r["subject_id"] for r, _ in ok], dtype=str),
        split=np.array([r["split"] for r, _ in ok], dtype=str),
        values=np.array([t[0] for _, t in ok], dtype=float).reshape(-1, 6, k),
        extent_mm=np.array([t[1] for _, t in ok], dtype=float).reshape(-1, 2),
        table_y_mm=np.array([t[2] for _, t in ok], dtype=float),
        values_true=np.array([t[3] for _, t in ok], dtype=float).reshape(-1, 6, k),
        extent_true_mm=np.array([t[4] for _, t in ok], dtype=float).reshape(-1, 2),
        anatomy=np.array([t[5] if len(t) > 5 else ANATOMY_MRI for _, t in ok], dtype=str),
    )


def prepare_cohort_targets(manifest_df: Any, config: TargetConfig, *, jobs: "int | Engine" = 1,
                           progress: bool = True, store: str | Path | None = None) -> CohortTargets:
    """Align every subject, read its targets and, on synthetic cohorts, its truth targets.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    config : the target settings (:class:`~spinelib.study.config.TargetConfig`).
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine` (a Dask cluster).
    store : folder of stored per-subject results (:func:`target_store`); a killed run
        resumes from it, and the shards of ``spinelib align --shard`` fill it.

    Returns
    -------
    :class:`CohortTargets`.
    """
    import pandas as pd

    from ..align.cohort import ALIGNMENT_COLUMNS

    out = align_cohort_targets(manifest_df, config, jobs=jobs, store=store, progress=progress)
    table = pd.DataFrame.from_records([r for r, _, _ in out], columns=list(ALIGNMENT_COLUMNS))
    table["trusted"] = table["trusted"].astype(bool)
    k = config.n_levels
    targets = _target_set([(r, t) for r, t, _ in out if t is not None], k)
    truth_ok = [(tr, (tr["curves"]["values"], tr["curves"]["extent_mm"], tr["table_y_mm"], tr["curves"]["values"],
                      tr["curves"]["extent_mm"], tr["anatomy"])) for _, _, tr in out if tr["has_truth_targets"]]
    truth = _target_set(truth_ok, k)
    truth_table = pd.DataFrame.from_records([{c: tr[c] for c in TRUTH_TABLE_COLUMNS} for _, _, tr in out],
                                            columns=list(TRUTH_TABLE_COLUMNS))
    truth_table["has_truth_targets"] = truth_table["has_truth_targets"].astype(bool)
    log.info("%d of %d subjects aligned and targeted; %d rejected; %d with truth targets", len(targets),
             len(out), len(out) - len(targets), len(truth))
    return CohortTargets(table, targets, truth, truth_table)


def prepare_cohort(manifest_df: Any, config: TargetConfig, *, jobs: int = 1,
                   progress: bool = True) -> tuple[Any, TargetSet]:
    """Align every subject and read its targets.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    config : the target settings (:class:`~spinelib.study.config.TargetConfig`).
    jobs : worker processes.

    Returns
    -------
    (alignment table with one row per manifest row, TargetSet of the trusted subjects);
    :func:`prepare_cohort_targets` also gives the truth targets.
    """
    res = prepare_cohort_targets(manifest_df, config, jobs=jobs, progress=progress)
    return res.alignment, res.targets
