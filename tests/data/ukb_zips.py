"""Write UK-Biobank-shaped bulk zips (DXA field 20158, Dixon MRI field 20201) with pydicom.

Test helper: the zips carry a synthetic subject's own arrays, so what
``spinelib.ingest`` reads back can be compared with the generator's truth.

What the files look like (the parts the ingestion relies on):

* DXA ``<eid>_20158_2_0.zip``: one DICOM per image plus a ``manifest.cvs`` (the bulk
  download's own misspelt listing). The whole-body images have ProtocolName
  ``"Total Body"``, InstanceNumber 1 for the tissue image and 2 for the bone image; a
  decoy image of another protocol ("AP Spine", InstanceNumber 0) must be ignored.
  ExposedArea = (width, height) of the field in whole mm, so that the pixel spacing is
  ExposedArea[1] / Rows (row) and ExposedArea[0] / Columns (column). Pixel values are
  uint16 with RescaleSlope 2^-10 (bone) and 2^-7 (tissue) g/cm^2: the synthetic DXA is
  quantised to exactly these steps, so the stored images are lossless.
  PatientOrientation ("L", "F"): columns run to the patient's left, rows to the feet.
* MRI ``<eid>_20201_2_0.zip``: axial slices, ``n_stations`` stations that overlap by
  ``overlap_slices`` slices; each station is four series (SeriesDescription
  ``Dixon_BH_17s_F`` / ``_W`` / ``_in`` / ``_opp``) with ImagePositionPatient,
  ImageOrientationPatient (1, 0, 0, 0, 1, 0), PixelSpacing, SliceThickness and
  SliceLocation in DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "DXA_FIELD",
    "MRI_FIELD",
    "BONE_SLOPE",
    "TISSUE_SLOPE",
    "dxa_zip_name",
    "mri_zip_name",
    "write_ukb_dxa_zip",
    "write_ukb_mri_zip",
    "write_ukb_zips_from_synth",
]

DXA_FIELD = 20158
MRI_FIELD = 20201
BONE_SLOPE = 2.0**-10  # g/cm^2 per stored unit: the synthetic DXA's own quantisation steps
TISSUE_SLOPE = 2.0**-7
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (its own inverse)
_CONTRASTS = ("F", "W", "in", "opp")


def dxa_zip_name(eid: str, instance: int = 2, array: int = 0) -> str:
    """Bulk-download file name of a participant's DXA zip, ``<eid>_20158_<instance>_<array>.zip``."""
    return f"{eid}_{DXA_FIELD}_{instance}_{array}.zip"


def mri_zip_name(eid: str, instance: int = 2, array: int = 0) -> str:
    """Bulk-download file name of a participant's Dixon MRI zip."""
    return f"{eid}_{MRI_FIELD}_{instance}_{array}.zip"


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])  # deterministic per parts


