"""Cohort files on disk: DXA images, NIfTI volumes, truth records and manifests.

One topic: moving cohort data between files and arrays, validating it once on
the way, with an error from :mod:`spinelib.errors` whose message names the file.

File formats::

    manifest.csv      subject_id, split, dxa_path, mri_fat_path, mri_water_path,
                      seg_path, truth_path   (paths relative to the manifest's folder)
    <id>/dxa.npz      bone, tissue float32 (H, W); pixel_spacing_mm float64 (2,) = (row, col);
                      optionally lateral_bone, lateral_tissue float32 (H, D) and
                      lateral_pixel_spacing_mm (2,)
    <id>/*.nii.gz     float32 (or scaled int16) MRI, uint8 segmentation, true affine in mm
    <id>/truth.json   synthetic only: the generator's record; its ``dxa_session_seg`` names
                      the DXA session's segmentation (``seg_dxa.nii.gz``, grid of seg)

Every writer is atomic (:mod:`spinelib.util.atomic`) and byte-deterministic: the same
arrays give the same file bytes (fixed zip timestamps, gzip ``mtime`` 0 and no
file name in the gzip header), so cohorts can be compared by checksum.

Readers accept, besides our own ``.npz``:

* UK Biobank DXA pickles (keys ``bone``, ``tissue``, ``pixel_spacing``) made by the
  public preprocessing scripts -- only with ``allow_pickle=True``, because
  unpickling runs arbitrary code;
* ``.png`` / ``.tif`` images, grey or two-channel, with the pixel spacing given by
  the caller. A two-channel image holds (bone, tissue); a single grey channel is
  used for *both* bone and tissue (no calibration to g/cm^2 is attempted: values
  are the stored intensities as float32).

Examples
--------
>>> import tempfile, numpy as np
>>> d = Path(tempfile.mkdtemp())
>>> p = write_dxa(d / "dxa.npz", np.ones((4, 3)), np.zeros((4, 3)), (1.0, 1.5))
>>> img = read_dxa(p)
>>> img.bone.shape, img.bone.dtype.name, img.pixel_spacing_mm.tolist()
((4, 3), 'float32', [1.0, 1.5])
>>> write_dxa(d / "again.npz", np.ones((4, 3)), np.zeros((4, 3)), (1.0, 1.5)).read_bytes() == p.read_bytes()
True
"""

from __future__ import annotations

import gzip
import io as _io
import json
import math
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..util.atomic import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic
from ..errors import (
    DTypeError,
    DuplicateIdError,
    EmptySegmentationError,
    InvalidArgumentError,
    ManifestError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
    UnreadableFileError,
    UnsafeLoadError,
)
from ..spine import COLUMN_LABELS

__all__ = [
    "MANIFEST_COLUMNS",
    "PATH_COLUMNS",
    "SPLITS",
    "DXA_KEYS",
    "DXAImage",
    "Volume",
    "Subject",
    "write_dxa",
    "write_nifti",
    "write_truth",
    "write_manifest",
    "write_arrays",
    "read_arrays",
    "write_json_atomic",
    "read_dxa",
    "read_volume",
    "read_truth",
    "read_manifest",
    "validate_manifest",
    "load_subject",
    "check_affine",
    "check_subject",
    "check_cohort",
]

