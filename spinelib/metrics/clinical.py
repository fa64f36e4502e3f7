"""Clinical angles of a curve set: the Cobb angle (coronal), thoracic kyphosis and lumbar lordosis (sagittal).

All three are differences of tangent angles of a centreline
(:func:`spinelib.metrics.tangents.tangent_angles_deg`), in degrees. End levels that are partial
sections of the column (the end slabs cut the oblique T1 and L5 endplates) are left out.

References
----------
Cobb, *Outline for the study of scoliosis*, AAOS Instr. Course Lect. 5 (1948); the
tangent-angle formulation of the Cobb angle on a centreline, as automated methods use it on
spine centrelines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from ..shape.curves import SpineCurves
from .tangents import TANGENT_WINDOW_MM, _check_centreline, tangent_angles_deg

__all__ = [
    "SCOLIOSIS_DEG",
    "CobbResult",
    "cobb_angle",
    "kyphosis_deg",
    "lordosis_deg",
    "clinical_measures",
    "THORACIC_FRACTION",
    "MIN_SWING_DEG",
    "PARTIAL_WIDTH_RATIO",
    "END_MARGIN_MM",
    "SEVERITY_EDGES_DEG",
]

#: Typical T1-T12 share of the T1-L5 column height (bodies + discs): about 0.66.
THORACIC_FRACTION = 0.66
#: Tangent-angle swings smaller than this are treated as noise between Cobb end levels.
MIN_SWING_DEG = 2.0
#: An end level whose coronal or sagittal width is below this fraction of the typical
#: width near that end is a partial section (a tilted endplate cut by the slab) and is
#: left out of the clinical angles.
PARTIAL_WIDTH_RATIO = 0.9
#: Levels whose middle lies closer than this to the top or bottom of the column are left
#: out of the clinical angles: the end slabs cut the oblique T1 and L5 endplates.
END_MARGIN_MM = 5.0
#: Scoliosis severity classes by Cobb angle (none, mild, moderate, severe): their edges, degrees.
SEVERITY_EDGES_DEG: tuple[float, ...] = (10.0, 20.0, 30.0)
#: Cobb angle from which a spine counts as scoliotic (degrees), the clinical convention.
SCOLIOSIS_DEG = 10.0


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
    (:func:`~spinelib.metrics.tangents.tangent_angles_deg`); its extrema (the curve's inflection points, i.e. the end
    vertebrae; the two ends of the column count as extrema; swings smaller than
    ``min_swing_deg`` are ignored as noise) split the spine into curves, and the Cobb
    angle is the largest difference between consecutive extrema (Cobb 1948). The apex is
    the level of that curve furthest from the chord joining its two end levels.

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
    top, mid, bottom = _sagittal_parts(curves, thoracic_fraction, window_mm)  # once for both angles
    return {
        "cobb_deg": cobb.angle_deg,
        "apex_level_index": cobb.apex_index + lo,
        "cobb_upper_index": cobb.upper_index + lo,
        "cobb_lower_index": cobb.lower_index + lo,
        "kyphosis_deg": mid - top,  # as kyphosis_deg and lordosis_deg, from the one pass above
        "lordosis_deg": mid - bottom,
    }
