"""The tangent angle of a centreline: a local quadratic fit (Savitzky-Golay) along the levels.

The clinical angles (:mod:`spinelib.metrics.clinical`) are differences of these tangent
angles. The derivative is computed with numpy and ``scipy.ndimage`` rather than
``scipy.signal``, whose import alone cost about a tenth of a cold ``spinelib predict``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..shape.curves import MIN_LEVELS

__all__ = ["TANGENT_WINDOW_MM", "tangent_angles_deg"]

#: Length of the local quadratic fit that gives the centreline's tangent (about three
#: vertebrae). It averages out the voxel staircase of curves extracted from an MRI mask
#: (steps of one MRI voxel, 2-5 mm) while a quadratic still follows a scoliotic or
#: sagittal curve over that length: on analytic columns voxelised at 2.2 and 4.4 mm this
#: window gave the smallest Cobb error (mean about 1.5 degrees) among 40-120 mm.
TANGENT_WINDOW_MM = 80.0


def _check_centreline(x, levels, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A centreline and its level positions as checked (K,) arrays, levels increasing."""
    c = np.asarray(x, dtype=float)
    r = np.asarray(levels, dtype=float)
    if c.ndim != 1 or r.shape != c.shape:
        raise ShapeError(f"{name} and levels_mm must be (K,) arrays of one length, got {c.shape} and {r.shape}")
    if c.size < MIN_LEVELS:
        raise InvalidArgumentError(f"{name} needs at least {MIN_LEVELS} levels, got K = {c.size}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(r))):
        raise NonFiniteError(f"{name} or levels_mm holds NaN or infinite values")
    if np.any(np.diff(r) <= 0):
        raise InvalidArgumentError("levels_mm must increase strictly")
    return c, r


def _savgol_deriv1(x, window_length: int, *, delta: float = 1.0) -> np.ndarray:
    """First derivative of ``x`` by a Savitzky-Golay filter of polynomial order 2.

    The same numbers as ``scipy.signal.savgol_filter(x, window_length, polyorder=2,
    deriv=1, delta=delta, mode="interp")``, computed the way SciPy computes them: the
    interior by convolution with the least-squares derivative coefficients
    (``savgol_coeffs``), the first and last ``window_length // 2`` samples from the
    derivative of a quadratic fitted to the first / last ``window_length`` samples.
    (Importing ``scipy.signal`` took 0.34 s of a cold ``spinelib predict``, about a tenth
    of it, for this one call; ``scipy.ndimage`` is loaded anyway.)

    Parameters
    ----------
    x : (N,) float array, the samples (e.g. a centreline in mm at evenly spaced levels).
    window_length : odd int, ``3 <= window_length <= N``, samples per local fit.
    delta : positive float, the sample spacing (e.g. mm between levels).

    Returns
    -------
    (N,) float64 array: ``dx/dt`` in units of ``x`` per unit of ``delta``.

    Raises
    ------
    InvalidArgumentError
        ``x`` is not a 1-D array, or ``window_length`` / ``delta`` is out of range.
    """
    y = np.asarray(x, dtype=np.float64)
    if y.ndim != 1:
        raise InvalidArgumentError(f"x must be a 1-D array, got shape {y.shape}")
    n = y.shape[0]
    if (isinstance(window_length, bool) or not isinstance(window_length, (int, np.integer))
            or window_length < 3 or window_length % 2 == 0 or window_length > n):
        raise InvalidArgumentError(f"window_length must be an odd int in [3, {n}], got {window_length!r}")
    if not isinstance(delta, (int, float, np.integer, np.floating)) or not np.isfinite(delta) or delta <= 0:
        raise InvalidArgumentError(f"delta must be positive and finite, got {delta!r}")
    delta = float(delta)
    w, half = int(window_length), int(window_length) // 2
    # interior: savgol_coeffs(w, 2, deriv=1, delta, use="conv"), the least-squares solution
    # of t**j @ c = (0, 1/delta, 0) over the window positions t (reversed for convolution)
    t = np.arange(half, half - w, -1, dtype=np.float64)
    rhs = np.array([0.0, 1.0 / delta, 0.0])
    coeffs = np.linalg.lstsq(t ** np.arange(3.0)[:, None], rhs, rcond=np.finfo(np.float64).eps * w)[0]
    out = ndimage.convolve1d(y, coeffs, mode="constant")
    # ends: fit p(t) = c0 t^2 + c1 t + c2 to the end window (columns scaled as numpy's
    # polyfit does) and take p'(t) / delta at the end positions
    tw = np.arange(w, dtype=np.float64)
    lhs = tw[:, None] ** np.array([2.0, 1.0, 0.0])
    scale = np.sqrt(np.sum(lhs * lhs, axis=0))
    lhs /= scale
    for lo, pos in ((0, tw[:half]), (n - w, tw[w - half:])):
        c = np.linalg.lstsq(lhs, y[lo:lo + w, None], rcond=w * np.finfo(np.float64).eps)[0][:, 0] / scale
        out[lo + pos.astype(int)] = ((2.0 * c[0]) * pos + c[1]) / delta
    return out


def tangent_angles_deg(centreline, levels_mm, *, window_mm: float = TANGENT_WINDOW_MM) -> np.ndarray:
    """(K,) tangent angle (degrees) of a centreline ``x(r)`` against the vertical axis:
    ``atan(dx/dr)``, the derivative from a local quadratic fit (Savitzky-Golay) over
    ``window_mm`` (at least 3 levels; the ends use the fit over the end window, so end
    tangents are not flattened). Levels must be (close to) evenly spaced."""
    x, r = _check_centreline(centreline, levels_mm, "centreline")
    if not np.isfinite(window_mm) or window_mm <= 0:
        raise InvalidArgumentError(f"window_mm must be positive, got {window_mm!r}")
    k = x.size
    h = float(np.mean(np.diff(r)))
    if np.any(np.abs(np.diff(r) - h) > 1e-6 * max(1.0, abs(h)) + 1e-3 * h):
        raise InvalidArgumentError("levels_mm must be evenly spaced")
    win = int(round(window_mm / h))
    win = max(3, win | 1)  # odd, >= 3
    if win > k:
        win = k if k % 2 else k - 1
    deriv = _savgol_deriv1(x, win, delta=h)  # = scipy.signal.savgol_filter(.., 2, deriv=1, mode="interp")
    return np.degrees(np.arctan(deriv))