#: Columns of ``manifest.csv``, in file order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "split",
    "dxa_path",
    "mri_fat_path",
    "mri_water_path",
    "seg_path",
    "truth_path",
)
#: Path columns; all but ``truth_path`` are required to be non-empty.
PATH_COLUMNS: tuple[str, ...] = MANIFEST_COLUMNS[2:]
_REQUIRED_PATHS: tuple[str, ...] = PATH_COLUMNS[:-1]
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Keys of a DXA ``.npz`` file, in the order they are written.
DXA_KEYS: tuple[str, ...] = (
    "bone",
    "tissue",
    "pixel_spacing_mm",
    "lateral_bone",
    "lateral_tissue",
    "lateral_pixel_spacing_mm",
)

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip can hold: fixed for reproducible bytes
_NPZ_LEVEL = 6
_GZ_LEVEL = 1  # nibabel's own default: fast, and volumes are mostly background
_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
_PICKLE_SUFFIXES = (".pkl", ".pickle")


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, eq=False)
class DXAImage:
    """A loaded DXA scan.

    Attributes
    ----------
    bone, tissue : float32 (H, W)
        Areal bone-mineral and soft-tissue density (g/cm^2 for our files); row 0
        superior, column 0 at the patient's right.
    pixel_spacing_mm : float64 (2,)
        (row, col) spacing in mm.
    lateral_bone, lateral_tissue : float32 (H, D) or None
        Synthetic biplanar view: rows are the AP rows, column 0 at the table.
    lateral_pixel_spacing_mm : float64 (2,) or None
    path : Path or None
        The file it was read from.
    """

    bone: np.ndarray
    tissue: np.ndarray
    pixel_spacing_mm: np.ndarray
    lateral_bone: np.ndarray | None = None
    lateral_tissue: np.ndarray | None = None
    lateral_pixel_spacing_mm: np.ndarray | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.bone.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        lat = f", lateral {self.lateral_bone.shape}" if self.lateral_bone is not None else ""
        return (
            f"DXAImage({self.shape[0]} x {self.shape[1]}, spacing {self.pixel_spacing_mm.tolist()} mm"
            f"{lat}, path={str(self.path) if self.path else None!r})"
        )

    @property
    def has_lateral(self) -> bool:
        return self.lateral_bone is not None


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


@dataclass(frozen=True, eq=False)
class Subject:
    """Everything on disk about one subject, loaded and validated."""

    id: str
    split: str
    dxa: DXAImage
    fat: Volume
    water: Volume
    seg: Volume
    truth: dict | None = None

    @property
    def subject_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Subject({self.id!r}, {self.split}, {self.dxa!r}, seg {self.seg.shape}, truth={self.truth is not None})"


# --------------------------------------------------------------------------- validation


def _where(path: str | Path | None) -> str:
    return f" in {path}" if path is not None else ""


def _mname(path: str | Path | None) -> str:
    return f"manifest {path}" if path is not None else "manifest"


