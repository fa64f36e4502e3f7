"""Metrics of the paper: 2D curve errors, 3D overlap and distances, clinical angles.

Pure functions: arrays (or :class:`spinelib.shape.curves.SpineCurves`) in, floats out; units in
the names. Every function validates its inputs once (``_check_*`` helpers) and raises a
:class:`spinelib.errors.SpineLibError` subclass on bad input.

References
----------
* Bourigault, Jamaludin, Zisserman, *3D Spine Shape Estimation from Single 2D DXA*, MICCAI
  2024 (its evaluation section: curve MAE, 3D curve deviation, IoU; clinical measures).
* MONAI ``monai.metrics.hausdorff_distance`` / ``surface_distance`` and DeepMind
  ``surface-distance`` (Nikolov et al. 2018): surfaces as the boundary voxels of each mask,
  distances by Euclidean distance transforms with the voxel spacing.
* Cobb, *Outline for the study of scoliosis*, AAOS Instr. Course Lect. 5 (1948); the
  tangent-angle formulation of the Cobb angle on a centreline, as automated methods use it
  on spine centrelines.

Examples
--------
>>> import numpy as np
>>> a = np.zeros((10, 10, 10), bool); a[2:6, 2:6, 2:6] = True
>>> b = np.zeros_like(a); b[4:8, 2:6, 2:6] = True
>>> iou_3d(a, b), dice_3d(a, b)
(0.3333333333333333, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..shape.curves import MIN_LEVELS, SpineCurves
from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..spine import CURVE_NAMES

__all__ = [
    "curve_errors",
    "centreline_deviation_mm",
    "centreline_same_row_mm",
    "extent_errors_mm",
    "iou_3d",
    "dice_3d",
    "surface_distances_mm",
    "hausdorff95_mm",
    "mean_surface_distance_mm",
    "CobbResult",
    "tangent_angles_deg",
    "cobb_angle",
    "kyphosis_deg",
    "lordosis_deg",
    "clinical_measures",
    "THORACIC_FRACTION",
    "TANGENT_WINDOW_MM",
    "MIN_SWING_DEG",
    "PARTIAL_WIDTH_RATIO",
    "END_MARGIN_MM",
]

#: Typical T1-T12 share of the T1-L5 column height (bodies + discs): about 0.66.
THORACIC_FRACTION = 0.66
#: Length of the local quadratic fit that gives the centreline's tangent (about three
#: vertebrae). It averages out the voxel staircase of curves extracted from an MRI mask
#: (steps of one MRI voxel, 2-5 mm) while a quadratic still follows a scoliotic or
#: sagittal curve over that length: on analytic columns voxelised at 2.2 and 4.4 mm this
#: window gave the smallest Cobb error (mean about 1.5 degrees) among 40-120 mm.
TANGENT_WINDOW_MM = 80.0
#: Tangent-angle swings smaller than this are treated as noise between Cobb end levels.
MIN_SWING_DEG = 2.0
#: An end level whose coronal or sagittal width is below this fraction of the typical
#: width near that end is a partial section (a tilted endplate cut by the slab) and is
#: left out of the clinical angles.
PARTIAL_WIDTH_RATIO = 0.9
#: Levels whose middle lies closer than this to the top or bottom of the column are left
#: out of the clinical angles: the end slabs cut the oblique T1 and L5 endplates.
END_MARGIN_MM = 5.0


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------


def _curve_array(x, name: str) -> np.ndarray:
    if isinstance(x, SpineCurves):
        return np.asarray(x.values, dtype=float)
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[0] != len(CURVE_NAMES):
        raise ShapeError(f"{name} must be SpineCurves or a (6, K) array, got shape {a.shape}")
    if a.shape[1] < MIN_LEVELS:
        raise InvalidArgumentError(f"{name} needs at least {MIN_LEVELS} levels, got K = {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return a


def _check_pair_masks(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ShapeError(f"masks must have the same shape, got {x.shape} and {y.shape}")
    if x.ndim != 3:
        raise ShapeError(f"masks must be 3D, got {x.ndim} dimensions")
    for m, n in ((x, "a"), (y, "b")):
        if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise InvalidArgumentError(f"mask {n} must be boolean (or 0/1), got dtype {m.dtype}")
    return x.astype(bool, copy=False), y.astype(bool, copy=False)


def _check_spacing3(spacing_mm) -> np.ndarray:
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InvalidArgumentError(f"spacing_mm must be positive finite mm (one or three values), got {spacing_mm!r}")
    return s.copy()


def _check_centreline(x, levels, name: str) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------------------
# 2D curve errors
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# 3D
# ---------------------------------------------------------------------------------------


def _centreline(x, name: str) -> np.ndarray:
    if isinstance(x, SpineCurves):
        return np.stack([x.levels_mm, x.values[1], x.values[4]], axis=1)
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ShapeError(f"{name} must be SpineCurves or a (K, 3) centreline, got shape {a.shape}")
    if a.shape[0] < MIN_LEVELS:
        raise InvalidArgumentError(f"{name} needs at least {MIN_LEVELS} levels, got K = {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return a


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


def iou_3d(a, b) -> float:
    """Intersection over union ``|A & B| / |A | B|`` of two boolean masks (the paper's 3D IoU).

    Raises
    ------
    EmptySegmentationError
        Both masks empty (IoU undefined).
    """
    x, y = _check_pair_masks(a, b)
    union = int(np.count_nonzero(x | y))
    if union == 0:
        raise EmptySegmentationError("both masks are empty: IoU is undefined")
    return int(np.count_nonzero(x & y)) / union


def dice_3d(a, b) -> float:
    """Dice ``2 |A & B| / (|A| + |B|)`` (= ``2 IoU / (1 + IoU)``) of two boolean masks."""
    x, y = _check_pair_masks(a, b)
    total = int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    if total == 0:
        raise EmptySegmentationError("both masks are empty: Dice is undefined")
    return 2.0 * int(np.count_nonzero(x & y)) / total


def _surface(m: np.ndarray) -> np.ndarray:
    # boundary voxels: the mask minus its erosion (face connectivity), outside = background
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


def surface_distances_mm(a, b, *, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two masks, as in MONAI / DeepMind surface-distance.

    The surface of a mask is its boundary voxels (mask minus its face-connected erosion;
    voxels on the array border count as boundary). ``d_ab`` holds, for each surface voxel
    of ``a``, the Euclidean distance (mm, with ``spacing_mm``) to the nearest surface voxel
    of ``b`` (``scipy.ndimage.distance_transform_edt`` with ``sampling``); ``d_ba`` the
    reverse. Work is restricted to the masks' joint bounding box (distances unchanged).

    Returns
    -------
    (d_ab, d_ba) float arrays.

    Raises
    ------
    EmptySegmentationError
        Either mask is empty (distances undefined).
    """
    x, y = _check_pair_masks(a, b)
    sp = _check_spacing3(spacing_mm)
    if not x.any() or not y.any():
        which = "a" if not x.any() else "b"
        raise EmptySegmentationError(f"mask {which} is empty: surface distances are undefined")
    both = x | y
    sl = []
    for ax in range(3):
        proj = np.any(both, axis=tuple(i for i in range(3) if i != ax))
        nz = np.flatnonzero(proj)
        sl.append(slice(nz[0], nz[-1] + 1))
    xs = np.pad(x[tuple(sl)], 1)
    ys = np.pad(y[tuple(sl)], 1)
    sx, sy = _surface(xs), _surface(ys)
    dist_to_y = ndimage.distance_transform_edt(~sy, sampling=sp)
    dist_to_x = ndimage.distance_transform_edt(~sx, sampling=sp)
    return dist_to_y[sx], dist_to_x[sy]


def hausdorff95_mm(a, b, *, spacing_mm) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between two masks' surfaces.

    ``max(percentile95(d_ab), percentile95(d_ba))`` with the directed surface distances of
    :func:`surface_distances_mm` (MONAI ``compute_hausdorff_distance(percentile=95)``,
    DeepMind ``compute_robust_hausdorff(.., 95)`` with unit surfel weights).
    """
    d_ab, d_ba = surface_distances_mm(a, b, spacing_mm=spacing_mm)
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def mean_surface_distance_mm(a, b, *, spacing_mm) -> float:
    """Symmetric mean surface distance (mm): the mean of all directed distances of both
    surfaces, ``mean(concat(d_ab, d_ba))`` (MONAI ``compute_average_surface_distance
    (symmetric=True)``)."""
    d_ab, d_ba = surface_distances_mm(a, b, spacing_mm=spacing_mm)
    return float(np.concatenate([d_ab, d_ba]).mean())


# ---------------------------------------------------------------------------------------
# Clinical angles
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CobbResult:
    """Cobb angle of a centreline and where it is measured.

    Attributes
    ----------
    angle_deg : the Cobb angle (>= 0).
    apex_index : level of the apex (furthest from the chord between the end levels).
    upper_index, lower_index : levels of the upper and lower end (tangent extrema).
    """

    angle_deg: float
    apex_index: int
    upper_index: int
    lower_index: int


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


def _turning_points(theta: np.ndarray, min_swing_deg: float) -> list[int]:
    """Indices of the alternating extrema of ``theta`` (ends included), ignoring wiggles
    smaller than ``min_swing_deg`` (zig-zag with hysteresis)."""
    n = theta.size
    pts = [0]
    direction = 0  # +1 rising, -1 falling, 0 not yet known
    ext = 0  # index of the running extremum in the current direction
    for i in range(1, n):
        if direction == 0:
            if theta[i] - theta[0] > min_swing_deg:
                direction, ext = 1, i
            elif theta[0] - theta[i] > min_swing_deg:
                direction, ext = -1, i
        elif direction > 0:
            if theta[i] >= theta[ext]:
                ext = i
            elif theta[ext] - theta[i] > min_swing_deg:
                pts.append(ext)
                direction, ext = -1, i
        else:
            if theta[i] <= theta[ext]:
                ext = i
            elif theta[i] - theta[ext] > min_swing_deg:
                pts.append(ext)
                direction, ext = 1, i
    if direction != 0 and ext != pts[-1]:
        pts.append(ext)
    if pts[-1] != n - 1:
        pts.append(n - 1)
    return pts


def cobb_angle(
    centreline,
    levels_mm,
    *,
    window_mm: float = TANGENT_WINDOW_MM,
    min_swing_deg: float = MIN_SWING_DEG,
) -> CobbResult:
    """Cobb angle (degrees) of a coronal centreline by the tangent-angle method.

    The tangent angle ``theta_k = atan(dx/dr)`` is computed along the centreline
    (:func:`tangent_angles_deg`); its extrema (the curve's inflection points, i.e. the end
    vertebrae; the two ends of the column count as extrema; swings smaller than
    ``min_swing_deg`` are ignored as noise) split the spine into curves, and the Cobb
    angle is the largest difference between consecutive extrema (Cobb 1948). The apex is the level of that curve furthest from the chord
    joining its two end levels.

    Parameters
    ----------
    centreline : (K,) coronal centre in mm (``coronal_centre``) per level.
    levels_mm : (K,) evenly spaced level positions in mm (``SpineCurves.levels_mm``).

    Examples
    --------
    >>> r = np.linspace(0, 400, 64)
    >>> cobb_angle(np.zeros(64), r).angle_deg
    0.0
    """
    x, r = _check_centreline(centreline, levels_mm, "centreline")
    if not np.isfinite(min_swing_deg) or min_swing_deg < 0:
        raise InvalidArgumentError(f"min_swing_deg must be >= 0, got {min_swing_deg!r}")
    theta = tangent_angles_deg(x, r, window_mm=window_mm)
    pts = _turning_points(theta, min_swing_deg)
    diffs = np.abs(np.diff(theta[pts]))
    j = int(np.argmax(diffs))
    up, lo = pts[j], pts[j + 1]
    angle = float(diffs[j])
    seg_r, seg_x = r[up : lo + 1], x[up : lo + 1]
    dr, dx = r[lo] - r[up], x[lo] - x[up]
    norm = np.hypot(dr, dx)
    if norm > 0 and lo > up:
        dist = np.abs(dr * (seg_x - x[up]) - dx * (seg_r - r[up])) / norm
        apex = up + int(np.argmax(dist))
    else:
        apex = (up + lo) // 2
    if angle < 1e-9:
        angle = 0.0
    return CobbResult(angle, int(apex), int(up), int(lo))


def _full_range(curves: SpineCurves) -> tuple[int, int]:
    """First and last level (inclusive) that are full cross-sections.

    The slabs at the two ends of the column can cut through the tilted T1 superior or L5
    inferior endplate and hold only part of a section, which bends the centreline there.
    Levels whose middle is within ``END_MARGIN_MM`` of either end are dropped; then, from
    each end, levels are dropped while their coronal or sagittal width is below
    ``PARTIAL_WIDTH_RATIO`` times the median width of the next levels inwards. At most
    10 % of the levels go per end, and three levels always remain.
    """
    v = curves.values
    k = curves.n_levels
    wc = v[2] - v[0]
    ws = v[5] - v[3]
    n_ref = max(3, k // 10)
    max_trim = max(0, min(k // 10, (k - 3) // 2))

    def partial(i: int, ref: slice) -> bool:
        rc, rs = np.median(wc[ref]), np.median(ws[ref])
        return bool(wc[i] < PARTIAL_WIDTH_RATIO * rc or ws[i] < PARTIAL_WIDTH_RATIO * rs)

    levels = curves.levels_mm
    top, bottom = curves.extent_mm
    lo = int(np.count_nonzero(levels < top + END_MARGIN_MM))
    hi = k - 1 - int(np.count_nonzero(levels > bottom - END_MARGIN_MM))
    lo, hi = min(lo, max_trim), max(hi, k - 1 - max_trim)
    while lo < max_trim and partial(lo, slice(lo, lo + n_ref)):
        lo += 1
    while (k - 1 - hi) < max_trim and partial(hi, slice(hi - n_ref + 1, hi + 1)):
        hi -= 1
    return lo, hi


def _end_tangent_deg(x: np.ndarray, r: np.ndarray, at: float, window_mm: float, end: str) -> float:
    """Tangent angle at ``at`` (the column's top or bottom) from a quadratic fit over the
    ``window_mm`` of levels at that end, extrapolated over the levels left out there."""
    h = float(np.mean(np.diff(r)))
    n = int(min(x.size, max(3, round(window_mm / h) | 1)))
    sl = slice(0, n) if end == "top" else slice(x.size - n, x.size)
    rr = r[sl] - at
    coef = np.polyfit(rr, x[sl], 2)
    return float(np.degrees(np.arctan(coef[1])))  # derivative at rr = 0


def _sagittal_parts(
    curves: SpineCurves, thoracic_fraction: float, window_mm: float
) -> tuple[float, float, float]:
    """Tangent angles (degrees) of the sagittal centre at the top, the thoracolumbar
    boundary and the bottom of the column."""
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    if not np.isfinite(thoracic_fraction) or not 0.0 < thoracic_fraction < 1.0:
        raise InvalidArgumentError(f"thoracic_fraction must be in (0, 1), got {thoracic_fraction!r}")
    if not np.isfinite(window_mm) or window_mm <= 0:
        raise InvalidArgumentError(f"window_mm must be positive, got {window_mm!r}")
    top, bottom = (float(v) for v in curves.extent_mm)
    boundary = top + thoracic_fraction * (bottom - top)
    lo, hi = _full_range(curves)
    r = curves.levels_mm[lo : hi + 1]
    d = curves.values[4][lo : hi + 1]
    phi = tangent_angles_deg(d, r, window_mm=window_mm)
    phi_top = _end_tangent_deg(d, r, top, window_mm, "top")
    phi_bottom = _end_tangent_deg(d, r, bottom, window_mm, "bottom")
    return phi_top, float(np.interp(boundary, r, phi)), phi_bottom


def kyphosis_deg(
    curves: SpineCurves,
    *,
    thoracic_fraction: float = THORACIC_FRACTION,
    window_mm: float = TANGENT_WINDOW_MM,
) -> float:
    """Thoracic kyphosis (degrees) from the sagittal centreline.

    The tangent angle ``phi = atan(d depth / d row)`` of the sagittal centre (depth above
    the table, anterior positive; row increasing inferiorly) is taken at the top of the
    column (T1 superior) and at the thoracolumbar boundary (``thoracic_fraction`` of the
    T1-L5 height, T12 inferior); kyphosis is ``phi(boundary) - phi(top)`` (the
    same tangent difference as the generator's endplate-tilt
    kyphosis). Positive for a posteriorly convex thoracic spine. End levels that are
    partial sections are left out and the end tangent is extrapolated to the column's
    top by the quadratic fit over the top ``window_mm``.
    """
    top, mid, _ = _sagittal_parts(curves, thoracic_fraction, window_mm)
    return mid - top


def lordosis_deg(
    curves: SpineCurves,
    *,
    thoracic_fraction: float = THORACIC_FRACTION,
    window_mm: float = TANGENT_WINDOW_MM,
) -> float:
    """Lumbar lordosis (degrees) from the sagittal centreline: ``phi(boundary) - phi(bottom)``
    between the thoracolumbar boundary (L1 superior) and the bottom of L5 (L5 inferior),
    with ``phi`` as in :func:`kyphosis_deg`. Positive for an anteriorly convex lumbar spine."""
    _, mid, bottom = _sagittal_parts(curves, thoracic_fraction, window_mm)
    return mid - bottom


def clinical_measures(
    curves: SpineCurves,
    *,
    thoracic_fraction: float = THORACIC_FRACTION,
    window_mm: float = TANGENT_WINDOW_MM,
    min_swing_deg: float = MIN_SWING_DEG,
) -> dict[str, float]:
    """Cobb angle, apex level, kyphosis and lordosis of one curve set.

    The Cobb angle is :func:`cobb_angle` of ``coronal_centre`` against ``levels_mm``;
    kyphosis and lordosis are :func:`kyphosis_deg` and :func:`lordosis_deg`. End levels
    that are partial sections (a width below ``PARTIAL_WIDTH_RATIO`` of the typical width
    near that end: the slab cuts a tilted endplate) are left out of all three, so the
    angles are not bent by the column's oblique ends. Level indices refer to the full
    curve set.

    Returns
    -------
    ``{"cobb_deg", "apex_level_index", "kyphosis_deg", "lordosis_deg"}`` plus the Cobb
    end levels ``"cobb_upper_index"``, ``"cobb_lower_index"``.
    """
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    lo, hi = _full_range(curves)
    cobb = cobb_angle(
        curves.values[1][lo : hi + 1],
        curves.levels_mm[lo : hi + 1],
        window_mm=window_mm,
        min_swing_deg=min_swing_deg,
    )
    return {
        "cobb_deg": cobb.angle_deg,
        "apex_level_index": cobb.apex_index + lo,
        "cobb_upper_index": cobb.upper_index + lo,
        "cobb_lower_index": cobb.lower_index + lo,
        "kyphosis_deg": kyphosis_deg(curves, thoracic_fraction=thoracic_fraction, window_mm=window_mm),
        "lordosis_deg": lordosis_deg(curves, thoracic_fraction=thoracic_fraction, window_mm=window_mm),
    }
