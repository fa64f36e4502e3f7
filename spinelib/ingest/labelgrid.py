"""Geometry of label masks on a voxel grid: voxel sizes, world coordinates, boxes, components.

The shared vocabulary of :mod:`.segment`, :mod:`.vertebra_body` and :mod:`.discs`: masks are
``(I, J, K)`` arrays on a grid whose ``(4, 4)`` affine maps voxel indices to world mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["voxel_sizes", "to_world", "unit", "largest_component", "padded_box", "box_affine", "opened_core"]


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel sizes (mm) along the array axes of a (4, 4) affine."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def to_world(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 3) world mm of (N, 3) voxel indices."""
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def unit(v: np.ndarray) -> np.ndarray | None:
    """``v`` normalised, or None when its length is (nearly) zero."""
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else None


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Bool mask of the largest connected component of ``mask`` (``mask`` itself when it has at most one)."""
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def padded_box(start: np.ndarray, stop: np.ndarray, pad: np.ndarray,
               shape: tuple[int, ...]) -> tuple[tuple[slice, ...], np.ndarray]:
    """The box ``[start, stop)`` grown by ``pad`` voxels per axis, clipped to ``shape``: (slices, (3,) lower corner)."""
    lo = np.maximum(np.asarray(start) - pad, 0)
    hi = np.minimum(np.asarray(stop) + pad, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), lo


def box_affine(affine: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """(4, 4) affine of the sub-array whose voxel 0 is voxel ``lo`` of the grid ``affine``."""
    out = affine.copy()
    out[:3, 3] = to_world(lo[None, :].astype(float), affine)[0]
    return out


def _ball(radius_mm: float, voxel_mm: np.ndarray) -> np.ndarray:
    """Boolean ellipsoidal structuring element: a ball of ``radius_mm`` on this grid."""
    half = np.floor(radius_mm / voxel_mm).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * v for h, v in zip(half, voxel_mm)], indexing="ij")
    return sum(g * g for g in grids) <= radius_mm**2 + 1e-9


def opened_core(mask: np.ndarray, voxel_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Largest component of the opening of ``mask`` by a ball of ``radius_mm`` (mm).

    ``mask`` itself (its largest component) when the ball is a single voxel or the opening
    removes everything; a vertebra's opening by a 5 mm ball keeps its body (its core).
    """
    ball = _ball(radius_mm, voxel_mm)
    if ball.sum() <= 1:
        return largest_component(mask)
    opened = ndi.binary_opening(mask, structure=ball)
    if not opened.any():
        return largest_component(mask)
    return largest_component(opened)