def _base(eid: str, modality: str, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = str(eid)
    ds.PatientName = "anonymous"
    ds.Modality = modality
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    arr = np.ascontiguousarray(stored, dtype="<u2")
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()


def _dicom_bytes(ds: Dataset, *, file_meta: bool = True) -> bytes:
    """A DICOM file, or with ``file_meta=False`` the bare implicit-VR dataset: no preamble,
    no "DICM", no file meta header (files that need pydicom's ``force=True``)."""
    buf = io.BytesIO()
    if file_meta:
        ds.save_as(buf, enforce_file_format=True)
    else:
        bare = Dataset()
        bare.update({k: ds[k] for k in ds.keys()})
        bare.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def _write_zip(path: Path, members: Sequence[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _quantise(image: np.ndarray, slope: float) -> np.ndarray:
    q = np.rint(np.asarray(image, float) / slope)
    if q.min() < 0 or q.max() > 65535:
        raise ValueError(f"image range {image.min()}..{image.max()} does not fit uint16 at slope {slope}")
    return q.astype(np.uint16)


def _store_oriented(image: np.ndarray, orientation: Sequence[str]) -> np.ndarray:
    """An image in our convention (columns to the left, rows to the feet) as stored under
    ``orientation`` (direction of increasing column, then of increasing row)."""
    col_dir, row_dir = orientation
    if col_dir in ("H", "F"):  # on its side: stored rows run across the patient
        stored = image.T  # ("F", "L")
        stored = stored[::-1] if row_dir == "R" else stored
        return stored[:, ::-1] if col_dir == "H" else stored
    image = image[:, ::-1] if col_dir == "R" else image
    return image[::-1] if row_dir == "H" else image


def write_ukb_dxa_zip(
    path: str | Path,
    eid: str,
    bone: np.ndarray,
    tissue: np.ndarray,
    pixel_spacing_mm: Sequence[float],
    *,
    images: Sequence[str] = ("tissue", "bone"),
    patient_id: str | None = None,
    decoy: bool = True,
    patient_orientation: Sequence[str] = ("L", "F"),
) -> Path:
    """Write a DXA zip like the bulk download's field 20158; returns ``path``.

    Parameters
    ----------
    path : the zip to write (name it with :func:`dxa_zip_name`)
    eid : participant id (PatientID unless ``patient_id`` is given)
    bone, tissue : float (H, W), g/cm^2, row 0 superior, column 0 at the patient's right;
        quantised to ``BONE_SLOPE`` / ``TISSUE_SLOPE``
    pixel_spacing_mm : (row, col) in mm; ExposedArea is the field size rounded to whole mm
    images : which whole-body images to write, in InstanceNumber order (bad-zip tests
        leave one out)
    patient_id : PatientID to write instead of ``eid`` (mismatch tests)
    decoy : also write an "AP Spine" image that the ingestion must skip
    patient_orientation : PatientOrientation to store the images in; ("L", "F") stores them
        as given, ("R", "F") mirrored left-right, ("L", "H") upside down, ("F", "L") transposed
    """
    eid = str(eid)
    pid = str(eid if patient_id is None else patient_id)
    bone, tissue = (_store_oriented(np.asarray(a), patient_orientation) for a in (bone, tissue))
    transposed = patient_orientation[0] in ("H", "F")
    if transposed:
        pixel_spacing_mm = tuple(pixel_spacing_mm)[::-1]
    rows, cols = np.shape(bone)
    sr, sc = (float(v) for v in pixel_spacing_mm)
    exposed = [int(round(cols * sc)), int(round(rows * sr))]  # (width, height) of the field, mm
    study = _uid(eid, "dxa-study")
    series = _uid(eid, "dxa-series")
    members: list[tuple[str, bytes]] = []
    planned = [(name, k + 1) for k, name in enumerate(images)]
    if decoy:
        planned.insert(0, ("spine", 0))
    for name, number in planned:
        sop = _uid(eid, "dxa", name)
        ds = _base(pid, "OT", study, series, sop)
        ds.ProtocolName = "AP Spine" if name == "spine" else "Total Body"
        ds.SeriesDescription = ds.ProtocolName
        ds.InstanceNumber = number
        ds.ExposedArea = exposed
        ds.PatientOrientation = list(patient_orientation)
        if name == "spine":
            stored = _quantise(np.asarray(bone)[: rows // 3, cols // 3: 2 * cols // 3], BONE_SLOPE)
            ds.ExposedArea = [int(round(stored.shape[1] * sc)), int(round(stored.shape[0] * sr))]
            slope = BONE_SLOPE
        else:
            slope = BONE_SLOPE if name == "bone" else TISSUE_SLOPE
            stored = _quantise(bone if name == "bone" else tissue, slope)
        ds.RescaleSlope = slope
        ds.RescaleIntercept = 0
        _set_pixels(ds, stored)
        members.append((f"{sop}.dcm", _dicom_bytes(ds)))
    members.append(("manifest.cvs", ("filename\n" + "\n".join(m[0] for m in members) + "\n").encode()))
    return _write_zip(Path(path), members)


def _lps_frame(affine: np.ndarray, shape: tuple[int, int, int]):
    """Flip array axes 0 and 1 so that columns run to +x and rows to +y of LPS.

    Returns the flips and the LPS position of voxel (0, 0, k) as a function of k, with
    the LPS column (row direction), row (column direction) and slice vectors.
    """
    lps = _LPS @ np.asarray(affine, float)[:3, :3]
    flips = [bool(lps[0, 0] < 0), bool(lps[1, 1] < 0)]
    ras_index = np.array([shape[0] - 1 if flips[0] else 0, shape[1] - 1 if flips[1] else 0, 0, 1.0])
    origin = _LPS @ (np.asarray(affine, float) @ ras_index)[:3]
    col_vec = lps[:, 0] * (-1 if flips[0] else 1)
    row_vec = lps[:, 1] * (-1 if flips[1] else 1)
    return flips, origin, col_vec, row_vec, lps[:, 2]


def _stations(n_slices: int, n_stations: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) slice ranges of ``n_stations`` equal stations overlapping by >= ``overlap``."""
    if n_stations < 1 or overlap < 0:
        raise ValueError("n_stations must be >= 1 and overlap_slices >= 0")
    length = int(np.ceil((n_slices + (n_stations - 1) * overlap) / n_stations))
    if length > n_slices or length <= overlap:
        raise ValueError(f"{n_slices} slices cannot make {n_stations} stations overlapping by {overlap}")
    starts = np.round(np.linspace(0, n_slices - length, n_stations)).astype(int)
    return [(int(s), int(s) + length) for s in starts]


def write_ukb_mri_zip(
    path: str | Path,
    eid: str,
    fat: np.ndarray,
    water: np.ndarray,
    affine: np.ndarray,
    *,
    n_stations: int = 4,
    overlap_slices: int = 3,
    contrasts: Sequence[str] = _CONTRASTS,
    drop_stations: Sequence[int] = (),
    patient_id: str | None = None,
    file_meta: bool = True,
) -> Path:
    """Write a Dixon MRI zip like the bulk download's field 20201; returns ``path``.

    Parameters
    ----------
    fat, water : (X, Y, Z) non-negative numbers (stored rounded as uint16), on the voxel
        grid ``affine`` (RAS+ mm, axis 2 the slice axis, superior-inferior)
    n_stations, overlap_slices : the volume's slices are cut into this many stations,
        neighbours sharing ``overlap_slices`` slices
    contrasts : series suffixes to write for each station (bad-zip tests leave some out)
    drop_stations : station indices to leave out (bad-zip tests)
    patient_id : PatientID to write instead of ``eid``
    file_meta : False writes bare datasets without preamble and file meta header
    """
    eid = str(eid)
    pid = str(eid if patient_id is None else patient_id)
    fat = np.asarray(fat)
    water = np.asarray(water)
    if fat.shape != water.shape or fat.ndim != 3:
        raise ValueError(f"fat {fat.shape} and water {water.shape} must be the same 3D shape")
    flips, origin, col_vec, row_vec, slice_vec = _lps_frame(affine, fat.shape)
    col_sp, row_sp, slice_sp = (float(np.linalg.norm(v)) for v in (col_vec, row_vec, slice_vec))
    iop = [float(v) + 0.0 for v in np.concatenate([col_vec / col_sp, row_vec / row_sp])]  # no -0.0
    volumes = {"F": fat.astype(float), "W": water.astype(float)}
    volumes["in"] = volumes["F"] + volumes["W"]
    volumes["opp"] = np.abs(volumes["W"] - volumes["F"])
    study = _uid(eid, "mri-study")
    members: list[tuple[str, bytes]] = []
    for s, (k0, k1) in enumerate(_stations(fat.shape[2], n_stations, overlap_slices)):
        if s in drop_stations:
            continue
        for c_idx, contrast in enumerate(contrasts):
            series = _uid(eid, "mri", s, contrast)
            vol = volumes[contrast]
            for n, k in enumerate(range(k0, k1)):
                img = vol[:, :, k]
                if flips[0]:
                    img = img[::-1]
                if flips[1]:
                    img = img[:, ::-1]
                sop = _uid(eid, "mri", s, contrast, k)
                ds = _base(pid, "MR", study, series, sop)
                ds.SeriesDescription = f"Dixon_BH_17s_{contrast}"
                ds.SeriesNumber = 10 * (s + 1) + c_idx
                ds.InstanceNumber = n + 1
                ipp = origin + k * slice_vec
                ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
                ds.ImageOrientationPatient = [round(v, 6) + 0.0 for v in iop]
                ds.PixelSpacing = [round(row_sp, 6), round(col_sp, 6)]
                ds.SliceThickness = round(slice_sp, 6)
                ds.SpacingBetweenSlices = round(slice_sp, 6)
                ds.SliceLocation = round(float(ipp[2]), 4)
                _set_pixels(ds, np.clip(np.rint(img.T), 0, 65535))  # rows = axis 1, columns = axis 0
                members.append((f"{sop}.dcm", _dicom_bytes(ds, file_meta=file_meta)))
    members.append(("manifest.cvs", ("filename\n" + "\n".join(m[0] for m in members) + "\n").encode()))
    return _write_zip(Path(path), members)


def write_ukb_zips_from_synth(subject, dxa_dir: str | Path, mri_dir: str | Path, eid: str,
                              **mri_kwargs) -> tuple[Path, Path]:
    """Write both zips of a :class:`spinelib.synth.subject.Subject`; returns (dxa zip, mri zip).

    ``mri_kwargs`` go to :func:`write_ukb_mri_zip` (e.g. ``n_stations``).
    """
    dxa = write_ukb_dxa_zip(Path(dxa_dir) / dxa_zip_name(eid), eid, subject.bone, subject.tissue,
                            subject.pixel_spacing_mm)
    mri = write_ukb_mri_zip(Path(mri_dir) / mri_zip_name(eid), eid, subject.fat, subject.water,
                            subject.affine, **mri_kwargs)
    return dxa, mri
