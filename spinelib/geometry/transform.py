"""Planar geometry shared by every module: DXA pixels, the DXA<->MRI rigid transform.

Conventions:

* World coordinates are millimetres, RAS+ (+x patient Right, +y Anterior, +z Superior).
* A DXA image is indexed ``[row, col]``; row 0 is superior, column 0 at the patient's
  right. Its own *DXA frame* is a coronal (x, z) plane in mm, RAS-oriented, centred
  on the image centre::

      x_d = -(col - (n_cols - 1) / 2) * spacing_col
      z_d = -(row - (n_rows - 1) / 2) * spacing_row

* The alignment is a planar rigid transform ``(theta_deg, tx_mm, ty_mm)`` from the
  DXA frame into the MRI coronal plane ``(x, z)``::

      x = cos(theta) * x_d - sin(theta) * z_d + tx
      z = sin(theta) * x_d + cos(theta) * z_d + ty

  so ``(tx, ty)`` is where the DXA image centre lands in MRI world coordinates.

All matrices are 3 x 3 homogeneous, acting on column vectors, in the style of
``nibabel.affines``; points are ``(N, 2)`` arrays.

Examples
--------
>>> t = PlanarTransform(90.0, 10.0, 0.0)
>>> np.round(t.apply(np.array([[1.0, 0.0]])), 6)
array([[10.,  1.]])
>>> np.allclose(t.inverse().apply(t.apply(np.array([[3.0, 4.0]]))), [[3.0, 4.0]])
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, ShapeError

__all__ = [
    "PlanarTransform",
    "rigid2d",
    "dxa_pixel_to_frame",
    "dxa_pixel_to_mri",
    "apply2d",
    "coronal_affine",
    "transform_error_mm",
    "check_image_shape",
    "check_image_spacing",
]


def _as_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ShapeError(f"{name} must have shape (N, 2), got {pts.shape}")
    return pts


def check_image_spacing(spacing: tuple[float, float]) -> tuple[float, float]:
    """A DXA image's ``(row, col)`` pixel spacing, checked.

    Parameters
    ----------
    spacing : two numbers, mm.

    Returns
    -------
    (float, float)
        The row and column spacing in mm.

    Raises
    ------
    InvalidArgumentError
        Not exactly two values, or one that is not finite and > 0.

    Examples
    --------
    >>> check_image_spacing((0.5, 0.6))
    (0.5, 0.6)
    """
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InvalidArgumentError(
            f"pixel spacing must be two positive finite mm values (row, col), got {spacing!r}"
        )
    return float(sp[0]), float(sp[1])


def check_image_shape(shape: tuple[int, int], name: str = "image shape", minimum: int = 1) -> tuple[int, int]:
    """An image's ``(n_rows, n_cols)``, checked.

    Parameters
    ----------
    shape : two sizes.
    name : what ``shape`` is, for the error message.
    minimum : the smallest size allowed (pixels).

    Returns
    -------
    (int, int)

    Raises
    ------
    InvalidArgumentError
        Not two integers (booleans and floats are refused), or a size below ``minimum``.

    Examples
    --------
    >>> check_image_shape((300, 200))
    (300, 200)
    """
    if (isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in shape) or min(shape) < minimum):
        raise InvalidArgumentError(f"{name} must be two integers (rows, cols), each >= {minimum}, got {shape!r}")
    return int(shape[0]), int(shape[1])


def rigid2d(theta_deg: float, tx_mm: float, ty_mm: float) -> np.ndarray:
    """Homogeneous matrix of a planar rotation by ``theta_deg`` then a shift.

    Returns
    -------
    (3, 3) float array acting on ``(x, z, 1)`` column vectors.
    """
    vals = np.array([theta_deg, tx_mm, ty_mm], dtype=float)
    if not np.all(np.isfinite(vals)):
        raise InvalidArgumentError(f"transform parameters must be finite, got {tuple(vals)}")
    t = np.deg2rad(vals[0])
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, vals[1]], [s, c, vals[2]], [0.0, 0.0, 1.0]])


def dxa_pixel_to_frame(shape: tuple[int, int], spacing: tuple[float, float]) -> np.ndarray:
    """Matrix from DXA pixel indices ``(row, col, 1)`` to the DXA frame ``(x_d, z_d, 1)`` in mm.

    Parameters
    ----------
    shape : (n_rows, n_cols) of the DXA image.
    spacing : (row, col) pixel spacing in mm.

    Returns
    -------
    (3, 3) float array.
    """
    n_rows, n_cols = check_image_shape(shape)
    sr, sc = check_image_spacing(spacing)
    r0, c0 = (n_rows - 1) / 2.0, (n_cols - 1) / 2.0
    # x_d = -sc * (col - c0); z_d = -sr * (row - r0)
    return np.array([[0.0, -sc, sc * c0], [-sr, 0.0, sr * r0], [0.0, 0.0, 1.0]])


def apply2d(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) homogeneous matrix to ``(N, 2)`` points; returns ``(N, 2)``."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3):
        raise ShapeError(f"matrix must have shape (3, 3), got {m.shape}")
    pts = _as_points(points)
    return pts @ m[:2, :2].T + m[:2, 2]


@dataclass(frozen=True)
class PlanarTransform:
    """Rigid transform from the DXA frame to the MRI coronal plane (x, z), in mm and degrees."""

    theta_deg: float
    tx_mm: float
    ty_mm: float

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) homogeneous matrix, DXA frame -> MRI (x, z)."""
        return rigid2d(self.theta_deg, self.tx_mm, self.ty_mm)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` DXA-frame points (x_d, z_d) to MRI (x, z)."""
        return apply2d(self.matrix, points)

    def inverse(self) -> "PlanarTransform":
        """The transform from MRI (x, z) back to the DXA frame."""
        return PlanarTransform.from_matrix(np.linalg.inv(self.matrix))

    def compose(self, other: "PlanarTransform") -> "PlanarTransform":
        """``self`` after ``other`` (apply ``other`` first)."""
        return PlanarTransform.from_matrix(self.matrix @ other.matrix)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> "PlanarTransform":
        """Read ``(theta_deg, tx, ty)`` back from a (3, 3) rigid matrix."""
        m = np.asarray(matrix, dtype=float)
        if m.shape != (3, 3):
            raise ShapeError(f"matrix must have shape (3, 3), got {m.shape}")
        rot = m[:2, :2]
        if not np.allclose(rot.T @ rot, np.eye(2), atol=1e-6) or np.linalg.det(rot) < 0:
            raise InvalidArgumentError("matrix is not a proper planar rigid transform")
        theta = float(np.rad2deg(np.arctan2(m[1, 0], m[0, 0])))
        return cls(theta, float(m[0, 2]), float(m[1, 2]))

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Any, prefix: str = "") -> "PlanarTransform":
        """From a mapping or a table row holding ``{prefix}theta_deg``, ``{prefix}tx_mm`` and
        ``{prefix}ty_mm`` (the alignment table's ``stage1_`` columns, say).

        Raises
        ------
        InvalidArgumentError
            A missing key, or a value that is not a number.
        """
        keys = [f"{prefix}{k}" for k in ("theta_deg", "tx_mm", "ty_mm")]
        try:
            return cls(*(float(d[k]) for k in keys))
        except KeyError as exc:
            raise InvalidArgumentError(f"transform record lacks key {exc.args[0]!r}: {dict(d)!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"transform record has a non-numeric {keys}: {exc}") from None


def dxa_pixel_to_mri(
    transform: PlanarTransform, shape: tuple[int, int], spacing: tuple[float, float]
) -> np.ndarray:
    """(3, 3) matrix from DXA pixel ``(row, col, 1)`` to MRI world ``(x, z, 1)`` in mm."""
    return transform.matrix @ dxa_pixel_to_frame(shape, spacing)


def coronal_affine(affine: np.ndarray) -> np.ndarray:
    """(3, 3) matrix from coronal-projection indices ``(i, k, 1)`` of a canonical
    RAS volume (axes i -> x, j -> y, k -> z) to world ``(x, z, 1)`` in mm.

    The projection is the volume reduced over its second axis (``vol.sum(axis=1)``),
    whose array index is ``[i, k]``.
    """
    a = _canonical(affine)
    return np.array([[a[0, 0], 0.0, a[0, 3]], [0.0, a[2, 2], a[2, 3]], [0.0, 0.0, 1.0]])


def _canonical(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4):
        raise ShapeError(f"affine must have shape (4, 4), got {a.shape}")
    off = a[:3, :3] - np.diag(np.diag(a[:3, :3]))
    if np.any(np.abs(off) > 1e-6) or np.any(np.diag(a)[:3] <= 0):
        raise InvalidArgumentError(
            "affine is not canonical RAS (diagonal, positive); load with nibabel.as_closest_canonical"
        )
    return a


def transform_error_mm(
    estimate: PlanarTransform, truth: PlanarTransform, points_xz: np.ndarray
) -> np.ndarray:
    """Distance in mm between where two transforms put the same anatomy.

    Each MRI point (for example a vertebral centre's (x, z)) is mapped back into the
    DXA frame by the inverse of each transform; the distance between the two images
    of the point is the alignment error there (rigid maps preserve distances, so it
    is also the error seen in the MRI plane).

    Parameters
    ----------
    estimate, truth : the estimated and true DXA -> MRI transforms.
    points_xz : (N, 2) MRI world points in mm.

    Returns
    -------
    (N,) distances in mm.
    """
    pts = _as_points(points_xz, "points_xz")
    a = estimate.inverse().apply(pts)
    b = truth.inverse().apply(pts)
    return np.linalg.norm(a - b, axis=1)
