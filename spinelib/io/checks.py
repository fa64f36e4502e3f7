"""Shared input checks of the readers and writers: files, numbers, 2D images, pixel spacings,
affines.

The one place where :mod:`spinelib.io` validates an argument or a value read from a
file. Each check returns the value in its canonical dtype and shape, or raises a
subclass of :class:`~spinelib.errors.SpineLibError` whose message names the
argument and, when given, the file it came from.

Examples
--------
>>> check_pixel_spacing(0.5, "pixel_spacing_mm", None).tolist()
[0.5, 0.5]
>>> check_affine(np.diag([1.0, 2.0, 3.0, 1.0])).shape
(4, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    DTypeError,
    InvalidArgumentError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
    UnreadableFileError,
)

__all__ = ["in_path", "existing_file", "check_number", "check_positive", "check_non_negative", "check_integer",
           "check_pixel_spacing", "check_image2d", "check_affine"]


def in_path(path: str | Path | None) -> str:
    """The suffix ``" in <path>"`` of an error message, empty without a path."""
    return f" in {path}" if path is not None else ""


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, checked to exist and not be a folder; ``what`` names it in errors.

    Raises
    ------
    MissingFileError
        If nothing is at ``path``.
    UnreadableFileError
        If ``path`` is a folder.
    """
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{what} {p} does not exist")
    if p.is_dir():
        raise UnreadableFileError(f"{what} {p} is a folder, not a file")
    return p


def check_number(value: Any, name: str, path: str | Path | None = None) -> float:
    """``value`` as a Python float (anything ``float()`` takes but a boolean, which is never
    meant as a number; NaN and infinity pass).

    Parameters
    ----------
    value : the argument or the value read from a file.
    name : how error messages name it.
    path : the file it came from, or None for an argument.

    Raises
    ------
    InvalidArgumentError
        ``value`` is a boolean or not a number.

    Examples
    --------
    >>> check_number("2.5", "view_deg")
    2.5
    """
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name}{in_path(path)} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}{in_path(path)} must be a number, got {value!r}") from None


def check_positive(value: Any, name: str, path: str | Path | None = None) -> float:
    """``value`` as a positive finite Python float (a size, a pixel, a standard deviation).

    Parameters
    ----------
    value, name, path : as :func:`check_number`.

    Raises
    ------
    InvalidArgumentError
        ``value`` is not a number, or not finite and > 0.

    Examples
    --------
    >>> check_positive(0.5, "pixel_mm")
    0.5
    """
    v = check_number(value, name, path)
    if not np.isfinite(v) or v <= 0:
        raise InvalidArgumentError(f"{name}{in_path(path)} must be positive and finite, got {value!r}")
    return v


def check_non_negative(value: Any, name: str, path: str | Path | None = None) -> float:
    """``value`` as a finite Python float >= 0 (a severity, a displacement).

    Parameters
    ----------
    value, name, path : as :func:`check_number`.

    Raises
    ------
    InvalidArgumentError
        ``value`` is not a number, or not finite and >= 0.

    Examples
    --------
    >>> check_non_negative(0, "posture_change_mm")
    0.0
    """
    v = check_number(value, name, path)
    if not np.isfinite(v) or v < 0:
        raise InvalidArgumentError(f"{name}{in_path(path)} must be finite and >= 0, got {value!r}")
    return v


def check_integer(value: Any, name: str, minimum: int, path: str | Path | None = None) -> int:
    """``value`` as a Python int, refused unless it is an integer (not a boolean, not a float)
    and >= ``minimum``.

    Raises
    ------
    InvalidArgumentError
        Naming ``name`` (and ``path``) and the bound.

    Examples
    --------
    >>> check_integer(np.int64(3), "n_levels", 3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidArgumentError(f"{name}{in_path(path)} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_pixel_spacing(value: Any, name: str, path: str | Path | None) -> np.ndarray:
    """A positive finite (row, col) spacing in mm as float64 (2,).

    One value (a scalar or a one-element sequence) means isotropic.

    Raises
    ------
    InvalidArgumentError
        Not numbers, not one or two values, or not finite and > 0.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}{in_path(path)} must be numbers, got {value!r}") from None
    if arr.size == 1:
        # one value, however wrapped (a CLI's ``nargs="+"`` gives a list of one): isotropic
        arr = np.repeat(arr.reshape(-1), 2)
    arr = arr.reshape(-1) if arr.size == 2 else arr
    if arr.shape != (2,):
        raise InvalidArgumentError(
            f"{name}{in_path(path)} must be a scalar or (row, col) pair, got shape {np.shape(value)}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidArgumentError(f"{name}{in_path(path)} must be finite and > 0 mm, got {arr.tolist()}")
    return arr


def check_image2d(value: Any, name: str, path: str | Path | None) -> np.ndarray:
    """A finite, non-empty, real 2D array (rows, cols) as C-contiguous float32.

    Raises
    ------
    DTypeError, ShapeError, NonFiniteError
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise DTypeError(
            f"{name}{in_path(path)} must be a real numeric array, got dtype {arr.dtype}"
        )
    if arr.ndim != 2:
        raise ShapeError(f"{name}{in_path(path)} must be 2D (rows, cols), got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError(f"{name}{in_path(path)} is empty, shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        n = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise NonFiniteError(f"{name}{in_path(path)} holds {n} NaN or infinite values")
    return out


def check_affine(affine: Any, path: str | Path | None = None, *,
                 error: type[SpineLibError] = InvalidArgumentError) -> np.ndarray:
    """A voxel-to-world affine (mm) as a ``(4, 4)`` float64 array: numeric, finite, last
    row ``[0, 0, 0, 1]``, its 3 x 3 part not singular.

    Raises
    ------
    ShapeError
        An argument (``error`` left at InvalidArgumentError) that is not 4 x 4.
    error
        Any other fault, naming ``path`` (the file the affine came from) when given.
    """
    try:
        aff = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"affine{in_path(path)} is not numeric: {affine!r}") from None
    if aff.shape != (4, 4):
        # an argument of the wrong shape is a ShapeError; a file's, the file's error
        raise (ShapeError if error is InvalidArgumentError else error)(
            f"affine{in_path(path)} must be 4 x 4, got shape {aff.shape}")
    if not np.all(np.isfinite(aff)):
        raise error(f"affine{in_path(path)} holds NaN or infinite values")
    if not np.allclose(aff[3], [0, 0, 0, 1]):
        raise error(f"affine{in_path(path)} last row must be [0, 0, 0, 1], got {aff[3].tolist()}")
    m = aff[:3, :3]
    scale = float(np.abs(m).max())
    if scale == 0 or abs(np.linalg.det(m)) <= 1e-9 * scale**3:
        raise error(
            f"affine{in_path(path)} is singular (voxel axes degenerate), it cannot be "
            f"brought to canonical orientation: {aff[:3, :3].tolist()}"
        )
    return aff
