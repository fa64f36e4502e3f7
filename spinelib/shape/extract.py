"""The six curves read off a 3D spine mask: the targets, in the DXA's coordinates.

Every column voxel (vertebral bodies and discs, T1-L5) is placed by its centre in the
DXA-aligned frame (:mod:`spinelib.shape.frame`) and binned into the K slabs of the column's
extent; per slab, the curves are the extreme voxel edges (:class:`spinelib.shape.curves.SpineCurves`).
"""

from __future__ import annotations

import numpy as np

from ..errors import EmptySegmentationError, InvalidArgumentError, ShapeError
from ..io import check_affine
from ..spine import COLUMN_LABELS, LEVELS, vertebra_label
from .curves import _CC, _CL, _CR, _SA, _SC, _SP, SpineCurves, check_levels
from .frame import SubjectFrame, check_frame, frame_voxel_half_extent

__all__ = ["curves_from_points", "column_curves"]

#: Per-voxel classes of :func:`_column_classes` (0 is any other voxel): column, T1 body, L5 body.
_COLUMN, _T1, _L5 = 1, 2, 3
#: Frame positions of a column's items: ``(row, col, depth_lo, depth_hi)`` in mm, then the
#: rows of the items holding T1 and L5 body voxels.
_Items = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _fill_empty_levels(values: np.ndarray, filled: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``values`` with the levels not ``filled`` interpolated linearly from the filled ones."""
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
    k = check_levels(n_levels)
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


def column_curves(
    seg: np.ndarray,
    affine: np.ndarray,
    frame: SubjectFrame,
    n_levels: int,
) -> SpineCurves:
    """The six curves of a label volume's spine column, in the DXA's coordinates.

    Every column voxel (labels ``spine.COLUMN_LABELS``) is mapped by its centre into the
    subject's DXA-aligned frame (:meth:`~spinelib.shape.frame.SubjectFrame.world_to_frame`);
    the extent is the top edge of the T1 body and the bottom edge of the L5 body (voxel edges,
    i.e. centre -/+ the voxel's half extent along the DXA row axis); curves follow
    :func:`curves_from_points`.

    Parameters
    ----------
    seg : (I, J, K) integer label volume (labels of ``spinelib.spine``).
    affine : (4, 4) voxel -> MRI world (RAS mm) affine of ``seg``.
    frame : the subject's :class:`~spinelib.shape.frame.SubjectFrame` (DXA<->MRI transform,
        DXA shape and pixel spacing, table plane).
    n_levels : K >= 3.

    Raises
    ------
    ShapeError, InvalidArgumentError, NonFiniteError
        Bad arguments.
    EmptySegmentationError
        No column voxel, or no T1 or no L5 body label.
    """
    labels = _integer_labels(seg)
    k = check_levels(n_levels)
    a = check_affine(affine)
    w2f = check_frame(frame).world_to_frame()
    v2f = w2f @ a
    half = frame_voxel_half_extent(v2f)
    cls = _column_classes(labels)
    b = v2f[:3, :3]
    separable = np.all(np.abs(b[[0, 1], 1]) < 1e-9) and np.all(np.abs(b[2, [0, 2]]) < 1e-9)
    row, col, d_lo, d_hi, t1, l5 = (_line_items if separable else _voxel_items)(cls, v2f)
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


def _integer_labels(seg: np.ndarray) -> np.ndarray:
    """``seg`` as a 3D integer label array (whole-valued floats become int16)."""
    labels = np.asarray(seg)
    if labels.ndim != 3:
        raise ShapeError(f"seg must be a 3D label volume, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InvalidArgumentError("seg must hold integer labels")
        labels = labels.astype(np.int16)
    return labels


def _column_classes(labels: np.ndarray) -> np.ndarray:
    """(I, J, K) uint8 class per voxel (0, ``_COLUMN``, ``_T1`` or ``_L5``), in one lookup-table pass."""
    lut_size = int(max(labels.max(initial=0), max(COLUMN_LABELS))) + 1
    if labels.min(initial=0) < 0:
        raise InvalidArgumentError("seg holds negative labels")
    lut = np.zeros(lut_size, dtype=np.uint8)
    lut[list(COLUMN_LABELS)] = _COLUMN
    lut[vertebra_label(LEVELS[0])] = _T1
    lut[vertebra_label(LEVELS[-1])] = _L5
    return lut[labels]


def _line_items(cls: np.ndarray, v2f: np.ndarray) -> _Items:
    """Items for a canonical affine: one per (i, k) line of voxels along y, spanning its column voxels.

    (row, col) depend on (i, k) only and depth on j only, so each line reduces to its first
    and last column voxel.
    """
    b = v2f[:3, :3]
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
    t1_line = (cls[ii, :, kk] == _T1).any(axis=1)
    l5_line = (cls[ii, :, kk] == _L5).any(axis=1)
    return row, col, d_lo, d_hi, row[t1_line], row[l5_line]


def _voxel_items(cls: np.ndarray, v2f: np.ndarray) -> _Items:
    """Items for any affine: one per column voxel, at its centre."""
    ijk = np.stack(np.nonzero(cls), axis=1)  # (N, 3) int
    if ijk.shape[0] == 0:
        raise EmptySegmentationError("seg holds no spine-column voxel (labels 1..17, 20)")
    which = cls[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    pts = ijk.astype(float) @ v2f[:3, :3].T + v2f[:3, 3]
    row, col, d_lo = pts[:, 0], pts[:, 1], pts[:, 2]
    return row, col, d_lo, d_lo, row[which == _T1], row[which == _L5]
