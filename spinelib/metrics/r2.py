"""R2 of clinical measures: how much of a cohort's sagittal shape predicted curves explain.

:func:`summary_r2` scores any prediction of the curves by the coefficient of determination
(:func:`r2_score`) of the clinical quantities it implies (kyphosis, lordosis, mean anterior
depth), over subjects. The study uses it to show how much of the sagittal shape the
``visible_summaries`` baseline (:mod:`spinelib.learn.ridge`) reads off the AP image.

Examples
--------
>>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..shape.curves import SpineCurves
from .clinical import clinical_measures

__all__ = ["r2_score", "summary_r2"]


def r2_score(true: Any, pred: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of ``pred`` against ``true``.

    Parameters
    ----------
    true, pred : (N,) float, N >= 2; ``true`` must vary (SS_tot > 0).

    Returns
    -------
    float, at most 1 (negative when ``pred`` is worse than the mean of ``true``).
    """
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.ndim != 1 or p.shape != t.shape or t.size < 2:
        raise ShapeError(f"true and pred must be equal-length 1D arrays of >= 2 values, got {t.shape} and {p.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise NonFiniteError("true or pred holds NaN or infinite values")
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot <= 0:
        raise InvalidArgumentError("R2 is undefined: the true values do not vary")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def _curve_sets(values: Any, extent: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked (N, 6, K) curves in mm and their (N, 2) extents."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(extent, dtype=np.float64)
    if v.ndim != 3 or v.shape[1] != 6 or v.shape[2] < 3:
        raise ShapeError(f"{name}_values must have shape (N, 6, K >= 3), got {v.shape}")
    if e.shape != (v.shape[0], 2):
        raise ShapeError(f"{name}_extent must have shape ({v.shape[0]}, 2), got {e.shape}")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(e))):
        raise NonFiniteError(f"{name}_values or {name}_extent hold NaN or infinite values")
    return v, e


def _sagittal_measures(values: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """(N, 3) kyphosis (deg), lordosis (deg) and mean anterior depth (mm) per subject."""
    out = np.empty((values.shape[0], 3))
    for i in range(values.shape[0]):
        m = clinical_measures(SpineCurves(values[i], extent[i]))
        out[i] = (m["kyphosis_deg"], m["lordosis_deg"], values[i, 5].mean())
    return out


def summary_r2(true_values: np.ndarray, true_extent: np.ndarray, pred_values: np.ndarray,
               pred_extent: np.ndarray) -> dict[str, float | int]:
    """How much of the subjects' sagittal shape a prediction explains, as R2 of three measures.

    For every subject, kyphosis and lordosis (:func:`~spinelib.metrics.clinical.clinical_measures`)
    and the mean anterior depth (the ``sagittal_anterior`` curve averaged over the levels,
    mm above the table) are computed on the true and on the predicted curves; each measure's
    coefficient of determination (:func:`r2_score`) is taken over subjects.

    Parameters
    ----------
    true_values, pred_values : (N, 6, K) float, curves in mm (``SpineCurves.values``), N >= 2.
    true_extent, pred_extent : (N, 2) float, (top, bottom) row-mm.

    Returns
    -------
    ``{"kyphosis": R2, "lordosis": R2, "anterior_depth": R2, "n": N}``

    Raises
    ------
    ShapeError
        Shapes differ from the above, or truth and prediction disagree in N or K.
    NonFiniteError
        Any NaN or infinite value.
    InvalidArgumentError
        Curves that are not valid SpineCurves, or a true measure that does not vary.
    """
    tv, te = _curve_sets(true_values, true_extent, "true")
    pv, pe = _curve_sets(pred_values, pred_extent, "pred")
    if pv.shape != tv.shape:
        raise ShapeError(f"pred_values {pv.shape} and true_values {tv.shape} differ in shape")
    if tv.shape[0] < 2:
        raise ShapeError(f"R2 needs at least 2 subjects, got {tv.shape[0]}")
    t, p = _sagittal_measures(tv, te), _sagittal_measures(pv, pe)
    return {"kyphosis": r2_score(t[:, 0], p[:, 0]), "lordosis": r2_score(t[:, 1], p[:, 1]),
            "anterior_depth": r2_score(t[:, 2], p[:, 2]), "n": int(tv.shape[0])}