def _spacing(value: Any, name: str, path: str | Path | None) -> np.ndarray:
    """A positive finite (row, col) spacing as float64 (2,); one value (a scalar or a
    one-element sequence) means isotropic."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}{_where(path)} must be numbers, got {value!r}") from None
    if arr.size == 1:
        # one value, however wrapped (a CLI's ``nargs="+"`` gives a list of one): isotropic
        arr = np.repeat(arr.reshape(-1), 2)
    arr = arr.reshape(-1) if arr.size == 2 else arr
    if arr.shape != (2,):
        raise InvalidArgumentError(
            f"{name}{_where(path)} must be a scalar or (row, col) pair, got shape {np.shape(value)}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidArgumentError(f"{name}{_where(path)} must be finite and > 0 mm, got {arr.tolist()}")
    return arr


def _image2d(value: Any, name: str, path: str | Path | None) -> np.ndarray:
    """A finite real 2D array as C-contiguous float32."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise DTypeError(
            f"{name}{_where(path)} must be a real numeric array, got dtype {arr.dtype}"
        )
    if arr.ndim != 2:
        raise ShapeError(f"{name}{_where(path)} must be 2D (rows, cols), got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError(f"{name}{_where(path)} is empty, shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        n = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise NonFiniteError(f"{name}{_where(path)} holds {n} NaN or infinite values")
    return out


def _check_dxa(
    bone: Any,
    tissue: Any,
    pixel_spacing_mm: Any,
    lateral_bone: Any,
    lateral_tissue: Any,
    lateral_pixel_spacing_mm: Any,
    path: str | Path | None,
) -> dict[str, np.ndarray]:
    """Validate a DXA's arrays once; returns them in ``DXA_KEYS`` order and dtypes."""
    out: dict[str, np.ndarray] = {
        "bone": _image2d(bone, "bone", path),
        "tissue": _image2d(tissue, "tissue", path),
        "pixel_spacing_mm": _spacing(pixel_spacing_mm, "pixel_spacing_mm", path),
    }
    if out["bone"].shape != out["tissue"].shape:
        raise ShapeError(
            f"bone {out['bone'].shape} and tissue {out['tissue'].shape} shapes differ{_where(path)}"
        )
    lateral = (lateral_bone, lateral_tissue, lateral_pixel_spacing_mm)
    given = [v is not None for v in lateral]
    if any(given) and not all(given):
        raise InvalidArgumentError(
            "lateral_bone, lateral_tissue and lateral_pixel_spacing_mm go together"
            f"{_where(path)}; got only {[k for k, g in zip(DXA_KEYS[3:], given) if g]}"
        )
    if all(given):
        lb = _image2d(lateral_bone, "lateral_bone", path)
        lt = _image2d(lateral_tissue, "lateral_tissue", path)
        ls = _spacing(lateral_pixel_spacing_mm, "lateral_pixel_spacing_mm", path)
        if lb.shape != lt.shape:
            raise ShapeError(
                f"lateral_bone {lb.shape} and lateral_tissue {lt.shape} shapes differ{_where(path)}"
            )
        if lb.shape[0] != out["bone"].shape[0]:
            raise ShapeError(
                f"lateral view has {lb.shape[0]} rows but the AP view {out['bone'].shape[0]}"
                f"{_where(path)}; the lateral rows must be the AP rows"
            )
        if not np.isclose(ls[0], out["pixel_spacing_mm"][0], rtol=1e-6, atol=0):
            raise InvalidArgumentError(
                f"lateral row spacing {ls[0]} mm differs from the AP row spacing "
                f"{out['pixel_spacing_mm'][0]} mm{_where(path)}; the lateral rows must be the AP rows"
            )
        out.update(lateral_bone=lb, lateral_tissue=lt, lateral_pixel_spacing_mm=ls)
    return out


def check_affine(affine: Any, path: str | Path | None = None, *,
                 error: type[SpineLibError] = InvalidArgumentError) -> np.ndarray:
    """A voxel-to-world affine as a ``(4, 4)`` float array: numeric, finite, last row
    ``[0, 0, 0, 1]``, its 3 x 3 part not singular.

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
        raise error(f"affine{_where(path)} is not numeric: {affine!r}") from None
    if aff.shape != (4, 4):
        # an argument of the wrong shape is a ShapeError; a file's, the file's error
        raise (ShapeError if error is InvalidArgumentError else error)(
            f"affine{_where(path)} must be 4 x 4, got shape {aff.shape}")
    if not np.all(np.isfinite(aff)):
        raise error(f"affine{_where(path)} holds NaN or infinite values")
    if not np.allclose(aff[3], [0, 0, 0, 1]):
        raise error(f"affine{_where(path)} last row must be [0, 0, 0, 1], got {aff[3].tolist()}")
    m = aff[:3, :3]
    scale = float(np.abs(m).max())
    if scale == 0 or abs(np.linalg.det(m)) <= 1e-9 * scale**3:
        raise error(
            f"affine{_where(path)} is singular (voxel axes degenerate), it cannot be "
            f"brought to canonical orientation: {aff[:3, :3].tolist()}"
        )
    return aff


# --------------------------------------------------------------------------- writers


def _npz_bytes(arrays: Mapping[str, np.ndarray], *, level: int = _NPZ_LEVEL) -> bytes:
    """A compressed ``.npz`` archive with fixed member timestamps and attributes."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for key, arr in arrays.items():
            member = _io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the writing machine
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
    return buf.getvalue()


def write_dxa(
    path: str | Path,
    bone: np.ndarray,
    tissue: np.ndarray,
    pixel_spacing_mm: Any,
    *,
    lateral_bone: np.ndarray | None = None,
    lateral_tissue: np.ndarray | None = None,
    lateral_pixel_spacing_mm: Any = None,
) -> Path:
    """Write a DXA scan as a compressed, byte-deterministic ``.npz``; returns ``path``.

    Parameters
    ----------
    path : path ending in ``.npz``
    bone, tissue : real (H, W)
        Stored as float32.
    pixel_spacing_mm : float or (2,)
        (row, col) spacing in mm; a scalar means isotropic. Stored as float64 (2,).
    lateral_bone, lateral_tissue : real (H, D), optional
        Lateral view with the AP view's rows; given together with
        ``lateral_pixel_spacing_mm`` (whose row spacing must equal the AP one).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, InvalidArgumentError
        On bad arrays or spacing; nothing is written then.
    """
    dest = Path(path)
    if dest.suffix != ".npz":
        raise InvalidArgumentError(f"DXA files are .npz; got {dest}")
    arrays = _check_dxa(
        bone, tissue, pixel_spacing_mm, lateral_bone, lateral_tissue, lateral_pixel_spacing_mm, dest
    )
    with atomic_path(dest) as tmp:
        tmp.write_bytes(_npz_bytes(arrays))
    return dest


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
    import nibabel as nib

    dest = Path(path)
    if not (dest.name.endswith(".nii") or dest.name.endswith(".nii.gz")):
        raise InvalidArgumentError(f"NIfTI files end in .nii or .nii.gz; got {dest}")
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
    aff = check_affine(affine, dest, error=InvalidArgumentError)
    out_dtype = np.dtype(dtype) if dtype is not None else arr.dtype
    if out_dtype.kind not in "iuf":
        raise DTypeError(f"on-disk dtype for {dest} must be real numeric, got {out_dtype}")

    img = nib.Nifti1Image(np.asanyarray(arr), aff)
    img.set_data_dtype(out_dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    try:
        raw = img.to_bytes()
    except Exception as exc:  # nibabel's scaling errors are of several kinds
        raise DTypeError(f"cannot store the volume for {dest} as {out_dtype}: {exc}") from exc
    if dest.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=_GZ_LEVEL, mtime=0)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(raw)
    return dest


def write_truth(path: str | Path, truth: Mapping[str, Any]) -> Path:
    """Write a subject's generator record as JSON (numpy values converted); returns ``path``.

    Raises
    ------
    InvalidArgumentError
        If ``truth`` is not a mapping with string keys or holds non-JSON values.
    NonFiniteError
        If it holds NaN or infinity (JSON cannot).
    """
    dest = Path(path)
    if not isinstance(truth, Mapping):
        raise InvalidArgumentError(f"truth for {dest} must be a dict, got {type(truth).__name__}")
    bad = [k for k in truth if not isinstance(k, str)]
    if bad:
        raise InvalidArgumentError(f"truth for {dest} has non-string keys {bad!r}")
    try:
        return write_json_atomic(dest, dict(truth))
    except ValueError as exc:
        if isinstance(exc, SpineLibError):
            raise
        raise NonFiniteError(f"truth for {dest} holds NaN or infinite values: {exc}") from exc
    except TypeError as exc:
        raise InvalidArgumentError(f"truth for {dest} holds a value JSON cannot store: {exc}") from exc


def _manifest_frame(rows: Any, where: str | Path | None):
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    else:
        try:
            rows = list(rows)
        except TypeError:
            raise ManifestError(f"manifest rows for {where} must be a list of dicts or a DataFrame") from None
        if rows and not all(isinstance(r, Mapping) for r in rows):
            raise ManifestError(f"manifest rows for {where} must be dicts (mappings)")
        df = pd.DataFrame([dict(r) for r in rows])
    return df


def validate_manifest(df, *, path: str | Path | None = None, on_duplicate: str = "raise"):
    """Check a manifest table; returns a cleaned copy with columns in file order.

    Adds an empty ``truth_path`` when absent, turns every cell of the contract's
    columns into a stripped string (empty for missing) and keeps extra columns
    after them.

    Parameters
    ----------
    on_duplicate : {"raise", "report"}
        ``"raise"`` (strict, the default): an id listed twice is an error.
        ``"report"``: every row is kept, ids may repeat; the caller reports them
        (the pipeline uses :func:`spinelib.io.quality.split_duplicates`).

    Raises
    ------
    ManifestError
        Missing columns, no rows, empty ids or required paths, a split not in
        ``SPLITS``.
    DuplicateIdError
        The same ``subject_id`` twice (``on_duplicate="raise"``).
    InvalidArgumentError
        An unknown ``on_duplicate``.
    """
    import pandas as pd

    if on_duplicate not in ("raise", "report"):
        raise InvalidArgumentError(f"on_duplicate must be 'raise' or 'report', got {on_duplicate!r}")

    df = df.copy()
    if "truth_path" not in df.columns:
        df["truth_path"] = ""
    if len(df) == 0:
        raise ManifestError(f"{_mname(path)} lists no subjects")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{_mname(path)} lacks columns {missing}; expected {list(MANIFEST_COLUMNS)}"
        )
    for col in MANIFEST_COLUMNS:
        df[col] = [
            "" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v).strip()
            for v in df[col]
        ]
    empty_ids = [i for i, v in enumerate(df["subject_id"]) if not v]
    if empty_ids:
        raise ManifestError(f"{_mname(path)} has empty subject_id in rows {empty_ids[:10]}")
    bad_split = sorted({s for s in df["subject_id"][~df["split"].isin(SPLITS)]})
    if bad_split:
        splits = sorted(set(df["split"][~df["split"].isin(SPLITS)]))
        raise ManifestError(
            f"{_mname(path)} has split values {splits} (subjects {bad_split[:10]}); "
            f"allowed: {list(SPLITS)}"
        )
    dup = df["subject_id"][df["subject_id"].duplicated()].unique().tolist()
    if dup and on_duplicate == "raise":
        raise DuplicateIdError(f"{_mname(path)} lists subject ids more than once: {dup[:10]}")
    for col in _REQUIRED_PATHS:
        empty = df["subject_id"][df[col] == ""].tolist()
        if empty:
            raise ManifestError(f"{_mname(path)} has empty {col} for subjects {empty[:10]}")
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return pd.DataFrame(df[list(MANIFEST_COLUMNS) + extra]).reset_index(drop=True)


