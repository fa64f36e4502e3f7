"""One subject's targets: load it, align it, read the six curves off the aligned MRI spine.

This is the paper's target construction (Figure 3): the 3D spine segmented in MRI is
placed in DXA coordinates through the estimated two-stage alignment, and the six curves
are read off it (:func:`spinelib.shape.extract.column_curves`). Each subject is loaded once;
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
``anatomy`` of the subject says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, SpineLibError
from ..geometry.transform import PlanarTransform
from ..shape.curves import SpineCurves
from ..shape.extract import column_curves
from ..shape.frame import SubjectFrame
from ..shape.table_plane import estimate_table_y
from .config import TargetConfig
from .targets import ANATOMY_DXA, ANATOMY_MRI

__all__ = ["TRUTH_TABLE_COLUMNS", "dxa_session_seg_path", "truth_curves", "subject_targets"]

#: Columns of the per-subject record of the truth targets (``tables/truth_targets.csv``).
TRUTH_TABLE_COLUMNS: tuple[str, ...] = ("subject_id", "split", "has_truth_targets", "anatomy",
                                        "table_plane", "reason")


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


def _curves_through(seg: Any, subject: Any, transform: PlanarTransform, table_y: float | None,
                    n_levels: int) -> SpineCurves:
    """The curves of label volume ``seg`` placed beside ``subject``'s DXA by ``transform``."""
    frame = SubjectFrame(transform, subject.dxa.shape, tuple(subject.dxa.pixel_spacing_mm), table_y)
    return column_curves(seg.data, seg.affine, frame, n_levels)


def _truth_table_plane(truth: Mapping[str, Any], estimated_table_y: float | None) -> tuple[float, str]:
    """The true table plane (mm) of a truth record, else the measured one; and which it is."""
    ty = truth.get("table_y_mm")
    if isinstance(ty, (int, float)) and not isinstance(ty, bool) and np.isfinite(ty):
        return float(ty), "true"
    if estimated_table_y is not None and np.isfinite(estimated_table_y):
        return float(estimated_table_y), "estimated"
    raise InvalidArgumentError("no table plane: the truth record has no table_y_mm and none was measured")


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
    table_y, plane = _truth_table_plane(truth, estimated_table_y)
    return _curves_through(seg, subject, true, table_y, int(n_levels)), table_y, anatomy, plane


def _truth_record(subject_id: str, split: str, reason: str = "") -> dict[str, Any]:
    """A truth record (:data:`TRUTH_TABLE_COLUMNS`) of a subject without truth targets."""
    return {"subject_id": subject_id, "split": split, "has_truth_targets": False, "anatomy": "",
            "table_plane": "", "reason": reason}


def _distrust(rec: dict[str, Any], exc: SpineLibError) -> None:
    """Mark an alignment record untrusted because its targets could not be read."""
    rec["trusted"] = False
    rec["reason"] = f"targets failed: {type(exc).__name__}: {exc}"


def _estimated_targets(subj: Any, rec: dict[str, Any], k: int) -> tuple[float | None, tuple | None]:
    """The measured table plane (None where it failed) and the targets through the estimated
    alignment, ``(values (6, K), extent (2,), table_y, values_true, extent_true)`` (None for
    an untrusted subject); a failure here distrusts ``rec``."""
    table_y = None
    try:
        table_y = estimate_table_y(subj.fat.data, subj.water.data, subj.fat.affine)
    except SpineLibError as exc:
        if rec["trusted"]:
            _distrust(rec, exc)
    if not rec["trusted"]:
        return table_y, None
    try:
        cur = _curves_through(subj.seg, subj, PlanarTransform.from_dict(rec), table_y, k)
        vt, et = np.full((6, k), np.nan), np.full(2, np.nan)
        if subj.truth is not None and "transform" in subj.truth:
            tc = _curves_through(subj.seg, subj, PlanarTransform.from_dict(subj.truth["transform"]), table_y, k)
            vt, et = tc.values, tc.extent_mm
        return table_y, (cur.values, cur.extent_mm, table_y, vt, et)
    except SpineLibError as exc:
        _distrust(rec, exc)
        return table_y, None


def subject_targets(row: Mapping[str, Any], config: TargetConfig) -> tuple[dict, tuple | None, dict]:
    """Load, align and read the targets of one manifest row, and its truth targets.

    ``config`` gives the alignment's settings, K and whether a DXA pickle may be read.

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

    trec = _truth_record(str(row.get("subject_id")), str(row.get("split")))
    try:
        # pickled DXAs run code when read: only with the run's explicit opt-in
        subj = load_subject(dict(row), allow_pickle=config.allow_pickle)
    except SpineLibError as exc:
        rec = align_loaded(None, dict(row), config.align)
        rec["reason"] = f"load failed: {type(exc).__name__}: {exc}"
        trec["reason"] = rec["reason"]
        return rec, None, trec
    rec = align_loaded(subj, dict(row), config.align)
    k = config.n_levels
    table_y, est_targets = _estimated_targets(subj, rec, k)
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

