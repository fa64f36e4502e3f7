"""The DXA-aligned 3D frame: where MRI world points fall in the DXA's row, column and depth (mm).

Coordinates of the frame, shared by curve extraction (:mod:`spinelib.shape.extract`) and the
reconstruction (:mod:`spinelib.shape.reconstruct`)::

    row_mm   = spacing_row * row    (row of the DXA pixel grid, 0 superior)
    col_mm   = spacing_col * col    (column, 0 at the patient's right)
    depth_mm = y - table_y          (MRI world y above the table plane, anterior positive)

where ``(row, col)`` is the DXA pixel that ``transform.dxa_pixel_to_mri`` sends to the MRI
point ``(x, z)``. The DXA<->MRI transform is planar (x, z), so ``y`` is shared.

One subject's frame is a :class:`SubjectFrame`: the transform, the DXA's shape and pixel
spacing and the table plane, validated once; :meth:`SubjectFrame.world_to_frame` is the one
implementation of the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError
from ..geometry.transform import PlanarTransform, check_image_shape, check_image_spacing, dxa_pixel_to_mri

__all__ = ["SubjectFrame", "check_frame", "frame_voxel_half_extent"]


@dataclass(frozen=True)
class SubjectFrame:
    """The DXA-aligned 3D frame of one subject: where its MRI world points fall in its DXA.

    The four fields are checked once, here, and stored normalised (Python ints and floats);
    every function of the frame takes this one object.

    Parameters
    ----------
    transform : PlanarTransform
        The rigid map from the DXA frame to the MRI coronal plane ``(x, z)`` (degrees, mm).
    dxa_shape : (int, int)
        ``(rows, cols)`` of the DXA image, in pixels.
    dxa_spacing : (float, float)
        ``(row, col)`` pixel spacing of the DXA image, in mm.
    table_y_mm : float
        MRI world ``y`` of the scanner table plane, in mm (depth 0 of the frame).

    Raises
    ------
    InvalidArgumentError
        ``transform`` is not a finite :class:`PlanarTransform`, ``dxa_shape`` is not two
        positive integers, ``dxa_spacing`` not two positive finite mm, or ``table_y_mm``
        not a number.
    NonFiniteError
        ``table_y_mm`` is NaN or infinite.

    Examples
    --------
    >>> f = SubjectFrame(PlanarTransform(0.0, 0.0, 0.0), (3, 5), (1.0, 2.0), -10.0)
    >>> (f.world_to_frame() @ [0.0, 0.0, 0.0, 1.0]).tolist()   # the DXA centre, 10 mm up
    [1.0, 4.0, 10.0, 1.0]
    """

    transform: PlanarTransform
    dxa_shape: tuple[int, int]
    dxa_spacing: tuple[float, float]
    table_y_mm: float

    def __post_init__(self) -> None:
        if not isinstance(self.transform, PlanarTransform):
            raise InvalidArgumentError(f"transform must be a PlanarTransform, got {type(self.transform).__name__}")
        self.transform.matrix  # noqa: B018  raises InvalidArgumentError on non-finite parameters
        try:
            shape = check_image_shape(self.dxa_shape)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"dxa_shape: {exc}") from None
        try:
            spacing = check_image_spacing(self.dxa_spacing)
        except (TypeError, ValueError) as exc:  # InvalidArgumentError is a ValueError
            raise InvalidArgumentError(f"dxa_spacing: {exc}") from None
        ty = self.table_y_mm
        try:
            if isinstance(ty, (bool, str, bytes)) or np.ndim(ty) != 0:
                raise TypeError
            ty = float(ty)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"table_y_mm must be a number (mm), got {self.table_y_mm!r}") from None
        if not np.isfinite(ty):
            raise NonFiniteError(f"table_y_mm must be finite, got {self.table_y_mm!r}")
        object.__setattr__(self, "dxa_shape", shape)
        object.__setattr__(self, "dxa_spacing", spacing)
        object.__setattr__(self, "table_y_mm", ty)

    def dxa_pixel_to_mri(self) -> np.ndarray:
        """(3, 3) matrix from DXA pixel ``(row, col, 1)`` to MRI world ``(x, z, 1)`` in mm."""
        return dxa_pixel_to_mri(self.transform, self.dxa_shape, self.dxa_spacing)

    def world_to_frame(self) -> np.ndarray:
        """(4, 4) matrix from MRI world ``(x, y, z, 1)`` to the DXA-aligned frame
        ``(row_mm, col_mm, depth_mm, 1)``.

        ``row_mm, col_mm`` are the DXA pixel (inverse of :meth:`dxa_pixel_to_mri`) times the
        pixel spacing; ``depth_mm = y - table_y_mm``. The map is rigid (a rotation in the
        coronal plane, an axis swap and a shift): distances in mm are preserved.
        """
        m = self.dxa_pixel_to_mri()  # (row, col, 1) -> (x, z, 1)
        inv = np.linalg.inv(m)  # (x, z, 1) -> (row, col, 1)
        sr, sc = self.dxa_spacing
        out = np.zeros((4, 4))
        # row_mm = sr * (inv[0,0] x + inv[0,1] z + inv[0,2])
        out[0, [0, 2, 3]] = sr * inv[0, [0, 1, 2]]
        out[1, [0, 2, 3]] = sc * inv[1, [0, 1, 2]]
        out[2, 1] = 1.0
        out[2, 3] = -self.table_y_mm
        out[3, 3] = 1.0
        return out


def check_frame(frame: object, name: str = "frame") -> SubjectFrame:
    """``frame`` itself when it is a :class:`SubjectFrame`, else an
    :class:`~spinelib.errors.InvalidArgumentError` naming ``name``."""
    if not isinstance(frame, SubjectFrame):
        raise InvalidArgumentError(f"{name} must be a SubjectFrame, got {type(frame).__name__}")
    return frame


def frame_voxel_half_extent(voxel_to_frame: np.ndarray) -> np.ndarray:
    """(3,) half-extent along each frame axis of one voxel (a box), given the (4, 4) map
    from voxel indices to the frame: ``0.5 * sum_i |B[m, i]|`` (the support function of
    the voxel's parallelepiped)."""
    b = np.asarray(voxel_to_frame, dtype=float)[:3, :3]
    return 0.5 * np.abs(b).sum(axis=1)
