"""Curve targets of a cohort: alignment, then the six curves read off the aligned MRI spine.

This is the paper's target construction (Figure 3): the 3D spine segmented in MRI is
placed in DXA coordinates through the estimated two-stage alignment, and the six curves
are read off it (:func:`spinelib.shape.curves.column_curves`). Each subject is loaded once;
a subject that fails to load or to align is reported with its reason and gets no
target, never silently dropped.

Synthetic subjects also get the curves through the TRUE transform, so the notebook can
report how much alignment error moves the targets (label noise).

Truth targets (synthetic cohorts)
---------------------------------
The headline evaluation measures models against what the DXA really shows: curves read
through the TRUE DXA->MRI transform off the DXA-session anatomy (the spine after the
posture change between the two sessions; ``truth.json`` key ``"dxa_session_seg"`` names
its label volume, on the grid of ``seg.nii.gz``), with the true table plane. Every
subject that loads and has a true transform gets them, whether its alignment was trusted
or not (a network never needs the MRI to predict). A cohort written before that label
volume existed falls back to ``seg.nii.gz`` (the MRI-session anatomy), and the
``anatomy`` of the subject says so. :func:`prepare_cohort_targets` returns both sets;
:data:`TRUTH_TARGETS_FILE` is where the alignment section writes the truth set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..shape.curves import SpineCurves, column_curves, estimate_table_y
from ..errors import InvalidArgumentError, ShapeError, SpineLibError, UnreadableFileError
from ..io import read_arrays, write_arrays
from ..geometry.transform import PlanarTransform

if TYPE_CHECKING:
    from ..util.workers import Engine, Shard

log = logging.getLogger(__name__)

__all__ = ["TargetSet", "CohortTargets", "ANATOMY_DXA", "ANATOMY_MRI", "TRUTH_TARGETS_FILE",
           "TRUTH_TABLE_COLUMNS", "write_targets", "read_targets", "subject_record", "subject_targets",
           "dxa_session_seg_path", "truth_curves", "prepare_cohort", "prepare_cohort_targets",
           "align_cohort_targets", "target_store", "STORE_PARAMS"]

#: ``TargetSet.anatomy`` of curves read off the DXA-session spine (``seg_dxa.nii.gz``).
ANATOMY_DXA = "dxa_session"
#: ``TargetSet.anatomy`` of curves read off the MRI-session spine (``seg.nii.gz``).
ANATOMY_MRI = "mri_session"
#: File name (in the run folder) of the truth targets written by the alignment section.
TRUTH_TARGETS_FILE = "truth_targets.npz"
#: Columns of the per-subject record of the truth targets (``tables/truth_targets.csv``).
TRUTH_TABLE_COLUMNS: tuple[str, ...] = ("subject_id", "split", "has_truth_targets", "anatomy",
                                        "table_plane", "reason")


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
    anatomy : (N,) str, which session's spine the curves were read off: :data:`ANATOMY_MRI`
        (``seg.nii.gz``; the default) or :data:`ANATOMY_DXA` (``seg_dxa.nii.gz``).
    """

    subject_id: np.ndarray
    split: np.ndarray
    values: np.ndarray
    extent_mm: np.ndarray
    table_y_mm: np.ndarray
    values_true: np.ndarray
    extent_true_mm: np.ndarray
    anatomy: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.subject_id)
        if self.anatomy is None:
            object.__setattr__(self, "anatomy", np.full(n, ANATOMY_MRI, dtype="<U16"))
        anatomy = np.asarray(self.anatomy, dtype=str)
        if anatomy.shape != (n,):
            raise ShapeError(f"anatomy must have {n} entries, got shape {anatomy.shape}")
        bad = sorted(set(anatomy.tolist()) - {ANATOMY_MRI, ANATOMY_DXA})
        if bad:
            raise InvalidArgumentError(f"anatomy must be {ANATOMY_MRI!r} or {ANATOMY_DXA!r}, got {bad}")
        object.__setattr__(self, "anatomy", anatomy)
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
        return self.take(np.nonzero(np.isin(self.split, splits))[0])

    def take(self, index: Sequence[int] | np.ndarray) -> "TargetSet":
        """The subjects at positions ``index`` (in that order)."""
        idx = np.asarray(index, dtype=int).reshape(-1)
        return TargetSet(*(np.asarray(getattr(self, f))[idx] for f in _FIELDS + ("anatomy",)))

    def subset(self, subject_ids: Sequence[str]) -> "TargetSet":
        """The listed subjects, in that order.

        Raises
        ------
        InvalidArgumentError
            A listed subject has no targets.
        """
        return self.take([self.index(str(s)) for s in subject_ids])