def write_manifest(path: str | Path, rows: Any) -> Path:
    """Validate and write ``manifest.csv`` atomically; returns ``path``.

    ``rows`` is a list of dicts or a DataFrame with the columns of
    ``MANIFEST_COLUMNS`` (``truth_path`` may be absent: written empty); extra
    columns are kept after them. Paths are written as given: relative paths are
    relative to the manifest's folder.

    Raises
    ------
    ManifestError, DuplicateIdError
    """
    dest = Path(path)
    df = validate_manifest(_manifest_frame(rows, dest), path=dest)
    text = df.to_csv(index=False, lineterminator="\n")
    return write_text_atomic(dest, text)


# --------------------------------------------------------------------------- readers


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{what} {p} does not exist")
    if p.is_dir():
        raise UnreadableFileError(f"{what} {p} is a folder, not a file")
    return p


def _read_npz(p: Path, what: str = "DXA file") -> dict[str, np.ndarray]:
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {what} {p}: {type(exc).__name__}: {exc}") from exc
    if not magic.startswith((b"PK\x03\x04", b"\x93NUMPY")):
        # numpy takes any other bytes for a pickle and suggests allow_pickle: wrong advice here
        raise UnreadableFileError(f"{what} {p} is not an .npz archive (corrupt, or another format): "
                                  f"it starts with {magic!r}")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UnreadableFileError(f"{what} {p} is a single .npy array, not an .npz archive")
        with z:
            return {k: np.asarray(z[k]) for k in z.files}
    except SpineLibError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise UnreadableFileError(f"cannot read {what} {p}: {type(exc).__name__}: {exc}") from exc


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write named arrays as a compressed ``.npz`` atomically, byte-deterministic, no pickles.

    Used for the run folder's array files (targets, predictions); string arrays are
    stored as fixed-width unicode.
    """
    plain = {k: (np.asarray(v).astype(str) if np.asarray(v).dtype.kind in "OU" else np.asarray(v))
             for k, v in arrays.items()}
    return write_bytes_atomic(path, _npz_bytes(plain))


def read_arrays(path: str | Path, *, what: str = "array file") -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`write_arrays` (never unpickling).

    Raises
    ------
    MissingFileError, UnreadableFileError
        Naming ``what`` and the path.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} {p} does not exist")
    return _read_npz(p, what)


def _read_pickle(p: Path) -> dict[str, Any]:
    try:
        with open(p, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 -- the caller opted in with allow_pickle=True
    except Exception as exc:  # unpickling can raise anything
        raise UnreadableFileError(f"cannot unpickle DXA file {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise UnreadableFileError(
            f"DXA pickle {p} holds a {type(obj).__name__}, expected a dict with keys bone, tissue, pixel_spacing"
        )
    out = dict(obj)
    if "pixel_spacing" in out and "pixel_spacing_mm" not in out:
        out["pixel_spacing_mm"] = out.pop("pixel_spacing")
    return out


def _read_image(p: Path) -> dict[str, Any]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(p) as im:
            frames = [np.array(f) for f in ImageSequence.Iterator(im)]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableFileError(f"cannot read DXA image {p}: {type(exc).__name__}: {exc}") from exc
    if len(frames) == 2 and frames[0].ndim == 2:  # two-page TIFF: bone, tissue
        return {"bone": frames[0], "tissue": frames[1]}
    if len(frames) != 1:
        raise ShapeError(f"DXA image {p} has {len(frames)} frames; expected 1 (grey or two-channel) or 2")
    a = frames[0]
    if a.ndim == 2:
        return {"bone": a, "tissue": a}
    if a.ndim == 3 and a.shape[2] == 2:
        return {"bone": a[..., 0], "tissue": a[..., 1]}
    if a.ndim == 3 and a.shape[2] in (3, 4) and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(
        a[..., 0], a[..., 2]
    ):
        return {"bone": a[..., 0], "tissue": a[..., 0]}  # grey stored as RGB(A)
    raise ShapeError(
        f"DXA image {p} has shape {a.shape}; expected grey (H, W) or two channels (H, W, 2)"
    )


def read_dxa(
    path: str | Path,
    *,
    allow_pickle: bool = False,
    pixel_spacing_mm: Any = None,
) -> DXAImage:
    """Read and validate a DXA scan.

    Formats by suffix: ``.npz`` (ours, see :func:`write_dxa`); ``.pkl`` /
    ``.pickle`` (UK Biobank preprocessing, keys ``bone``, ``tissue``,
    ``pixel_spacing``; needs ``allow_pickle=True``); ``.png`` / ``.tif`` /
    ``.tiff`` (grey or two-channel; needs ``pixel_spacing_mm``; a grey image
    gives the same array as bone and tissue).

    Parameters
    ----------
    allow_pickle : bool
        Opt in to unpickling, which runs code from the file. Only for files you trust.
    pixel_spacing_mm : float or (2,), optional
        Required for images; for files that store a spacing it must agree with it.

    Raises
    ------
    MissingFileError, UnreadableFileError, UnsafeLoadError, ShapeError,
    DTypeError, NonFiniteError, InvalidArgumentError
    """
    p = _existing(path, "DXA file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        raw: dict[str, Any] = _read_npz(p)
    elif suffix in _PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UnsafeLoadError(
                f"DXA file {p} is a pickle, and unpickling runs code from the file; "
                "pass allow_pickle=True (read_dxa(..., allow_pickle=True)) only if you trust it"
            )
        raw = _read_pickle(p)
    elif suffix in _IMAGE_SUFFIXES:
        if pixel_spacing_mm is None:
            raise InvalidArgumentError(
                f"DXA image {p} stores no pixel spacing; pass pixel_spacing_mm=(row, col) in mm"
            )
        raw = _read_image(p)
    else:
        raise UnreadableFileError(
            f"DXA file {p} has an unknown suffix {p.suffix!r}; expected .npz, .pkl, .pickle, .png, .tif"
        )

    missing = [k for k in ("bone", "tissue") if k not in raw]
    if missing:
        raise UnreadableFileError(f"DXA file {p} lacks {missing}; it has keys {sorted(raw)}")
    stored = raw.get("pixel_spacing_mm")
    if stored is None and pixel_spacing_mm is None:
        raise InvalidArgumentError(f"DXA file {p} stores no pixel spacing; pass pixel_spacing_mm=(row, col)")
    if stored is not None and pixel_spacing_mm is not None:
        a = _spacing(stored, "stored pixel_spacing_mm", p)
        b = _spacing(pixel_spacing_mm, "pixel_spacing_mm", p)
        if not np.allclose(a, b, rtol=1e-6, atol=0):
            raise InvalidArgumentError(
                f"pixel_spacing_mm={b.tolist()} disagrees with the spacing {a.tolist()} stored in {p}"
            )
    arrays = _check_dxa(
        raw["bone"],
        raw["tissue"],
        stored if stored is not None else pixel_spacing_mm,
        raw.get("lateral_bone"),
        raw.get("lateral_tissue"),
        raw.get("lateral_pixel_spacing_mm"),
        p,
    )
    return DXAImage(**arrays, path=p)


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
    import nibabel as nib

    if kind not in ("mri", "seg"):
        raise InvalidArgumentError(f"kind must be 'mri' or 'seg', got {kind!r} (reading {path})")
    p = _existing(path, "volume")
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
    affine = check_affine(img.affine, p, error=UnreadableFileError)

    if data.dtype.kind not in "iuf":
        raise DTypeError(f"volume {p} has dtype {data.dtype}; expected real numbers")
    if kind == "mri":
        if not np.all(np.isfinite(data)):
            raise NonFiniteError(f"volume {p} holds NaN or infinite values")
        return Volume(np.ascontiguousarray(data), affine, p)

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
    return Volume(labels, affine, p)


def read_truth(path: str | Path) -> dict:
    """Read a subject's ``truth.json``.

    Raises
    ------
    MissingFileError, UnreadableFileError (invalid JSON or not an object)
    """
    p = _existing(path, "truth file")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(f"cannot read truth file {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise UnreadableFileError(f"truth file {p} holds a {type(obj).__name__}, expected a JSON object")
    return obj


def read_manifest(path: str | Path, *, on_duplicate: str = "raise"):
    """Read and validate ``manifest.csv``; paths come back absolute.

    Relative paths are resolved against the manifest's folder; an empty
    ``truth_path`` stays ``""`` (real data). Files are not opened here: use
    :func:`load_subject` or :func:`check_subject` per subject.

    ``on_duplicate="report"`` keeps rows whose ``subject_id`` repeats instead of
    raising :class:`DuplicateIdError` (see :func:`validate_manifest`); the pipeline
    reads its cohort that way and reports them (:mod:`spinelib.io.quality`).

    Returns
    -------
    pandas.DataFrame
        Columns ``MANIFEST_COLUMNS`` (all str), then any extra columns.

    Raises
    ------
    MissingFileError, UnreadableFileError, ManifestError, DuplicateIdError
    """
    import pandas as pd

    p = _existing(path, "manifest")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"cannot read manifest {p}: {type(exc).__name__}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    df = validate_manifest(df, path=p, on_duplicate=on_duplicate)
    base = p.resolve().parent
    for col in PATH_COLUMNS:
        df[col] = [str(_resolve(v, base)) if v else "" for v in df[col]]
    return df


def _resolve(value: str | Path, base: Path) -> Path:
    q = Path(os.path.expanduser(str(value)))
    return Path(os.path.normpath(q if q.is_absolute() else base / q))


# --------------------------------------------------------------------------- subjects


def _row_dict(row_or_manifest: Any, subject_id: str | None) -> dict[str, Any]:
    import pandas as pd

    obj = row_or_manifest
    if isinstance(obj, (str, Path)):
        obj = read_manifest(obj)
    if isinstance(obj, pd.DataFrame):
        if subject_id is None:
            raise InvalidArgumentError("load_subject(manifest, subject_id): subject_id is required with a manifest")
        match = obj[obj["subject_id"].astype(str) == str(subject_id)]
        if len(match) == 0:
            raise ManifestError(f"subject {subject_id!r} is not in the manifest")
        if len(match) > 1:
            raise DuplicateIdError(f"subject {subject_id!r} appears {len(match)} times in the manifest")
        return match.iloc[0].to_dict()
    if isinstance(obj, pd.Series):
        obj = obj.to_dict()
    if not isinstance(obj, Mapping):
        raise InvalidArgumentError(
            f"load_subject needs a manifest row (dict/Series), a DataFrame or a manifest path, "
            f"got {type(obj).__name__}"
        )
    row = dict(obj)
    if subject_id is not None and str(row.get("subject_id")) != str(subject_id):
        raise InvalidArgumentError(f"row is subject {row.get('subject_id')!r}, not {subject_id!r}")
    missing = [c for c in MANIFEST_COLUMNS[:-1] if c not in row]
    if missing:
        raise ManifestError(f"manifest row {row.get('subject_id', '?')!r} lacks {missing}")
    return row


def load_subject(
    row_or_manifest: Any,
    subject_id: str | None = None,
    *,
    allow_pickle: bool = False,
    dxa_pixel_spacing_mm: Any = None,
) -> Subject:
    """Load and validate one subject: DXA, fat and water MRI, segmentation, truth.

    Parameters
    ----------
    row_or_manifest : dict or pandas.Series (one manifest row, as from
        :func:`read_manifest`), or a manifest DataFrame or path with ``subject_id``.
        Relative paths in a bare row are taken relative to the working directory.
    allow_pickle, dxa_pixel_spacing_mm :
        Passed to :func:`read_dxa`.

    Checks, besides each file's own: the three volumes have the same shape and
    (to 1e-3 mm) the same affine; the truth record, when present, names the
    same subject.

    Raises
    ------
    Any error of the readers, ShapeError on mismatched volumes, ManifestError on
    a truth record of another subject.
    """
    row = _row_dict(row_or_manifest, subject_id)
    sid = str(row["subject_id"])
    split = str(row["split"])
    if split not in SPLITS:
        raise ManifestError(f"subject {sid!r} has split {split!r}; allowed: {list(SPLITS)}")
    dxa = read_dxa(row["dxa_path"], allow_pickle=allow_pickle, pixel_spacing_mm=dxa_pixel_spacing_mm)
    fat = read_volume(row["mri_fat_path"], kind="mri")
    water = read_volume(row["mri_water_path"], kind="mri")
    seg = read_volume(row["seg_path"], kind="seg")
    for other in (water, seg):
        if other.shape != fat.shape:
            raise ShapeError(f"volume {other.path} has shape {other.shape} but {fat.path} has {fat.shape}")
        if not np.allclose(other.affine, fat.affine, atol=1e-3, rtol=0):
            raise ShapeError(
                f"volume {other.path} has another affine than {fat.path}: "
                f"{other.affine.round(4).tolist()} vs {fat.affine.round(4).tolist()}"
            )
    tp = row.get("truth_path")
    truth = None
    if tp is not None and not (isinstance(tp, float) and math.isnan(tp)) and str(tp).strip():
        truth = read_truth(tp)
        if "subject_id" in truth and str(truth["subject_id"]) != sid:
            raise ManifestError(f"truth file {tp} is for subject {truth['subject_id']!r}, not {sid!r}")
    return Subject(id=sid, split=split, dxa=dxa, fat=fat, water=water, seg=seg, truth=truth)


def check_subject(row: Any, *, allow_pickle: bool = False, dxa_pixel_spacing_mm: Any = None) -> str | None:
    """``None`` if :func:`load_subject` accepts ``row``, else the reason, as a string.

    For the pipeline's "report and skip" of bad subjects: the reason starts with
    the error class name and names the file. Only :class:`SpineLibError` is
    turned into a reason; anything else is a bug and propagates.
    """
    try:
        load_subject(row, allow_pickle=allow_pickle, dxa_pixel_spacing_mm=dxa_pixel_spacing_mm)
    except SpineLibError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_cohort(manifest: Any, **kwargs: Any) -> dict[str, str]:
    """Reasons of every bad subject of a manifest (DataFrame or path), ``{id: reason}``.

    Good subjects are absent from the result; ``kwargs`` go to :func:`check_subject`.
    """
    df = read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
    bad: dict[str, str] = {}
    rows: Iterable[Mapping[str, Any]] = df.to_dict(orient="records")
    for row in rows:
        reason = check_subject(row, **kwargs)
        if reason is not None:
            bad[str(row["subject_id"])] = reason
    return bad
