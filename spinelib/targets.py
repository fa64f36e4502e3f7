"""Curve targets of a cohort: alignment, then the six curves read off the aligned MRI spine.

This is the paper's target construction (Figure 3): the 3D spine segmented in MRI is
placed in DXA coordinates through the estimated two-stage alignment, and the six curves
are read off it (:func:`spinelib.curves.column_curves`). Each subject is loaded once;
a subject that fails to load or to align is reported with its reason and gets no
target, never silently dropped.

Synthetic subjects also get the curves through the TRUE transform, so the notebook can
report how much alignment error moves the targets (label noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .curves import SpineCurves, column_curves, estimate_table_y
from .errors import InvalidArgumentError, ShapeError, SpineLibError, UnreadableFileError
from .io import read_arrays, write_arrays
from .transform import PlanarTransform

log = logging.getLogger(__name__)

__all__ = ["TargetSet", "write_targets", "read_targets", "subject_record", "prepare_cohort"]


@dataclass(frozen=True)
class TargetSet:
    """Targets of N subjects with K levels.

    Attributes
    ----------
    subject_id : (N,) str.
    split : (N,) str.
    values : (N, 6, K) float, curves in mm (``SpineCurves.values``).
    extent_mm : (N, 2) float, (top, bottom) row-mm.
    table_y_mm : (N,) float, the table plane measured on each MRI.
    values_true, extent_true_mm : the same through the TRUE transform (synthetic cohorts),
        NaN where unknown.
    """

    subject_id: np.ndarray
    split: np.ndarray
    values: np.ndarray
    extent_mm: np.ndarray
    table_y_mm: np.ndarray
    values_true: np.ndarray
    extent_true_mm: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.subject_id)
        if self.values.ndim != 3 or self.values.shape[:2] != (n, 6):
            raise ShapeError(f"values must be (N, 6, K) with N={n}, got {self.values.shape}")
        for name in ("split", "table_y_mm"):
            if len(getattr(self, name)) != n:
                raise ShapeError(f"{name} must have {n} entries")
        if self.extent_mm.shape != (n, 2) or self.values_true.shape != self.values.shape:
            raise ShapeError("extent_mm / values_true shapes do not match values")

    @property
    def n_levels(self) -> int:
        return int(self.values.shape[2])

    def __len__(self) -> int:
        return len(self.subject_id)

    def curves(self, i: int, *, true: bool = False) -> SpineCurves:
        """The i-th subject's targets as :class:`SpineCurves` (``true``: through the true transform)."""
        if true:
            return SpineCurves(self.values_true[i], self.extent_true_mm[i])
        return SpineCurves(self.values[i], self.extent_mm[i])

    def index(self, subject_id: str) -> int:
        hits = np.nonzero(self.subject_id == subject_id)[0]
        if hits.size == 0:
            raise InvalidArgumentError(f"no targets for subject {subject_id!r}")
        return int(hits[0])

    def select(self, split: str | Sequence[str]) -> "TargetSet":
        """The subjects of one split (or of several)."""
        splits = [split] if isinstance(split, str) else list(split)
        m = np.isin(self.split, splits)
        return TargetSet(*(getattr(self, f)[m] for f in _FIELDS))


_FIELDS = ("subject_id", "split", "values", "extent_mm", "table_y_mm", "values_true", "extent_true_mm")


def write_targets(path: str | Path, targets: TargetSet) -> Path:
    """Write a :class:`TargetSet` as ``targets.npz`` atomically (no pickles inside)."""
    return write_arrays(path, {f: getattr(targets, f) for f in _FIELDS})


def read_targets(path: str | Path) -> TargetSet:
    """Read ``targets.npz`` written by :func:`write_targets`."""
    arrays = read_arrays(path, what="targets file (written by the alignment section)")
    missing = [f for f in _FIELDS if f not in arrays]
    if missing:
        raise UnreadableFileError(f"{path} is not a targets file: it lacks {missing}")
    return TargetSet(*(arrays[f] for f in _FIELDS))


