"""The DXA-aligned 3D frame: where MRI world points fall in the DXA's row, column and depth (mm).

Coordinates of the frame, shared by curve extraction (:mod:`spinelib.shape.extract`) and the
reconstruction (:mod:`spinelib.shape.reconstruct`)::

    row_mm   = spacing_row * row    (row of the DXA pixel grid, 0 superior)
    col_mm   = spacing_col * col    (column, 0 at the patient's right)
    depth_mm = y - table_y          (MRI world y above the table plane, anterior positive)

where ``(row, col)`` is the DXA pixel that ``transform.dxa_pixel_to_mri`` sends to the MRI
point ``(x, z)``. The DXA<->MRI transform is planar (x, z), so ``y`` is shared.
"""

from __future__ import annotations

import numpy as np

from ..errors import NonFiniteError
from ..geometry.transform import PlanarTransform, dxa_pixel_to_mri

__all__ = ["world_to_frame", "frame_voxel_half_extent"]


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
