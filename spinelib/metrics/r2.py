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
from .bootstrap import check_bootstrap, percentile_interval, resample_indices
from .clinical import clinical_measures

__all__ = ["r2_score", "r2_interval", "summary_r2"]


def r2_score(true: Any, pred: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of ``pred`` against ``true``.

    Parameters
    ----------
    true, pred : (N,) float, N >= 2; ``true`` must vary (SS_tot > 0).

    Returns
    -------
    float, at most 1 (negative when ``pred`` is worse than the mean of ``true``).
    """
    t, p = _checked_pair(true, pred)
    return 1.0 - float(np.sum((t - p) ** 2)) / float(np.sum((t - t.mean()) ** 2))


def _checked_pair(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(true, pred)`` as float64 (N,) arrays, N >= 2, finite, ``true`` varying (R2 defined)."""
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.ndim != 1 or p.shape != t.shape or t.size < 2:
        raise ShapeError(f"true and pred must be equal-length 1D arrays of >= 2 values, got {t.shape} and {p.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise NonFiniteError("true or pred holds NaN or infinite values")
    if not np.sum((t - t.mean()) ** 2) > 0:
        raise InvalidArgumentError("R2 is undefined: the true values do not vary")
    return t, p


def r2_interval(true: Any, pred: Any, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`r2_score` over subjects.

    The N subjects are resampled with replacement (``numpy.random.default_rng(seed)``), each
    keeping its true and predicted value together, and R2 is computed on every resample
    (resamples whose true values do not vary, where R2 is undefined, are left out).

    Parameters
    ----------
    true, pred : (N,) float, N >= 2; as :func:`r2_score`.
    n_boot : resamples, an integer >= 10.
    seed : seed of the resampling (same seed, same interval).
    level : coverage in (0, 1).

    Returns
    -------
    (low, high) quantiles ``(1 - level) / 2`` and ``(1 + level) / 2`` of the resampled R2.

    Raises
    ------
    ShapeError, NonFiniteError, InvalidArgumentError
        As :func:`r2_score`, or ``n_boot`` / ``level`` out of range, or (InvalidArgumentError)
        no resample with varying true values (two or three subjects).
    """
    t, p = _checked_pair(true, pred)
    n, lev = check_bootstrap(n_boot, level)
    idx = resample_indices(t.size, n, seed)
    tt, pp = t[idx], p[idx]
    ss_tot = np.sum((tt - tt.mean(axis=1, keepdims=True)) ** 2, axis=1)
    ok = ss_tot > 0
    if not ok.any():  # only with a handful of subjects: every resample drew a single one
        raise InvalidArgumentError(f"no resample of the {t.size} subjects has varying true values: "
                                   "too few subjects for a bootstrap interval of R2")
    return percentile_interval(1.0 - np.sum((tt - pp) ** 2, axis=1)[ok] / ss_tot[ok], lev)


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


#: The measures of :func:`summary_r2`, in the column order of :func:`_sagittal_measures`.
_MEASURES = ("kyphosis", "lordosis", "anterior_depth")


def _sagittal_measures(values: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """(N, 3) kyphosis (deg), lordosis (deg) and mean anterior depth (mm) per subject."""
    out = np.empty((values.shape[0], 3))
    for i in range(values.shape[0]):
        m = clinical_measures(SpineCurves(values[i], extent[i]))
        out[i] = (m["kyphosis_deg"], m["lordosis_deg"], values[i, 5].mean())
    return out


def summary_r2(true_values: np.ndarray, true_extent: np.ndarray, pred_values: np.ndarray,
               pred_extent: np.ndarray, *, n_boot: int = 0, seed: int = 0,
               level: float = 0.95) -> dict[str, Any]:
    """How much of the subjects' sagittal shape a prediction explains, as R2 of three measures.

    For every subject, kyphosis and lordosis (:func:`~spinelib.metrics.clinical.clinical_measures`)
    and the mean anterior depth (the ``sagittal_anterior`` curve averaged over the levels,
    mm above the table) are computed on the true and on the predicted curves; each measure's
    coefficient of determination (:func:`r2_score`) is taken over subjects. A few hundred
    subjects pin an R2 down to about +/- 0.05 only; with ``n_boot`` each measure also gets its
    bootstrap interval (:func:`r2_interval`).

    Parameters
    ----------
    true_values, pred_values : (N, 6, K) float, curves in mm (``SpineCurves.values``), N >= 2.
    true_extent, pred_extent : (N, 2) float, (top, bottom) row-mm.
    n_boot : 0 (no intervals) or the bootstrap resamples, an integer >= 10.
    seed, level : the resampling's seed and the intervals' coverage in (0, 1).

    Returns
    -------
    ``{"kyphosis": R2, "lordosis": R2, "anterior_depth": R2, "n": N}``, and with ``n_boot``
    ``"intervals": {measure: [low, high]}`` and ``"level": level``.

    Raises
    ------
    ShapeError
        Shapes differ from the above, or truth and prediction disagree in N or K.
    NonFiniteError
        Any NaN or infinite value.
    InvalidArgumentError
        Curves that are not valid SpineCurves, a true measure that does not vary, or
        ``n_boot`` / ``level`` out of range.
    """
    tv, te = _curve_sets(true_values, true_extent, "true")
    pv, pe = _curve_sets(pred_values, pred_extent, "pred")
    if pv.shape != tv.shape:
        raise ShapeError(f"pred_values {pv.shape} and true_values {tv.shape} differ in shape")
    if tv.shape[0] < 2:
        raise ShapeError(f"R2 needs at least 2 subjects, got {tv.shape[0]}")
    n_boot, level = check_bootstrap(n_boot, level, allow_zero=True)
    t, p = _sagittal_measures(tv, te), _sagittal_measures(pv, pe)
    out: dict[str, Any] = {name: r2_score(t[:, j], p[:, j]) for j, name in enumerate(_MEASURES)}
    out["n"] = int(tv.shape[0])
    if n_boot:
        out["intervals"] = {name: list(r2_interval(t[:, j], p[:, j], n_boot=n_boot, seed=seed, level=level))
                            for j, name in enumerate(_MEASURES)}
        out["level"] = level
    return out
