"""NIfTI volumes: the :class:`Volume` container, :func:`write_nifti` and :func:`read_volume`.

File format (``<id>/*.nii.gz``): float32 (or scaled int16) MRI, uint8 segmentation, true
affine in mm. Volumes are brought to canonical RAS+ orientation on load. A ``.gz`` file is
written at gzip level 1 (nibabel's own default: fast, and volumes are mostly background)
with ``mtime`` 0 and no file name in its header, so the same data and affine give the same
bytes.

Examples
--------
>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "v.nii.gz"
>>> _ = write_nifti(p, np.ones((2, 3, 4), np.float32), np.diag([2.0, 1.0, 1.0, 1.0]))
>>> read_volume(p).zooms.tolist()
[2.0, 1.0, 1.0]
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    DTypeError,
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
    UnreadableFileError,
)
from ..spine import COLUMN_LABELS
from ..util.atomic import atomic_path
from .checks import check_affine, existing_file

__all__ = ["Volume", "write_nifti", "read_volume"]

_GZ_LEVEL = 1  # nibabel's own default: fast, and volumes are mostly background


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D volume in canonical RAS+ orientation.

    ``data`` is float32 for MRI and uint8 labels for a segmentation; ``affine``
    (4, 4) maps voxel indices to world mm; ``path`` is the source file.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Volume({' x '.join(map(str, self.shape))} {self.data.dtype}, zooms "
            f"{np.round(self.zooms, 4).tolist()} mm, path={str(self.path) if self.path else None!r})"
        )

    @property
    def zooms(self) -> np.ndarray:
        """Voxel size in mm along each array axis, shape (3,)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))


# --------------------------------------------------------------------------- writer


def _volume_array(data: Any, dest: Path) -> np.ndarray:
    """``data`` checked to be a non-empty, finite, real 3D array; booleans as uint8."""
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise DTypeError(f"volume for {dest} must be real numeric or boolean, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ShapeError(f"volume for {dest} must be 3D, got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError(f"volume for {dest} is empty, shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"volume for {dest} holds NaN or infinite values")
    return arr


def _nifti_bytes(arr: np.ndarray, aff: np.ndarray, out_dtype: np.dtype, dest: Path) -> bytes:
    """The uncompressed NIfTI-1 file: sform and qform both ``aff`` (code 1), units mm."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asanyarray(arr), aff)
    img.set_data_dtype(out_dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    try:
        return img.to_bytes()
    except Exception as exc:  # nibabel's scaling errors are of several kinds
        raise DTypeError(f"cannot store the volume for {dest} as {out_dtype}: {exc}") from exc


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: Any = None,
) -> Path:
    """Write a 3D volume as NIfTI-1 (``.nii`` or ``.nii.gz``); returns ``path``.

    The affine is stored as both sform and qform (code 1, scanner), units mm. A
    ``.gz`` file is gzip level 1 with ``mtime`` 0 and no file name in its header,
    so the same data and affine give the same bytes whatever the time or the
    temporary name used for the atomic write.

    Parameters
    ----------
    data : (X, Y, Z) real or boolean array
        Boolean data is stored as uint8.
    affine : (4, 4)
        Voxel -> world mm (RAS+); must be invertible.
    dtype : numpy dtype, optional
        On-disk dtype (default: the data's own). An integer dtype for float data
        stores it with NIfTI scaling (``scl_slope``/``scl_inter``), e.g. ``np.int16``.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, InvalidArgumentError
    """
    dest = Path(path)
    if not (dest.name.endswith(".nii") or dest.name.endswith(".nii.gz")):
        raise InvalidArgumentError(f"NIfTI files end in .nii or .nii.gz; got {dest}")
    arr = _volume_array(data, dest)
    aff = check_affine(affine, dest, error=InvalidArgumentError)
    out_dtype = np.dtype(dtype) if dtype is not None else arr.dtype
    if out_dtype.kind not in "iuf":
        raise DTypeError(f"on-disk dtype for {dest} must be real numeric, got {out_dtype}")
    raw = _nifti_bytes(arr, aff, out_dtype, dest)
    if dest.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=_GZ_LEVEL, mtime=0)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(raw)
    return dest


# --------------------------------------------------------------------------- reader


def _load_canonical(p: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(data, affine) of the 3D volume at ``p`` in canonical RAS+; MRI scaled to float32."""
    import nibabel as nib

    try:
        img = nib.load(str(p))
        if not isinstance(img, nib.spatialimages.SpatialImage):
            raise UnreadableFileError(f"volume {p} is not a spatial image")
        check_affine(img.affine, p, error=UnreadableFileError)
        disk = np.dtype(img.get_data_dtype())
        if disk.kind not in "iuf":
            raise DTypeError(f"volume {p} stores dtype {disk}; expected real numbers")
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            img = img.slicer[..., 0]
        if len(img.shape) != 3:
            raise ShapeError(f"volume {p} must be 3D, got shape {img.shape}")
        img = nib.as_closest_canonical(img)
        if kind == "mri":
            data = np.asarray(img.get_fdata(dtype=np.float32))
        else:
            data = np.asarray(img.dataobj)
    except SpineLibError:
        raise
    except Exception as exc:  # nibabel, gzip and zlib raise many kinds on corrupt files
        raise UnreadableFileError(f"cannot read volume {p}: {type(exc).__name__}: {exc}") from exc
    return data, check_affine(img.affine, p, error=UnreadableFileError)


def _seg_labels(data: np.ndarray, p: Path, require_column: bool) -> np.ndarray:
    """Segmentation values as uint8 labels: integer-valued, in 0..255, a column label if required."""
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise NonFiniteError(f"segmentation {p} holds NaN or infinite values")
        if not np.all(data == np.round(data)):
            raise DTypeError(f"segmentation {p} holds non-integer values; expected integer labels")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DTypeError(
            f"segmentation {p} has labels outside 0..255 (min {data.min()}, max {data.max()})"
        )
    labels = np.ascontiguousarray(data, dtype=np.uint8)
    if require_column and not np.isin(labels, COLUMN_LABELS).any():
        raise EmptySegmentationError(
            f"segmentation {p} has no spine-column label (T1-L5 bodies 1..17 or discs 20)"
        )
    return labels


def read_volume(path: str | Path, *, kind: str = "mri", require_column: bool = True) -> Volume:
    """Read a NIfTI volume and bring it to canonical RAS+ (``nibabel.as_closest_canonical``).

    Parameters
    ----------
    kind : {"mri", "seg"}
        ``"mri"``: float32 with NIfTI scaling applied, finite. ``"seg"``: uint8
        integer labels (integer-valued floats are accepted), see :mod:`spinelib.spine`.
    require_column : bool
        For ``kind="seg"``: raise if no spine-column label (T1-L5 body or disc) is present.

    Raises
    ------
    MissingFileError, UnreadableFileError (also for a singular affine), ShapeError,
    DTypeError, NonFiniteError, EmptySegmentationError, InvalidArgumentError
    """
    if kind not in ("mri", "seg"):
        raise InvalidArgumentError(f"kind must be 'mri' or 'seg', got {kind!r} (reading {path})")
    p = existing_file(path, "volume")
    data, affine = _load_canonical(p, kind)
    if data.dtype.kind not in "iuf":
        raise DTypeError(f"volume {p} has dtype {data.dtype}; expected real numbers")
    if kind == "mri":
        if not np.all(np.isfinite(data)):
            raise NonFiniteError(f"volume {p} holds NaN or infinite values")
        return Volume(np.ascontiguousarray(data), affine, p)
    return Volume(_seg_labels(data, p, require_column), affine, p)
