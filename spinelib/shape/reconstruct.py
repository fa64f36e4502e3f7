"""The 3D spine rebuilt from the two orthogonal curve sets, and the true column in the same frame.

Everything here lives in the *DXA-aligned 3D frame*: axes
``(row_mm, col_mm, depth_mm)`` = (DXA row-mm, DXA column-mm, depth above the table). A
:class:`Grid3D` samples that frame; voxel ``(i, j, k)`` has its centre at
``origin_mm + (i, j, k) * spacing_mm``.

The reconstruction: level ``k`` is an ellipse in the
(col, depth) plane centred at ``(coronal_centre, sagittal_centre)`` with semi-axes
``(coronal_right - coronal_left) / 2`` and ``(sagittal_anterior - sagittal_posterior) / 2``,
extruded over the level's slab ``[top + k h, top + (k + 1) h)``. The true mask used for IoU
is the MRI column mask resampled (nearest neighbour) into the same grid through the subject's
:class:`~spinelib.shape.frame.SubjectFrame` (:func:`column_mask_in_frame`), so both sides are
compared voxel for voxel.

Examples
--------
>>> import numpy as np
>>> from spinelib.shape.curves import SpineCurves
>>> v = np.tile(np.array([[-10.0], [0.0], [10.0], [20.0], [30.0], [40.0]]), (1, 5))
>>> c = SpineCurves(v, np.array([0.0, 50.0]))
>>> g = grid_for([c], spacing_mm=1.0, margin_mm=2.0)
>>> m = ellipse_mask(c, g)
>>> round(float(m.sum()) * 1.0 / (np.pi * 10 * 10 * 50), 1)   # volume of the cylinder
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .curves import SpineCurves
from .frame import SubjectFrame, check_frame
from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..spine import column_mask

__all__ = [
    "Grid3D",
    "grid_for",
    "ellipse_mask",
    "column_mask_in_frame",
    "surface_mesh",
    "centreline_points",
]


@dataclass(frozen=True)
class Grid3D:
    """A regular grid in the DXA-aligned frame ``(row_mm, col_mm, depth_mm)``.

    Attributes
    ----------
    origin_mm : (3,) centre of voxel ``(0, 0, 0)`` in mm.
    spacing_mm : (3,) voxel size in mm (positive).
    shape : (3,) number of voxels along each axis.

    Stored as tuples (hashable, immutable); :attr:`origin`, :attr:`spacing` give arrays.
    """

    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        o = np.asarray(self.origin_mm, dtype=float)
        s = np.broadcast_to(np.asarray(self.spacing_mm, dtype=float), (3,))
        sh = np.asarray(self.shape)
        if o.shape != (3,) or sh.shape != (3,):
            raise ShapeError(f"grid origin_mm and shape must have 3 values, got {o.shape}, {sh.shape}")
        if not (np.all(np.isfinite(o)) and np.all(np.isfinite(s))):
            raise NonFiniteError("grid origin and spacing must be finite")
        if np.any(s <= 0):
            raise InvalidArgumentError(f"grid spacing must be positive, got {s.tolist()}")
        if np.any(sh < 1) or np.any(sh != np.round(sh)):
            raise InvalidArgumentError(f"grid shape must be positive integers, got {sh.tolist()}")
        object.__setattr__(self, "origin_mm", tuple(float(v) for v in o))
        object.__setattr__(self, "spacing_mm", tuple(float(v) for v in s))
        object.__setattr__(self, "shape", tuple(int(v) for v in sh))

    @property
    def origin(self) -> np.ndarray:
        return np.array(self.origin_mm)

    @property
    def spacing(self) -> np.ndarray:
        return np.array(self.spacing_mm)

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along one axis (0 row, 1 col, 2 depth)."""
        return self.origin_mm[axis] + np.arange(self.shape[axis]) * self.spacing_mm[axis]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))


def grid_for(
    curves_list: Iterable[SpineCurves],
    spacing_mm: float | Sequence[float] = 2.0,
    margin_mm: float = 5.0,
) -> Grid3D:
    """A grid covering every curve set in ``curves_list`` with ``margin_mm`` on each side.

    Voxel centres start at a multiple of the spacing (so grids built for different subsets
    of the same subjects line up).
    """
    cl = list(curves_list)
    if not cl:
        raise InvalidArgumentError("grid_for needs at least one SpineCurves")
    for c in cl:
        if not isinstance(c, SpineCurves):
            raise InvalidArgumentError(f"grid_for takes SpineCurves, got {type(c).__name__}")
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,)).copy()
    if np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise InvalidArgumentError(f"spacing_mm must be positive, got {spacing_mm!r}")
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise InvalidArgumentError(f"margin_mm must be >= 0, got {margin_mm!r}")
    lo = np.array([
        min(float(c.extent_mm[0]) for c in cl),
        min(float(c.values[0].min()) for c in cl),
        min(float(c.values[3].min()) for c in cl),
    ]) - margin_mm
    hi = np.array([
        max(float(c.extent_mm[1]) for c in cl),
        max(float(c.values[2].max()) for c in cl),
        max(float(c.values[5].max()) for c in cl),
    ]) + margin_mm
    start = np.floor(lo / sp) * sp
    shape = np.ceil((hi - start) / sp - 1e-9).astype(int) + 1
    return Grid3D(tuple(start), tuple(sp), tuple(shape))


