"""3D centreline deviation: two curve sets' centrelines compared level by level or row by row (mm).

The centreline of a curve set is ``(levels_mm, coronal_centre, sagittal_centre)`` per level:
the DXA row, column and depth of the column's middle. The paper's 3D spine curve deviation
compares two centrelines at the same image rows (:func:`centreline_same_row_mm`); the error
of the vertical extent is reported apart (:func:`extent_errors_mm`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, ShapeError
from ..shape.curves import SpineCurves
from .curves2d import _level_array

__all__ = ["centreline_deviation_mm", "centreline_same_row_mm", "extent_errors_mm"]


def _centreline(x, name: str) -> np.ndarray:
    """``x`` as a checked (K, 3) centreline ``(row_mm, col_mm, depth_mm)`` per level."""
    if isinstance(x, SpineCurves):
        return np.stack([x.levels_mm, x.values[1], x.values[4]], axis=1)
    return _level_array(x, name, width=3, level_axis=0, what="a (K, 3) centreline")


def centreline_deviation_mm(pred, true) -> float:
    """Mean over levels of the 3D distance between corresponding centreline points (mm).

    The centreline of a curve set is ``(levels_mm, coronal_centre, sagittal_centre)`` per
    level (``reconstruct.centreline_points``), so errors of the vertical extent count too
    (the paper's centreline deviation).

    Parameters
    ----------
    pred, true : SpineCurves or (K, 3) point arrays with the same K.
    """
    p = _centreline(pred, "pred")
    t = _centreline(true, "true")
    if p.shape != t.shape:
        raise ShapeError(f"pred and true centrelines differ in shape: {p.shape} and {t.shape}")
    return float(np.mean(np.linalg.norm(p - t, axis=1)))


def _as_curves(x, name: str) -> SpineCurves:
    """``x`` itself, refused unless it is :class:`SpineCurves`."""
    if not isinstance(x, SpineCurves):
        raise InvalidArgumentError(f"{name} must be SpineCurves, got {type(x).__name__}")
    return x


def centreline_same_row_mm(pred, true, *, n_samples: int | None = None) -> float:
    """Mean 3D distance between two centrelines compared at the SAME image rows (mm).

    This is the paper's definition of the 3D spine curve deviation: each centreline is a
    curve ``(x(r), y(r))`` of the DXA row ``r`` (coronal centre and sagittal centre), and
    the two are compared row by row over their common vertical extent
    ``[max(top_p, top_t), min(bottom_p, bottom_t)]``. Unlike
    :func:`centreline_deviation_mm`, an error of the vertical extent does not enter (it is
    reported apart, :func:`extent_errors_mm`); the distance at a row is
    ``hypot(x_p(r) - x_t(r), y_p(r) - y_t(r))``.

    Each centreline is linear between its level positions (``levels_mm``) and constant
    from its outermost level to its extent's end. The rows are ``n_samples`` evenly spaced
    slab middles of the common extent (default: the larger K of the two).

    Parameters
    ----------
    pred, true : SpineCurves (any K each).
    n_samples : rows compared (>= 1).

    Raises
    ------
    InvalidArgumentError
        Not SpineCurves, a bad ``n_samples``, or extents that do not overlap (no common row).

    Examples
    --------
    >>> t = SpineCurves(np.zeros((6, 8)), np.array([0.0, 100.0]))
    >>> v = np.zeros((6, 8)); v[1] = 3.0; v[4] = 4.0
    >>> centreline_same_row_mm(SpineCurves(v, np.array([10.0, 110.0])), t)
    5.0
    """
    p, t = _as_curves(pred, "pred"), _as_curves(true, "true")
    k = max(p.n_levels, t.n_levels) if n_samples is None else n_samples
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise InvalidArgumentError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    lo = max(float(p.extent_mm[0]), float(t.extent_mm[0]))
    hi = min(float(p.extent_mm[1]), float(t.extent_mm[1]))
    if not lo < hi:
        raise InvalidArgumentError(
            f"the centrelines share no row: extents {p.extent_mm.tolist()} and {t.extent_mm.tolist()}")
    rows = lo + (np.arange(int(k)) + 0.5) * (hi - lo) / int(k)
    dx = np.interp(rows, p.levels_mm, p.values[1]) - np.interp(rows, t.levels_mm, t.values[1])
    dy = np.interp(rows, p.levels_mm, p.values[4]) - np.interp(rows, t.levels_mm, t.values[4])
    return float(np.mean(np.hypot(dx, dy)))


def extent_errors_mm(pred, true) -> tuple[float, float]:
    """Absolute errors (mm) of the spine's top (T1 superior) and bottom (L5 inferior) rows.

    Returns
    -------
    ``(|top_p - top_t|, |bottom_p - bottom_t|)`` from ``SpineCurves.extent_mm``.

    Examples
    --------
    >>> a = SpineCurves(np.zeros((6, 4)), np.array([10.0, 400.0]))
    >>> b = SpineCurves(np.zeros((6, 4)), np.array([12.5, 390.0]))
    >>> extent_errors_mm(a, b)
    (2.5, 10.0)
    """
    p, t = _as_curves(pred, "pred"), _as_curves(true, "true")
    d = np.abs(p.extent_mm - t.extent_mm)
    return float(d[0]), float(d[1])