def subject_record(row: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[dict, tuple | None]:
    """Load, align and read the targets of one manifest row.

    Returns
    -------
    (alignment record, targets) where targets is ``None`` for an untrusted or failed
    subject, else ``(values (6, K), extent (2,), table_y, values_true, extent_true)``.
    """
    from .align.cohort import align_loaded
    from .io import load_subject

    try:
        # pickled DXAs run code when read: only with the run's explicit opt-in
        subj = load_subject(dict(row), allow_pickle=bool(params.get("allow_pickle", False)))
    except SpineLibError as exc:
        rec = align_loaded(None, dict(row), params)
        rec["reason"] = f"load failed: {type(exc).__name__}: {exc}"
        return rec, None
    rec = align_loaded(subj, dict(row), params)
    if not rec["trusted"]:
        return rec, None
    k = int(params["n_levels"])
    try:
        table_y = estimate_table_y(subj.fat.data, subj.water.data, subj.fat.affine)
        est = PlanarTransform(rec["theta_deg"], rec["tx_mm"], rec["ty_mm"])
        cur = column_curves(subj.seg.data, subj.seg.affine, est, subj.dxa.shape,
                            tuple(subj.dxa.pixel_spacing_mm), table_y, k)
        vt, et = np.full((6, k), np.nan), np.full(2, np.nan)
        if subj.truth is not None and "transform" in subj.truth:
            true = PlanarTransform.from_dict(subj.truth["transform"])
            tc = column_curves(subj.seg.data, subj.seg.affine, true, subj.dxa.shape,
                               tuple(subj.dxa.pixel_spacing_mm), table_y, k)
            vt, et = tc.values, tc.extent_mm
    except SpineLibError as exc:
        rec["trusted"] = False
        rec["reason"] = f"targets failed: {type(exc).__name__}: {exc}"
        return rec, None
    return rec, (cur.values, cur.extent_mm, table_y, vt, et)


def _one(args: tuple[dict, dict]) -> tuple[dict, tuple | None]:
    return subject_record(*args)


def prepare_cohort(manifest_df: Any, params: Mapping[str, Any], *, jobs: int = 1,
                   progress: bool = True) -> tuple[Any, TargetSet]:
    """Align every subject and read its targets.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    params : profile parameters (alignment settings and ``n_levels``).
    jobs : worker processes.

    Returns
    -------
    (alignment table with one row per manifest row, TargetSet of the trusted subjects)
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .align.cohort import ALIGNMENT_COLUMNS

    if int(jobs) < 1:
        raise InvalidArgumentError(f"jobs must be >= 1, got {jobs}")
    rows = [dict(r) for r in manifest_df.to_dict(orient="records")]
    bar = dict(total=len(rows), desc="align + targets", unit="subject", disable=not progress)
    if int(jobs) == 1 or len(rows) < 2:
        out = [subject_record(r, params) for r in tqdm(rows, **bar)]
    else:
        from .workers import process_pool  # workers die with this process

        with process_pool(int(jobs)) as ex:
            out = list(tqdm(ex.map(_one, [(r, dict(params)) for r in rows], chunksize=2), **bar))
    table = pd.DataFrame.from_records([r for r, _ in out], columns=list(ALIGNMENT_COLUMNS))
    table["trusted"] = table["trusted"].astype(bool)
    ok = [(r, t) for r, t in out if t is not None]
    k = int(params["n_levels"])
    targets = TargetSet(
        subject_id=np.array([r["subject_id"] for r, _ in ok], dtype=str),
        split=np.array([r["split"] for r, _ in ok], dtype=str),
        values=np.array([t[0] for _, t in ok], dtype=float).reshape(-1, 6, k),
        extent_mm=np.array([t[1] for _, t in ok], dtype=float).reshape(-1, 2),
        table_y_mm=np.array([t[2] for _, t in ok], dtype=float),
        values_true=np.array([t[3] for _, t in ok], dtype=float).reshape(-1, 6, k),
        extent_true_mm=np.array([t[4] for _, t in ok], dtype=float).reshape(-1, 2),
    )
    log.info("%d of %d subjects aligned and targeted; %d rejected", len(targets), len(rows),
             len(rows) - len(targets))
    return table, targets