_FIELDS = ("subject_id", "split", "values", "extent_mm", "table_y_mm", "values_true", "extent_true_mm")


def write_targets(path: str | Path, targets: TargetSet) -> Path:
    """Write a :class:`TargetSet` as ``targets.npz`` atomically (no pickles inside)."""
    return write_arrays(path, {f: getattr(targets, f) for f in _FIELDS + ("anatomy",)})


def read_targets(path: str | Path) -> TargetSet:
    """Read a targets file written by :func:`write_targets` (a file without ``anatomy``,
    written before it existed, reads as MRI-session anatomy)."""
    arrays = read_arrays(path, what="targets file (written by the alignment section)")
    missing = [f for f in _FIELDS if f not in arrays]
    if missing:
        raise UnreadableFileError(f"{path} is not a targets file: it lacks {missing}")
    return TargetSet(*(arrays[f] for f in _FIELDS), anatomy=arrays.get("anatomy"))


def dxa_session_seg_path(truth: Mapping[str, Any] | None, truth_path: str | Path | None) -> Path | None:
    """The DXA-session label volume a truth record names (``"dxa_session_seg"``, relative to
    the folder of ``truth_path``), or ``None`` when it names none or the file is absent."""
    if not truth or not truth_path or not str(truth_path).strip():
        return None
    name = truth.get("dxa_session_seg")
    if not isinstance(name, str) or not name.strip():
        return None
    p = Path(name)
    p = p if p.is_absolute() else Path(truth_path).parent / p
    return p if p.is_file() else None


def truth_curves(subject: Any, truth_path: str | Path | None, n_levels: int,
                 estimated_table_y: float | None = None) -> tuple[SpineCurves, float, str, str]:
    """Curves of one loaded synthetic subject through its TRUE transform, DXA-session anatomy.

    Parameters
    ----------
    subject : a :class:`spinelib.io.Subject` whose ``truth`` holds ``"transform"``.
    truth_path : its ``truth.json`` (``"dxa_session_seg"`` is relative to its folder).
    n_levels : K.
    estimated_table_y : the table plane measured on the MRI, used when the truth record
        has no ``"table_y_mm"``.

    Returns
    -------
    (curves, table_y_mm, anatomy, table_plane): ``anatomy`` is :data:`ANATOMY_DXA` when
    ``seg_dxa`` was read, :data:`ANATOMY_MRI` when the cohort has none (``seg.nii.gz`` is
    used instead); ``table_plane`` is ``"true"`` or ``"estimated"``.

    Raises
    ------
    InvalidArgumentError
        The subject has no true transform (real data), or no table plane is known.
    ShapeError
        ``seg_dxa`` is not on the grid (shape, affine) of ``seg``.
    SpineLibError
        Reading ``seg_dxa`` or reading the curves failed.
    """
    from ..io import read_volume

    truth = getattr(subject, "truth", None)
    if not truth or "transform" not in truth:
        raise InvalidArgumentError(f"subject {getattr(subject, 'id', '?')!r} has no true transform (real data?)")
    true = PlanarTransform.from_dict(truth["transform"])
    seg = subject.seg
    anatomy = ANATOMY_MRI
    p = dxa_session_seg_path(truth, truth_path)
    if p is not None:
        seg_dxa = read_volume(p, kind="seg")
        if seg_dxa.shape != seg.shape or not np.allclose(seg_dxa.affine, seg.affine, atol=1e-3, rtol=0):
            raise ShapeError(f"{p} is not on the grid of {seg.path} (shape {seg_dxa.shape} vs {seg.shape})")
        seg, anatomy = seg_dxa, ANATOMY_DXA
    ty = truth.get("table_y_mm")
    if isinstance(ty, (int, float)) and not isinstance(ty, bool) and np.isfinite(ty):
        table_y, plane = float(ty), "true"
    elif estimated_table_y is not None and np.isfinite(estimated_table_y):
        table_y, plane = float(estimated_table_y), "estimated"
    else:
        raise InvalidArgumentError("no table plane: the truth record has no table_y_mm and none was measured")
    cur = column_curves(seg.data, seg.affine, true, subject.dxa.shape, tuple(subject.dxa.pixel_spacing_mm),
                        table_y, int(n_levels))
    return cur, table_y, anatomy, plane


