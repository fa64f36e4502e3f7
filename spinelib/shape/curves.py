"""The six spine curves: targets extracted from a 3D spine mask, and their normalisation.

A subject's spine column (vertebral bodies and discs, T1-L5; ``spine.column_mask``) is
described at ``K`` levels by six curves (``spine.CURVE_NAMES`` order)::

    coronal_left, coronal_centre, coronal_right            DXA column-mm
    sagittal_posterior, sagittal_centre, sagittal_anterior  mm above the table plane

plus the vertical extent ``(top, bottom)`` in DXA row-mm of the top of the T1 body and
the bottom of the L5 body. Level ``k`` is the slab ``[top + k h, top + (k + 1) h)`` with
``h = (bottom - top) / K``; its nominal position (``levels_mm``) is the slab's middle.
"Row-mm" and "column-mm" are DXA pixel indices times the pixel spacing, so pixel
``(0, 0)``'s centre is at ``(0, 0)`` mm.

Coordinates used here (the *DXA-aligned 3D frame*, shared with ``spinelib.shape.reconstruct``)::

    row_mm   = spacing_row * row    (row of the DXA pixel grid, 0 superior)
    col_mm   = spacing_col * col    (column, 0 at the patient's right)
    depth_mm = y - table_y          (MRI world y above the table plane, anterior positive)

where ``(row, col)`` is the DXA pixel that ``transform.dxa_pixel_to_mri`` sends to the MRI
point ``(x, z)``. The DXA<->MRI transform is planar (x, z), so ``y`` is shared.

Examples
--------
>>> import numpy as np
>>> v = np.tile(np.array([[10.0], [20.0], [30.0], [5.0], [15.0], [25.0]]), (1, 4))
>>> c = SpineCurves(v, np.array([100.0, 500.0]))
>>> c.n_levels, c.levels_mm.tolist()
(4, [150.0, 250.0, 350.0, 450.0])
>>> crop = CropWindow(row0=10, col0=2, rows=96, cols=48, pixel_mm=5.0)
>>> back = from_crop(to_crop(c, crop), crop, 4)
>>> bool(np.allclose(back.values, c.values) and np.allclose(back.extent_mm, c.extent_mm))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import (
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
)
from ..io import check_affine
from ..spine import COLUMN_LABELS, CURVE_NAMES, LEVELS, vertebra_label
from ..geometry.transform import PlanarTransform, dxa_pixel_to_mri

__all__ = [
    "SpineCurves",
    "CropWindow",
    "MIN_LEVELS",
    "estimate_table_y",
    "world_to_frame",
    "frame_voxel_half_extent",
    "curves_from_points",
    "column_curves",
    "to_crop",
    "from_crop",
]

#: Fewest levels a curve set may have (a tangent needs three points).
MIN_LEVELS = 3

_CL, _CC, _CR, _SP, _SC, _SA = range(6)


# ---------------------------------------------------------------------------------------
# The curve container
# ---------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SpineCurves:
    """Six spine curves at ``K`` levels, in mm, plus the column's vertical extent.

    Parameters
    ----------
    values : (6, K) float, rows in ``spine.CURVE_NAMES`` order, in mm (coronal: DXA
        column-mm; sagittal: depth above the table plane).
    extent_mm : (2,) float, ``(top, bottom)`` DXA row-mm of the top of T1 and the bottom
        of L5, ``top < bottom``.

    Raises
    ------
    ShapeError
        ``values`` not ``(6, K)`` or ``extent_mm`` not ``(2,)``.
    InvalidArgumentError
        ``K < 3``, ``top >= bottom``, a left boundary right of its right boundary, or a
        posterior boundary anterior to its anterior boundary.
    NonFiniteError
        Any NaN or infinite value.

    Both arrays are stored as read-only float64 copies.
    """

    values: np.ndarray
    extent_mm: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=float)
        extent = np.asarray(self.extent_mm, dtype=float)
        if values.ndim != 2 or values.shape[0] != len(CURVE_NAMES):
            raise ShapeError(f"curve values must have shape (6, K), got {values.shape}")
        if values.shape[1] < MIN_LEVELS:
            raise InvalidArgumentError(
                f"curves need at least {MIN_LEVELS} levels, got K = {values.shape[1]}"
            )
        if extent.shape != (2,):
            raise ShapeError(f"extent_mm must have shape (2,) = (top, bottom), got {extent.shape}")
        if not np.all(np.isfinite(values)):
            bad = sorted({CURVE_NAMES[i] for i in np.nonzero(~np.isfinite(values))[0]})
            raise NonFiniteError(f"curve values hold NaN or infinite values (curves {bad})")
        if not np.all(np.isfinite(extent)):
            raise NonFiniteError(f"extent_mm must be finite, got {extent.tolist()}")
        if not extent[0] < extent[1]:
            raise InvalidArgumentError(
                f"extent_mm must be (top, bottom) with top < bottom, got {extent.tolist()}"
            )
        tol = 1e-9 * max(1.0, float(np.abs(values).max()))
        for lo, hi, what in ((_CL, _CR, "coronal_left > coronal_right"),
                             (_SP, _SA, "sagittal_posterior > sagittal_anterior")):
            bad = np.nonzero(values[lo] > values[hi] + tol)[0]
            if bad.size:
                raise InvalidArgumentError(f"{what} at level(s) {bad[:10].tolist()}")
        object.__setattr__(self, "values", _readonly(values))
        object.__setattr__(self, "extent_mm", _readonly(extent))

    # -- derived quantities ------------------------------------------------------------

    @property
    def n_levels(self) -> int:
        """Number of levels ``K``."""
        return int(self.values.shape[1])

    @property
    def level_height_mm(self) -> float:
        """Slab height ``h = (bottom - top) / K``."""
        return float((self.extent_mm[1] - self.extent_mm[0]) / self.n_levels)

    @property
    def levels_mm(self) -> np.ndarray:
        """(K,) row-mm of the middle of each level's slab: ``top + (k + 0.5) h``."""
        return self.extent_mm[0] + (np.arange(self.n_levels) + 0.5) * self.level_height_mm

    def curve(self, name: str) -> np.ndarray:
        """(K,) values of one curve by name (``'coronal_left'`` ...)."""
        try:
            return self.values[CURVE_NAMES.index(name)]
        except ValueError:
            raise InvalidArgumentError(f"unknown curve {name!r}; expected one of {CURVE_NAMES}") from None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: ``{"extent_mm": [top, bottom], "levels_mm": [...],
        "<curve name>": [...] for the six curves}``."""
        out: dict[str, Any] = {
            "extent_mm": [float(v) for v in self.extent_mm],
            "levels_mm": [float(v) for v in self.levels_mm],
        }
        for name, row in zip(CURVE_NAMES, self.values):
            out[name] = [float(v) for v in row]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpineCurves":
        """Inverse of :meth:`as_dict` (``levels_mm`` is ignored: it is derived)."""
        try:
            values = np.array([d[name] for name in CURVE_NAMES], dtype=float)
            extent = np.asarray(d["extent_mm"], dtype=float)
        except KeyError as exc:
            raise InvalidArgumentError(f"curve dict lacks key {exc.args[0]!r}") from None
        return cls(values, extent)

    def allclose(self, other: "SpineCurves", *, atol: float = 1e-6) -> bool:
        """True when both curve sets have the same K and agree within ``atol`` mm."""
        return (
            self.values.shape == other.values.shape
            and bool(np.allclose(self.values, other.values, atol=atol, rtol=0))
            and bool(np.allclose(self.extent_mm, other.extent_mm, atol=atol, rtol=0))
        )

    def __repr__(self) -> str:
        return (
            f"SpineCurves(K={self.n_levels}, extent_mm=({self.extent_mm[0]:.2f}, "
            f"{self.extent_mm[1]:.2f}))"
        )


# ---------------------------------------------------------------------------------------
# Table plane from the MRI
# ---------------------------------------------------------------------------------------


def estimate_table_y(
    fat: np.ndarray,
    water: np.ndarray,
    affine: np.ndarray,
    *,
    threshold: float | None = None,
) -> float:
    """World ``y`` (mm) of the table plane, i.e. the posterior body surface, from the MRI alone.

    The body is where ``fat + water`` exceeds ``threshold`` (default: half the median
    signal of the voxels above an Otsu threshold, after subtracting the background
    level). For every (x, z) column of the volume that holds body, the posterior-most
    body voxel is found; the table plane is the most common such position (the flat
    back on the table; flanks and the neck curve away from it and are ignored). The
    sub-voxel position comes from partial volume: over the three voxels ending at the
    posterior-most one, the body occupies ``sum(f) * voxel_y`` mm, ``f`` the signal
    fraction of each voxel relative to the body signal just anterior to it. The result
    is the median over the columns whose edge is at (or one voxel from) the mode.

    Parameters
    ----------
    fat, water : (I, J, K) volumes of a canonical RAS image (axis 1 is y, anterior).
    affine : (4, 4) voxel -> world affine; must be diagonal with positive entries.

    Returns
    -------
    float, world y in mm of the posterior body surface.

    Raises
    ------
    ShapeError, InvalidArgumentError
        Mismatched volumes, a non-canonical affine.
    EmptySegmentationError
        No voxel above the threshold.
    """
    f = np.asarray(fat, dtype=np.float32)
    w = np.asarray(water, dtype=np.float32)
    if f.ndim != 3 or f.shape != w.shape:
        raise ShapeError(f"fat and water must be 3D volumes of one shape, got {f.shape} and {w.shape}")
    a = check_affine(affine)
    off = a[:3, :3] - np.diag(np.diag(a[:3, :3]))
    if np.any(np.abs(off) > 1e-6) or np.any(np.diag(a)[:3] <= 0):
        raise InvalidArgumentError(
            "affine is not canonical RAS (diagonal, positive); load with nibabel.as_closest_canonical"
        )
    s = f + w
    if not np.all(np.isfinite(s)):
        s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    if threshold is None:
        from skimage.filters import threshold_otsu

        sample = s[:: max(1, s.shape[0] // 64), :: max(1, s.shape[1] // 64), :: max(1, s.shape[2] // 64)]
        if np.ptp(sample) <= 0:
            raise EmptySegmentationError("MRI signal is constant: no body to find the table plane in")
        otsu = float(threshold_otsu(sample))
        bg = float(np.median(sample[sample <= otsu]))
        body_level = float(np.median(sample[sample > otsu]))
        threshold = bg + 0.5 * (body_level - bg)
    else:
        bg = float(np.median(s[s <= threshold])) if np.any(s <= threshold) else 0.0
    body = s > threshold
    has = body.any(axis=1)  # (I, K)
    if not has.any():
        raise EmptySegmentationError(f"no MRI voxel above the body threshold {threshold:.4g}")
    edge = np.argmax(body, axis=1)  # posterior-most body voxel index j per (i, k)
    e = edge[has]
    mode = int(np.bincount(e).argmax())
    sel = has & (edge <= mode + 1)
    ii, kk = np.nonzero(sel)
    jj = edge[sel]
    nj = s.shape[1]
    # body signal just anterior to the edge: median of the three following voxels
    ref_idx = np.clip(jj[:, None] + np.arange(1, 4)[None, :], 0, nj - 1)
    ref = np.median(s[ii[:, None], ref_idx, kk[:, None]], axis=1)
    win_idx = jj[:, None] + np.arange(-2, 1)[None, :]
    valid = win_idx >= 0
    vals = s[ii[:, None], np.clip(win_idx, 0, nj - 1), kk[:, None]]
    denom = np.maximum(ref - bg, 1e-6)
    frac = np.clip((vals - bg) / denom[:, None], 0.0, 1.0) * valid
    vy = float(a[1, 1])
    # world y of the anterior edge of voxel jj, minus the occupied length
    y_edge_front = a[1, 3] + vy * (jj + 0.5)
    surface = y_edge_front - vy * frac.sum(axis=1)
    return float(np.median(surface))


# ---------------------------------------------------------------------------------------
# MRI world -> DXA-aligned frame
# ---------------------------------------------------------------------------------------


def world_to_frame(
    transform: PlanarTransform,
    dxa_shape: tuple[int, int],
    dxa_spacing: tuple[float, float],
    table_y_mm: float,
) -> np.ndarray:
    """(4, 4) matrix from MRI world ``(x, y, z, 1)`` to the DXA-aligned frame
    ``(row_mm, col_mm, depth_mm, 1)``.

    ``row_mm, col_mm`` are the DXA pixel (inverse of ``dxa_pixel_to_mri``) times the pixel
    spacing; ``depth_mm = y - table_y_mm``. The map is rigid (a rotation in the coronal
    plane, an axis swap and a shift): distances in mm are preserved.
    """
    if not np.isfinite(table_y_mm):
        raise NonFiniteError(f"table_y_mm must be finite, got {table_y_mm!r}")
    m = dxa_pixel_to_mri(transform, dxa_shape, dxa_spacing)  # (row, col, 1) -> (x, z, 1)
    inv = np.linalg.inv(m)  # (x, z, 1) -> (row, col, 1)
    sr, sc = float(dxa_spacing[0]), float(dxa_spacing[1])
    out = np.zeros((4, 4))
    # row_mm = sr * (inv[0,0] x + inv[0,1] z + inv[0,2])
    out[0, [0, 2, 3]] = sr * inv[0, [0, 1, 2]]
    out[1, [0, 2, 3]] = sc * inv[1, [0, 1, 2]]
    out[2, 1] = 1.0
    out[2, 3] = -float(table_y_mm)
    out[3, 3] = 1.0
    return out


def frame_voxel_half_extent(voxel_to_frame: np.ndarray) -> np.ndarray:
    """(3,) half-extent along each frame axis of one voxel (a box), given the (4, 4) map
    from voxel indices to the frame: ``0.5 * sum_i |B[m, i]|`` (the support function of
    the voxel's parallelepiped)."""
    b = np.asarray(voxel_to_frame, dtype=float)[:3, :3]
    return 0.5 * np.abs(b).sum(axis=1)


# ---------------------------------------------------------------------------------------
# Curves from points
# ---------------------------------------------------------------------------------------


def _fill_empty_levels(values: np.ndarray, filled: np.ndarray, levels: np.ndarray) -> np.ndarray:
    if filled.all():
        return values
    if filled.sum() == 0:
        raise EmptySegmentationError("no column voxel falls inside the T1-L5 extent")
    out = values.copy()
    for c in range(values.shape[0]):
        out[c, ~filled] = np.interp(levels[~filled], levels[filled], values[c, filled])
    return out


def curves_from_points(
    points_mm: np.ndarray,
    half_extent_mm: np.ndarray,
    extent_mm: tuple[float, float],
    n_levels: int,
) -> SpineCurves:
    """The six curves of a column given as voxel-centre points in the DXA-aligned frame.

    Each point is the centre of a voxel box whose half-size along the frame axes is
    ``half_extent_mm``. A voxel belongs to the slab that holds its centre and to every
    slab whose middle row its box covers (``row -/+ half_extent_mm[0]``): thick slabs bin
    voxels by centre, and slabs thinner than a voxel, or cut through a tilted slice of
    voxels, still see whole cross-sections; per slab the boundaries are the
    extreme voxel *edges* (centre -/+ half extent). A slab that no voxel reaches (a gap
    in the mask) is interpolated linearly from its neighbours, so no level is empty.

    Parameters
    ----------
    points_mm : (N, 3) ``(row_mm, col_mm, depth_mm)`` voxel centres.
    half_extent_mm : (3,) voxel half-size along the three frame axes.
    extent_mm : ``(top, bottom)`` row-mm of the column.
    n_levels : K >= 3.
    """
    pts = np.asarray(points_mm, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ShapeError(f"points_mm must have shape (N, 3), got {pts.shape}")
    if pts.shape[0] == 0:
        raise EmptySegmentationError("no column voxel to take curves from")
    half = np.asarray(half_extent_mm, dtype=float)
    if half.shape != (3,) or np.any(half < 0) or not np.all(np.isfinite(half)):
        raise InvalidArgumentError(f"half_extent_mm must be 3 non-negative values, got {half_extent_mm!r}")
    k = _check_levels(n_levels)
    top, bottom = float(extent_mm[0]), float(extent_mm[1])
    if not (np.isfinite(top) and np.isfinite(bottom) and top < bottom):
        raise InvalidArgumentError(f"extent_mm must be finite (top, bottom) with top < bottom, got {extent_mm!r}")
    return _curves_core(pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 2], half, top, bottom, k)


def _curves_core(
    row: np.ndarray,
    col: np.ndarray,
    depth_lo: np.ndarray,
    depth_hi: np.ndarray,
    half: np.ndarray,
    top: float,
    bottom: float,
    k: int,
) -> SpineCurves:
    """Slab binning shared by :func:`curves_from_points` and :func:`column_curves`: each
    item is a voxel (or a run of voxels along depth, ``depth_lo..depth_hi`` centres)."""
    h = (bottom - top) / k
    # a voxel belongs to the slab holding its centre and to every slab whose middle row
    # its box covers: thick slabs bin by centre, slabs thinner than a voxel see the
    # cross-section at their middle
    r = (row - top) / h
    k_c = np.floor(r).astype(np.int64)
    k_lo = np.minimum(k_c, np.ceil(r - half[0] / h - 0.5).astype(np.int64))
    k_hi = np.maximum(k_c, np.floor(r + half[0] / h - 0.5).astype(np.int64))
    k_lo = np.clip(k_lo, 0, k - 1)
    k_hi = np.clip(k_hi, -1, k - 1)
    n_rep = np.maximum(k_hi - k_lo + 1, 0)
    if n_rep.sum() == 0:
        raise EmptySegmentationError("no column voxel falls inside the T1-L5 extent")
    src = np.repeat(np.arange(row.shape[0]), n_rep)
    first = np.repeat(np.cumsum(n_rep) - n_rep, n_rep)
    idx = k_lo[src] + (np.arange(src.size) - first)
    order = np.argsort(idx, kind="stable")
    idx, src = idx[order], src[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    present = idx[starts]
    vals = np.zeros((6, k))
    c = col[src]
    vals[_CL, present] = np.minimum.reduceat(c, starts) - half[1]
    vals[_CR, present] = np.maximum.reduceat(c, starts) + half[1]
    vals[_SP, present] = np.minimum.reduceat(depth_lo[src], starts) - half[2]
    vals[_SA, present] = np.maximum.reduceat(depth_hi[src], starts) + half[2]
    filled = np.zeros(k, dtype=bool)
    filled[present] = True
    levels = top + (np.arange(k) + 0.5) * h
    vals = _fill_empty_levels(vals, filled, levels)
    vals[_CC] = 0.5 * (vals[_CL] + vals[_CR])
    vals[_SC] = 0.5 * (vals[_SP] + vals[_SA])
    return SpineCurves(vals, np.array([top, bottom]))


def _check_levels(n_levels: int) -> int:
    if isinstance(n_levels, bool) or int(n_levels) != n_levels or int(n_levels) < MIN_LEVELS:
        raise InvalidArgumentError(f"n_levels must be an integer >= {MIN_LEVELS}, got {n_levels!r}")
    return int(n_levels)


def column_curves(
    seg: np.ndarray,
    affine: np.ndarray,
    transform: PlanarTransform,
    dxa_shape: tuple[int, int],
    dxa_spacing: tuple[float, float],
    table_y_mm: float,
    n_levels: int,
) -> SpineCurves:
    """The six curves of a label volume's spine column, in the DXA's coordinates.

    Every column voxel (labels ``spine.COLUMN_LABELS``) is mapped by its centre into the
    DXA-aligned frame (:func:`world_to_frame`); the extent is the top edge of the T1 body
    and the bottom edge of the L5 body (voxel edges, i.e. centre -/+ the voxel's half
    extent along the DXA row axis); curves follow :func:`curves_from_points`.

    Parameters
    ----------
    seg : (I, J, K) integer label volume (labels of ``spinelib.spine``).
    affine : (4, 4) voxel -> MRI world (RAS mm) affine of ``seg``.
    transform : the DXA frame -> MRI (x, z) ``PlanarTransform``.
    dxa_shape, dxa_spacing : ``(rows, cols)`` and ``(row, col)`` mm of the DXA image.
    table_y_mm : MRI world y of the table plane.
    n_levels : K >= 3.

    Raises
    ------
    ShapeError, InvalidArgumentError, NonFiniteError
        Bad arguments.
    EmptySegmentationError
        No column voxel, or no T1 or no L5 body label.
    """
    labels = np.asarray(seg)
    if labels.ndim != 3:
        raise ShapeError(f"seg must be a 3D label volume, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InvalidArgumentError("seg must hold integer labels")
        labels = labels.astype(np.int16)
    k = _check_levels(n_levels)
    a = check_affine(affine)
    w2f = world_to_frame(transform, dxa_shape, dxa_spacing, table_y_mm)
    v2f = w2f @ a
    half = frame_voxel_half_extent(v2f)

    # one pass over the volume: small lookup table label -> {0: other, 1: column, 2: T1, 3: L5}
    lut_size = int(max(labels.max(initial=0), max(COLUMN_LABELS))) + 1
    if labels.min(initial=0) < 0:
        raise InvalidArgumentError("seg holds negative labels")
    lut = np.zeros(lut_size, dtype=np.uint8)
    lut[list(COLUMN_LABELS)] = 1
    lut[vertebra_label(LEVELS[0])] = 2
    lut[vertebra_label(LEVELS[-1])] = 3
    cls = lut[labels]
    b = v2f[:3, :3]
    separable = np.all(np.abs(b[[0, 1], 1]) < 1e-9) and np.all(np.abs(b[2, [0, 2]]) < 1e-9)
    if separable:
        # canonical affine: (row, col) depend on (i, k) only and depth on j only, so each
        # (i, k) line of voxels along y reduces to its first and last column voxel
        col_any = cls.any(axis=1)  # (I, K)
        if not col_any.any():
            raise EmptySegmentationError("seg holds no spine-column voxel (labels 1..17, 20)")
        ii, kk = np.nonzero(col_any)
        nj = cls.shape[1]
        line = cls[ii, :, kk] > 0  # (N, J)
        j_lo = np.argmax(line, axis=1)
        j_hi = nj - 1 - np.argmax(line[:, ::-1], axis=1)
        row = b[0, 0] * ii + b[0, 2] * kk + v2f[0, 3]
        col = b[1, 0] * ii + b[1, 2] * kk + v2f[1, 3]
        d_lo = b[2, 1] * j_lo + v2f[2, 3]
        d_hi = b[2, 1] * j_hi + v2f[2, 3]
        d_lo, d_hi = np.minimum(d_lo, d_hi), np.maximum(d_lo, d_hi)
        t1_line = (cls[ii, :, kk] == 2).any(axis=1)
        l5_line = (cls[ii, :, kk] == 3).any(axis=1)
        t1, l5 = row[t1_line], row[l5_line]
    else:
        ijk = np.stack(np.nonzero(cls), axis=1)  # (N, 3) int
        if ijk.shape[0] == 0:
            raise EmptySegmentationError("seg holds no spine-column voxel (labels 1..17, 20)")
        which = cls[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        pts = ijk.astype(float) @ b.T + v2f[:3, 3]
        row, col, d_lo = pts[:, 0], pts[:, 1], pts[:, 2]
        d_hi = d_lo
        t1, l5 = row[which == 2], row[which == 3]
    if t1.size == 0 or l5.size == 0:
        missing = [n for n, arr in ((LEVELS[0], t1), (LEVELS[-1], l5)) if arr.size == 0]
        raise EmptySegmentationError(f"seg has no voxel of vertebral body {', '.join(missing)}")
    top = float(t1.min() - half[0])
    bottom = float(l5.max() + half[0])
    if not top < bottom:
        raise InvalidArgumentError(
            f"T1 top ({top:.1f} row-mm) is not above L5 bottom ({bottom:.1f}); wrong transform or labels?"
        )
    return _curves_core(row, col, d_lo, d_hi, half, top, bottom, k)


# ---------------------------------------------------------------------------------------
# The model's view: crop coordinates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropWindow:
    """The crop of a DXA image that the network sees ("the model's view").

    Attributes
    ----------
    row0, col0 : top-left pixel of the crop in the image resampled to ``pixel_mm``.
    rows, cols : crop size in pixels (the network's ``image_size``).
    pixel_mm : pixel size of the resampled image (``crop_pixel_mm``).
    """

    row0: float
    col0: float
    rows: int
    cols: int
    pixel_mm: float

    def __post_init__(self) -> None:
        vals = (self.row0, self.col0, self.rows, self.cols, self.pixel_mm)
        if not all(np.isfinite(v) for v in vals):
            raise NonFiniteError(f"crop window values must be finite, got {vals}")
        if self.rows <= 0 or self.cols <= 0 or self.pixel_mm <= 0:
            raise InvalidArgumentError(
                f"crop rows, cols and pixel_mm must be positive, got {self.rows}, {self.cols}, {self.pixel_mm}"
            )


def _crop_attrs(crop: Any) -> tuple[float, float, float, float, float]:
    try:
        vals = tuple(float(getattr(crop, n)) for n in ("row0", "col0", "rows", "cols", "pixel_mm"))
    except AttributeError as exc:
        raise InvalidArgumentError(f"crop lacks attribute {exc.name!r} (needs row0, col0, rows, cols, pixel_mm)") from None
    if not all(np.isfinite(vals)) or min(vals[2:]) <= 0:
        raise InvalidArgumentError(f"bad crop window {vals}")
    return vals  # type: ignore[return-value]


def to_crop(curves: SpineCurves, crop: Any) -> np.ndarray:
    """Normalise curves to crop coordinates: a ``(6 K + 2,)`` float vector.

    Layout: the six curves one after the other (``values.ravel()``), then the extent.
    Coronal ``c -> (c / pixel_mm - col0) / cols``; sagittal ``d -> d / (pixel_mm * cols)``;
    extent ``r -> (r / pixel_mm - row0) / rows``.
    """
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    row0, col0, rows, cols, px = _crop_attrs(crop)
    v = curves.values.copy()
    v[:3] = (v[:3] / px - col0) / cols
    v[3:] = v[3:] / (px * cols)
    ext = (curves.extent_mm / px - row0) / rows
    return np.concatenate([v.ravel(), ext])


def from_crop(vector: np.ndarray, crop: Any, n_levels: int, *, repair: bool = True) -> SpineCurves:
    """Inverse of :func:`to_crop`: a ``(6 K + 2,)`` vector back to :class:`SpineCurves` in mm.

    A network's raw output may put a left boundary right of its right boundary (or the
    posterior anterior of the anterior, or the extent upside down). With ``repair``
    (default) each such pair is put in order (the two values swapped; a zero-height
    extent widened by 1e-6 mm); without it, :class:`SpineCurves` raises. Valid curves
    are returned unchanged, so ``from_crop(to_crop(c, w), w, K)`` equals ``c``.
    """
    k = _check_levels(n_levels)
    vec = np.asarray(vector, dtype=float)
    if vec.shape != (6 * k + 2,):
        raise ShapeError(f"crop vector must have shape ({6 * k + 2},) for K = {k}, got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise NonFiniteError("crop vector holds NaN or infinite values")
    row0, col0, rows, cols, px = _crop_attrs(crop)
    v = vec[: 6 * k].reshape(6, k).copy()
    v[:3] = (v[:3] * cols + col0) * px
    v[3:] = v[3:] * (px * cols)
    ext = (vec[6 * k:] * rows + row0) * px
    if repair:
        for lo, hi in ((_CL, _CR), (_SP, _SA)):
            a, b = np.minimum(v[lo], v[hi]), np.maximum(v[lo], v[hi])
            v[lo], v[hi] = a, b
        ext = np.sort(ext)
        if ext[1] - ext[0] <= 0:
            ext = ext + np.array([-5e-7, 5e-7])
    return SpineCurves(v, ext)