def ellipse_mask(curves: SpineCurves, grid: Grid3D) -> np.ndarray:
    """Boolean ``grid.shape`` mask of the ellipse-per-level reconstruction.

    A grid voxel (centre ``(r, c, d)``) is inside when ``r`` falls in some level's slab
    ``[top + k h, top + (k + 1) h)`` and ``((c - cc_k) / a_k)^2 + ((d - dc_k) / b_k)^2 <= 1``
    with the level's centre ``(cc_k, dc_k)`` and semi-axes ``(a_k, b_k)``.
    A zero semi-axis gives a degenerate (empty or line) section.
    """
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    if not isinstance(grid, Grid3D):
        raise InvalidArgumentError(f"grid must be a Grid3D, got {type(grid).__name__}")
    v = curves.values
    top = float(curves.extent_mm[0])
    h = curves.level_height_mm
    k = curves.n_levels
    rows = grid.axis_mm(0)
    cols = grid.axis_mm(1)
    deps = grid.axis_mm(2)
    lev = np.floor((rows - top) / h).astype(np.int64)
    ok = (lev >= 0) & (lev < k)
    out = np.zeros(grid.shape, dtype=bool)
    if not ok.any():
        return out
    li = lev[ok]
    cc = v[1, li]
    dc = v[4, li]
    a = np.maximum(0.5 * (v[2, li] - v[0, li]), 1e-12)
    b = np.maximum(0.5 * (v[5, li] - v[3, li]), 1e-12)
    u = ((cols[None, :] - cc[:, None]) / a[:, None]) ** 2  # (R, C)
    w = ((deps[None, :] - dc[:, None]) / b[:, None]) ** 2  # (R, D)
    out[ok] = (u[:, :, None] + w[:, None, :]) <= 1.0
    return out


def column_mask_in_frame(
    seg: np.ndarray,
    affine: np.ndarray,
    frame: SubjectFrame,
    grid: Grid3D,
) -> np.ndarray:
    """The TRUE spine-column mask of a label volume, resampled (nearest) onto ``grid``.

    Each grid voxel centre ``(row_mm, col_mm, depth_mm)`` is mapped back to MRI world
    (inverse of :meth:`spinelib.shape.frame.SubjectFrame.world_to_frame` of ``frame``, the
    subject's :class:`~spinelib.shape.frame.SubjectFrame`) and then to voxel indices of
    ``seg``; it takes the column label (``spine.column_mask``) of the nearest voxel, and
    False outside the volume.

    Returns
    -------
    bool array of ``grid.shape``.
    """
    labels = np.asarray(seg)
    if labels.ndim != 3:
        raise ShapeError(f"seg must be a 3D label volume, got shape {labels.shape}")
    if not isinstance(grid, Grid3D):
        raise InvalidArgumentError(f"grid must be a Grid3D, got {type(grid).__name__}")
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4):
        raise ShapeError(f"affine must have shape (4, 4), got {a.shape}")
    w2f = check_frame(frame).world_to_frame()
    col = column_mask(labels)
    f2v = np.linalg.inv(w2f @ a)  # frame (row, col, depth, 1) -> voxel (i, j, k, 1)
    r = grid.axis_mm(0)
    c = grid.axis_mm(1)
    d = grid.axis_mm(2)
    out = np.zeros(grid.shape, dtype=bool)
    idx = []
    for ax in range(3):
        m = f2v[ax]
        x = (m[0] * r[:, None, None] + m[1] * c[None, :, None] + m[2] * d[None, None, :] + m[3])
        idx.append(np.rint(x))
    # the common case (canonical affine, planar transform) makes these broadcastable views;
    # np.rint above already broadcast them into full arrays only where needed
    shape = grid.shape
    ii, jj, kk = (np.broadcast_to(x, shape) for x in idx)
    inside = (
        (ii >= 0) & (ii < labels.shape[0])
        & (jj >= 0) & (jj < labels.shape[1])
        & (kk >= 0) & (kk < labels.shape[2])
    )
    out[inside] = col[ii[inside].astype(np.intp), jj[inside].astype(np.intp), kk[inside].astype(np.intp)]
    return out


def surface_mesh(mask: np.ndarray, grid: Grid3D, *, step_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of a mask's surface in frame mm (``skimage.measure.marching_cubes``).

    The mask is padded by one empty voxel so the surface is closed where it touches the
    grid border.

    Returns
    -------
    verts_mm : (V, 3) float vertices ``(row_mm, col_mm, depth_mm)``.
    faces : (F, 3) int triangle vertex indices.
    """
    from skimage.measure import marching_cubes

    m = np.asarray(mask)
    if m.shape != tuple(grid.shape):
        raise ShapeError(f"mask shape {m.shape} does not match the grid's {grid.shape}")
    if not m.any():
        raise EmptySegmentationError("cannot mesh an empty mask")
    padded = np.pad(m.astype(np.float32), 1)
    verts, faces, _normals, _values = marching_cubes(
        padded, level=0.5, spacing=grid.spacing_mm, step_size=step_size, allow_degenerate=False
    )
    verts = verts - grid.spacing + grid.origin
    return verts, faces.astype(np.int64)


def centreline_points(curves: SpineCurves) -> np.ndarray:
    """(K, 3) centreline ``(row_mm, col_mm, depth_mm)``: ``(levels_mm, coronal_centre,
    sagittal_centre)`` per level."""
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    return np.stack([curves.levels_mm, curves.values[1], curves.values[4]], axis=1)
