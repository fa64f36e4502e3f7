"""2D curve errors: per-curve MAE, RMSE and maximum error between two curve sets (mm, pixels).

The paper reports 2D curve accuracy as the mean absolute error over the K levels of each of
the six curves (``spine.CURVE_NAMES``), in mm and in DXA pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..shape.curves import MIN_LEVELS, SpineCurves
from ..spine import CURVE_NAMES

__all__ = ["curve_errors"]


def _level_array(x, name: str, *, width: int, level_axis: int, what: str) -> np.ndarray:
    """``x`` as a checked 2D float array of ``width`` values per level: levels along
    ``level_axis`` (0: ``(K, width)``, 1: ``(width, K)``), at least ``MIN_LEVELS`` of them, all
    finite; ``what`` names the expected array in the error (``"a (6, K) array"``). Shared by
    the metrics that take a curve set as SpineCurves or as an array."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[1 - level_axis] != width:
        raise ShapeError(f"{name} must be SpineCurves or {what}, got shape {a.shape}")
    if a.shape[level_axis] < MIN_LEVELS:
        raise InvalidArgumentError(f"{name} needs at least {MIN_LEVELS} levels, got K = {a.shape[level_axis]}")
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return a


def _curve_array(x, name: str) -> np.ndarray:
    """``x`` as a checked (6, K) float array of curves in mm."""
    if isinstance(x, SpineCurves):
        return np.asarray(x.values, dtype=float)
    return _level_array(x, name, width=len(CURVE_NAMES), level_axis=1, what="a (6, K) array")


def curve_errors(pred, true, *, pixel_mm: float) -> dict[str, dict[str, float]]:
    """Per-curve errors between predicted and true curves sampled at the same K levels.

    For each curve ``n`` of ``spine.CURVE_NAMES`` with errors ``e_k = pred[n, k] - true[n, k]``:
    ``mae_mm = mean |e|``, ``mae_px = mae_mm / pixel_mm``, ``rmse_mm = sqrt(mean e^2)``,
    ``max_mm = max |e|`` (the paper reports 2D curve accuracy as MAE in mm and pixels).

    Parameters
    ----------
    pred, true : SpineCurves or (6, K) arrays in mm, same K.
    pixel_mm : DXA pixel size used to express the MAE in pixels.

    Returns
    -------
    ``{curve_name: {"mae_mm", "mae_px", "rmse_mm", "max_mm"}}`` plus ``"mean"``, the
    average of each number over the six curves.
    """
    p = _curve_array(pred, "pred")
    t = _curve_array(true, "true")
    if p.shape != t.shape:
        raise ShapeError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    if not np.isfinite(pixel_mm) or pixel_mm <= 0:
        raise InvalidArgumentError(f"pixel_mm must be positive, got {pixel_mm!r}")
    err = p - t
    out: dict[str, dict[str, float]] = {}
    for name, e in zip(CURVE_NAMES, err):
        mae = float(np.mean(np.abs(e)))
        out[name] = {
            "mae_mm": mae,
            "mae_px": mae / float(pixel_mm),
            "rmse_mm": float(np.sqrt(np.mean(e * e))),
            "max_mm": float(np.max(np.abs(e))),
        }
    out["mean"] = {k: float(np.mean([out[n][k] for n in CURVE_NAMES])) for k in out[CURVE_NAMES[0]]}
    return out
