"""The scanner table plane in the MRI: the world ``y`` of the posterior body surface (mm).

The sagittal curves are depths above this plane (``depth_mm = y - table_y``, see
:mod:`spinelib.shape.frame`): the patient lies on the table in both modalities, so the
plane is the one depth origin the DXA and the MRI share. It is found from the MRI's fat
and water signal alone, to sub-voxel precision by partial volume.
"""

from __future__ import annotations

import numpy as np

from ..errors import EmptySegmentationError, InvalidArgumentError, ShapeError
from ..io import check_affine

__all__ = ["estimate_table_y"]


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
    a = _canonical_affine(affine)
    s = f + w
    if not np.all(np.isfinite(s)):
        s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    threshold, bg = _body_threshold(s, threshold)
    body = s > threshold
    has = body.any(axis=1)  # (I, K)
    if not has.any():
        raise EmptySegmentationError(f"no MRI voxel above the body threshold {threshold:.4g}")
    ii, kk, jj = _table_edges(body, has)
    return float(np.median(_surface_y(s, ii, kk, jj, bg, a)))


def _canonical_affine(affine: np.ndarray) -> np.ndarray:
    """The checked (4, 4) affine, refused unless diagonal with positive entries (canonical RAS)."""
    a = check_affine(affine)
    off = a[:3, :3] - np.diag(np.diag(a[:3, :3]))
    if np.any(np.abs(off) > 1e-6) or np.any(np.diag(a)[:3] <= 0):
        raise InvalidArgumentError(
            "affine is not canonical RAS (diagonal, positive); load with nibabel.as_closest_canonical"
        )
    return a


def _body_threshold(s: np.ndarray, threshold: float | None) -> tuple[float, float]:
    """``(threshold, background level)`` of the signal ``s``: Otsu-based unless ``threshold`` is given."""
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
    return threshold, bg


def _table_edges(body: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, k, j)`` of the posterior-most body voxel of every column at (or one voxel from) the modal edge."""
    edge = np.argmax(body, axis=1)  # posterior-most body voxel index j per (i, k)
    e = edge[has]
    mode = int(np.bincount(e).argmax())
    sel = has & (edge <= mode + 1)
    ii, kk = np.nonzero(sel)
    return ii, kk, edge[sel]


def _surface_y(s: np.ndarray, ii: np.ndarray, kk: np.ndarray, jj: np.ndarray, bg: float,
               a: np.ndarray) -> np.ndarray:
    """World y (mm) of the body surface in each column ``(ii, kk)`` with edge voxel ``jj``, by partial volume."""
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
    return y_edge_front - vy * frac.sum(axis=1)