def subject_targets(row: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[dict, tuple | None, dict]:
    """Load, align and read the targets of one manifest row, and its truth targets.

    Returns
    -------
    (alignment record, targets, truth record): ``targets`` is ``None`` for an untrusted
    or failed subject, else ``(values (6, K), extent (2,), table_y, values_true,
    extent_true)`` (estimated alignment, MRI-session anatomy). The truth record has
    :data:`TRUTH_TABLE_COLUMNS` and, when ``has_truth_targets``, ``"curves"``
    (:class:`SpineCurves` of :func:`truth_curves`) and ``"table_y_mm"``; its ``reason``
    says why a subject has none, or that ``seg.nii.gz`` stood in for a missing
    ``seg_dxa``.
    """
    from ..align.cohort import align_loaded
    from ..io import load_subject

    sid, split = str(row.get("subject_id")), str(row.get("split"))
    trec: dict[str, Any] = {"subject_id": sid, "split": split, "has_truth_targets": False, "anatomy": "",
                            "table_plane": "", "reason": ""}
    try:
        # pickled DXAs run code when read: only with the run's explicit opt-in
        subj = load_subject(dict(row), allow_pickle=bool(params.get("allow_pickle", False)))
    except SpineLibError as exc:
        rec = align_loaded(None, dict(row), params)
        rec["reason"] = f"load failed: {type(exc).__name__}: {exc}"
        trec["reason"] = rec["reason"]
        return rec, None, trec
    rec = align_loaded(subj, dict(row), params)
    k = int(params["n_levels"])
    table_y = est_targets = None
    try:
        table_y = estimate_table_y(subj.fat.data, subj.water.data, subj.fat.affine)
    except SpineLibError as exc:
        if rec["trusted"]:
            rec["trusted"] = False
            rec["reason"] = f"targets failed: {type(exc).__name__}: {exc}"
    if rec["trusted"]:
        try:
            est = PlanarTransform.from_dict(rec)
            cur = column_curves(subj.seg.data, subj.seg.affine, est, subj.dxa.shape,
                                tuple(subj.dxa.pixel_spacing_mm), table_y, k)
            vt, et = np.full((6, k), np.nan), np.full(2, np.nan)
            if subj.truth is not None and "transform" in subj.truth:
                true = PlanarTransform.from_dict(subj.truth["transform"])
                tc = column_curves(subj.seg.data, subj.seg.affine, true, subj.dxa.shape,
                                   tuple(subj.dxa.pixel_spacing_mm), table_y, k)
                vt, et = tc.values, tc.extent_mm
            est_targets = (cur.values, cur.extent_mm, table_y, vt, et)
        except SpineLibError as exc:
            rec["trusted"] = False
            rec["reason"] = f"targets failed: {type(exc).__name__}: {exc}"
    if subj.truth is None or "transform" not in subj.truth:
        trec["reason"] = "no true transform (real data)"
        return rec, est_targets, trec
    try:
        cur, ty, anatomy, plane = truth_curves(subj, row.get("truth_path"), k, table_y)
    except SpineLibError as exc:
        trec["reason"] = f"truth targets failed: {type(exc).__name__}: {exc}"
        return rec, est_targets, trec
    trec.update(has_truth_targets=True, anatomy=anatomy, table_plane=plane, curves=cur, table_y_mm=ty,
                reason="" if anatomy == ANATOMY_DXA else "no seg_dxa (DXA-session anatomy): seg.nii.gz used")
    return rec, est_targets, trec


def subject_record(row: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[dict, tuple | None]:
    """Load, align and read the targets of one manifest row (:func:`subject_targets` without
    the truth targets).

    Returns
    -------
    (alignment record, targets) where targets is ``None`` for an untrusted or failed
    subject, else ``(values (6, K), extent (2,), table_y, values_true, extent_true)``.
    """
    rec, est, _ = subject_targets(row, params)
    return rec, est


#: Profile parameters a subject's targets depend on (with its files): they name the store.
STORE_PARAMS: tuple[str, ...] = ("align_pixel_mm", "align_angle_range_deg", "align_min_score",
                                 "align_min_stage1_score", "n_levels", "allow_pickle")


def _cohort_item(args: tuple[dict, dict]) -> tuple[dict, tuple | None, dict]:
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


def target_store(run_dir: str | Path, params: Mapping[str, Any]) -> Path:
    """Where a run keeps each subject's alignment and targets (``cache/targets-<digest>``)."""
    from ..io.runfolder import run_paths
    from ..util.workers import store_folder

    return store_folder(run_paths(run_dir)["cache"], "targets", {k: params.get(k) for k in STORE_PARAMS})


def _check_cohort_args(params: Mapping[str, Any]) -> None:
    missing = [k for k in STORE_PARAMS if k not in params and k != "allow_pickle"]
    if missing:
        raise InvalidArgumentError(f"params lack {', '.join(missing)}")


def align_cohort_targets(manifest_df: Any, params: Mapping[str, Any], *, jobs: "int | Engine" = 1,
                         shard: "Shard | None" = None, store: str | Path | None = None,
                         progress: bool = True) -> list[tuple[dict, tuple | None, dict]]:
    """Align and read the targets of the manifest rows of ``shard``; one result per row.

    The per-subject half of :func:`prepare_cohort_targets`, which a cluster runs shard by
    shard (``spinelib align --shard I/N``) into a shared ``store``.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    params : profile parameters (:data:`STORE_PARAMS`).
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine`.
    shard : the rows to do (all by default).
    store : folder of stored per-subject results (:func:`target_store`): read when there,
        written when computed.

    Returns
    -------
    list of ``(alignment record, targets or None, truth record)`` (:func:`subject_targets`,
    curves as ``{"values", "extent_mm"}``), one per row of the shard, in manifest order.
    """
    from ..align.cohort import align_loaded
    from ..util.workers import Failed, Shard, fan_out

    _check_cohort_args(params)
    p = {k: params[k] for k in params if k in STORE_PARAMS}
    p.setdefault("allow_pickle", False)
    every = [dict(r) for r in manifest_df.to_dict(orient="records")]
    rows = [every[i] for i in (shard or Shard()).positions(len(every))]
    res = fan_out(_cohort_item, [(r, p) for r in rows], keys=[_file_key(r) for r in rows], engine=jobs,
                  desc="align + targets", unit="subject", progress=progress, store=store)
    out = []
    for row, r in zip(rows, res):
        if isinstance(r, Failed):
            rec = align_loaded(None, row, p)
            rec["reason"] = f"failed: {r.reason}"
            r = (rec, None, {"subject_id": rec["subject_id"], "split": rec["split"], "has_truth_targets": False,
                             "anatomy": "", "table_plane": "", "reason": rec["reason"]})
        rec, est, trec = r
        # a stored result may come from a run that saw other (pseudonymised) ids
        for d in (rec, trec):
            d.update(subject_id=str(row["subject_id"]), split=str(row["split"]))
        out.append((rec, est, trec))
    return out


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


def prepare_cohort_targets(manifest_df: Any, params: Mapping[str, Any], *, jobs: "int | Engine" = 1,
                           progress: bool = True, store: str | Path | None = None) -> CohortTargets:
    """Align every subject, read its targets and, on synthetic cohorts, its truth targets.

    Parameters
    ----------
    manifest_df : manifest DataFrame (:func:`spinelib.io.read_manifest`).
    params : profile parameters (alignment settings and ``n_levels``).
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine` (a Dask cluster).
    store : folder of stored per-subject results (:func:`target_store`); a killed run
        resumes from it, and the shards of ``spinelib align --shard`` fill it.

    Returns
    -------
    :class:`CohortTargets`.
    """
    import pandas as pd

    from ..align.cohort import ALIGNMENT_COLUMNS

    out = align_cohort_targets(manifest_df, params, jobs=jobs, store=store, progress=progress)
    table = pd.DataFrame.from_records([r for r, _, _ in out], columns=list(ALIGNMENT_COLUMNS))
    table["trusted"] = table["trusted"].astype(bool)
    k = int(params["n_levels"])
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
    (alignment table with one row per manifest row, TargetSet of the trusted subjects);
    :func:`prepare_cohort_targets` also gives the truth targets.
    """
    res = prepare_cohort_targets(manifest_df, params, jobs=jobs, progress=progress)
    return res.alignment, res.targets
