"""DICOM files inside a UK Biobank bulk zip, read with pydicom; bulk file names.

A bulk-download zip holds one participant's DICOM files (``*.dcm``) and a listing
(``manifest.cvs``, sic, or ``manifest.csv``). Members that are not DICOM and do not
claim to be (no ``.dcm`` suffix, no DICOM preamble) are ignored; a ``.dcm`` member
that pydicom cannot parse makes the whole zip unreadable.

Bulk file names are ``<eid>_<field>_<instance>_<array>.zip``: field 20158 is the
whole-body DXA, 20201 the Dixon MRI; instance 2 is the first imaging visit, 3 the
repeat imaging visit.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IncompleteScanError, MissingFileError, ParticipantMismatchError, UnreadableFileError

__all__ = ["DXA_FIELD", "MRI_FIELD", "BulkName", "parse_bulk_name", "read_zip_dicoms", "patient_id",
           "pixels"]

DXA_FIELD = 20158
MRI_FIELD = 20201
_NAME = re.compile(r"^(?P<eid>[A-Za-z0-9]+)_(?P<field>\d+)_(?P<instance>\d+)_(?P<array>\d+)\.zip$")


@dataclass(frozen=True)
class BulkName:
    """The parts of a bulk file name ``<eid>_<field>_<instance>_<array>.zip``."""

    eid: str
    field: int
    instance: int
    array: int

    @property
    def visit(self) -> str:
        """``"<instance>_<array>"``, e.g. ``"2_0"``: pairs a DXA with the MRI of the same visit."""
        return f"{self.instance}_{self.array}"


def parse_bulk_name(path: str | Path) -> BulkName | None:
    """The parts of a bulk file name, or ``None`` if ``path``'s name is not one.

    >>> parse_bulk_name("data/1234567_20158_2_0.zip")
    BulkName(eid='1234567', field=20158, instance=2, array=0)
    >>> parse_bulk_name("notes.txt") is None
    True
    """
    m = _NAME.match(Path(path).name)
    if m is None:
        return None
    return BulkName(m["eid"], int(m["field"]), int(m["instance"]), int(m["array"]))


def _is_listing(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].lower()
    return base.startswith("manifest.") or base == "" or base.startswith(".")


def _parse(raw: bytes):
    """A pydicom dataset of ``raw``, or the exception that says why it is none.

    Files without the 128-byte preamble and file meta header are read as the public
    preprocessing reads the bulk MRI files: ``force=True``, with the transfer syntax
    set from the encoding pydicom detected (implicit VR little endian in practice).
    Such a file must then hold an image (Rows, Columns, PixelData), or it is no DICOM.
    """
    import warnings

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    errors = (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError, AttributeError,
              NotImplementedError, OverflowError)
    try:
        return pydicom.dcmread(io.BytesIO(raw), force=False)
    except InvalidDicomError as exc:
        first = exc
    except errors as exc:
        return exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every odd tag of a non-DICOM file
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
            ok = all(k in ds for k in ("Rows", "Columns", "PixelData"))
    except errors as exc:
        return exc
    if not ok:
        return first
    implicit, little = ds.original_encoding
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        ds.file_meta = meta
    return ds


def read_zip_dicoms(path: str | Path, *, what: str, keep=None) -> list[tuple[str, "pydicom.Dataset"]]:  # noqa: F821
    """Every DICOM dataset of a zip, as ``(member name, dataset)``, in member-name order.

    Pixel data is decoded lazily by pydicom (``ds.pixel_array``).

    Parameters
    ----------
    what : words naming the zip in messages, e.g. ``"DXA zip"``
    keep : callable(dataset) -> bool, optional
        Datasets it rejects are dropped as soon as they are parsed (memory: a Dixon zip
        holds four contrasts, two are used). Every member is still checked to parse.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    UnreadableFileError
        Not a zip, a corrupt zip member, or a ``.dcm`` member that is not valid DICOM
        (with or without the preamble and file meta header).
    IncompleteScanError
        The zip holds no DICOM file at all.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} {p} does not exist")
    out: list[tuple[str, "pydicom.Dataset"]] = []  # noqa: F821
    try:
        with zipfile.ZipFile(p) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or _is_listing(info.filename):
                    continue
                raw = zf.read(info)
                ds = _parse(raw)
                if isinstance(ds, Exception):
                    if info.filename.lower().endswith(".dcm") or raw[128:132] == b"DICM":
                        raise UnreadableFileError(
                            f"{what} {p}: member {info.filename} is not valid DICOM "
                            f"({type(ds).__name__}: {ds})") from ds
                    continue  # some other listing or note: not ours to read
                if keep is None or keep(ds):
                    out.append((info.filename, ds))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        if isinstance(exc, UnreadableFileError):
            raise
        raise UnreadableFileError(f"{what} {p} is not a readable zip file ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # zlib and CRC errors of a damaged member come in several kinds
        if isinstance(exc, UnreadableFileError):
            raise
        raise UnreadableFileError(f"{what} {p} is damaged ({type(exc).__name__}: {exc})") from exc
    if not out:
        raise IncompleteScanError(f"{what} {p} holds no DICOM file" + (" of the kind needed" if keep else ""))
    return out


def patient_id(datasets: list[tuple[str, "pydicom.Dataset"]], *, what: str, path: str | Path) -> str:  # noqa: F821
    """The one PatientID the datasets share (``""`` when none is recorded).

    Raises
    ------
    ParticipantMismatchError
        The zip mixes files of several PatientIDs.
    """
    ids = sorted({str(getattr(ds, "PatientID", "") or "").strip() for _, ds in datasets} - {""})
    if len(ids) > 1:
        raise ParticipantMismatchError(f"{what} {path} mixes files of several participants: PatientID {ids}")
    return ids[0] if ids else ""


def pixels(ds: "pydicom.Dataset", *, what: str) -> np.ndarray:  # noqa: F821
    """A dataset's image as float64 (rows, cols) with RescaleSlope/Intercept applied.

    Raises
    ------
    UnreadableFileError
        No pixel data, pixel data pydicom cannot decode, or not a single 2D frame.
    """
    from pydicom.pixels import apply_modality_lut

    try:
        arr = ds.pixel_array
        arr = apply_modality_lut(arr, ds)
    except Exception as exc:  # missing tags, unsupported compression, truncated data
        raise UnreadableFileError(
            f"{what}: cannot decode the pixel data ({type(exc).__name__}: {exc}); compressed pixel data "
            "needs a pydicom decoder plugin (pip install pylibjpeg pylibjpeg-libjpeg, or python-gdcm)") from exc
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise UnreadableFileError(f"{what}: expected one 2D image, got pixel data of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UnreadableFileError(f"{what}: pixel data holds non-finite values")
    return arr
