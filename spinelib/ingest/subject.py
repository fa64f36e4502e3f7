"""One participant visit into one subject folder: read the zips, check the ids, add a segmentation.

The folder ``<COHORT>/<id>/`` holds ``dxa.npz``, ``mri_fat.nii.gz``, ``mri_water.nii.gz``
(int16 when the blended values are integers that fit, else float32), ``seg.nii.gz`` when a
segmentation is found and ``source.json`` (names and sizes of the zips, which tell a
complete folder on a rerun). A segmentation is ``seg_dir/<id>/seg.nii.gz`` (our labels) or
TotalSegmentator's ``vertebrae_mr.nii.gz`` and ``total_mr.nii.gz`` (converted by
:func:`spinelib.ingest.segment.seg_from_totalsegmentator`), resampled by nearest label onto
the ingested MRI grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import EmptySegmentationError, MissingFileError, ParticipantMismatchError, SpineLibError
from ..util.atomic import atomic_dir, write_json_atomic
from .dicomzip import DXA_FIELD, MRI_FIELD

__all__ = ["ingest_subject", "NO_SEGMENTATION"]

NO_SEGMENTATION = ("no segmentation: run TotalSegmentator (see the book's introduction) and re-run with --seg")
_SOURCE = "source.json"
_FILES = ("dxa.npz", "mri_fat.nii.gz", "mri_water.nii.gz", _SOURCE)
_INGEST_VERSION = 1


def _zip_record(p: Path) -> dict:
    """Name and size of a zip: what tells the same input on a rerun."""
    return {"name": p.name, "size": p.stat().st_size}


def _source_record(eid: str, dxa: Path, mri: Path) -> dict:
    """The ``source.json`` of a subject made from these zips."""
    return {"ingest_version": _INGEST_VERSION, "eid": eid, "dxa_zip": _zip_record(dxa), "mri_zip": _zip_record(mri)}


def _is_complete(folder: Path, record: dict) -> bool:
    """Whether ``folder`` holds every file and was made from the zips of ``record``."""
    if not all((folder / f).is_file() for f in _FILES):
        return False
    try:
        return json.loads((folder / _SOURCE).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def _check_ids(eid: str, dxa, mri) -> None:
    """Refuse DXA and MRI whose DICOM PatientIDs differ from each other or from ``eid``."""
    for scan, what in ((dxa, "DXA zip"), (mri, "MRI zip")):
        if scan.patient_id and scan.patient_id != eid:
            raise ParticipantMismatchError(
                f"{what} {scan.path} is named for participant {eid} but its DICOM PatientID is "
                f"{scan.patient_id!r}: the files are of different participants")
    if dxa.patient_id and mri.patient_id and dxa.patient_id != mri.patient_id:
        raise ParticipantMismatchError(
            f"DXA zip {dxa.path} (PatientID {dxa.patient_id!r}) and MRI zip {mri.path} (PatientID "
            f"{mri.patient_id!r}) are of different participants")


def _resample_labels(labels: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                     target_shape: tuple[int, int, int]) -> np.ndarray:
    """Labels on another grid, by nearest voxel (0 outside the source)."""
    if labels.shape == tuple(target_shape) and np.allclose(affine, target_affine, atol=1e-3):
        return labels.astype(np.uint8)
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(affine) @ target_affine
    out = affine_transform(labels.astype(np.uint8), m[:3, :3], offset=m[:3, 3], output_shape=tuple(target_shape),
                           order=0, mode="constant", cval=0)
    return out.astype(np.uint8)


def _find_seg(seg_dir: Path | None, sid: str) -> tuple[str, tuple[Path, ...]] | None:
    """("ours", (seg,)) or ("totalsegmentator", (vertebrae_mr, total_mr)) or None."""
    if seg_dir is None:
        return None
    d = Path(seg_dir) / sid
    own = d / "seg.nii.gz"
    if own.is_file():
        return "ours", (own,)
    vert, total = d / "vertebrae_mr.nii.gz", d / "total_mr.nii.gz"
    if vert.is_file() and total.is_file():
        return "totalsegmentator", (vert, total)
    if vert.is_file() or total.is_file():
        have, lack = (vert, total) if vert.is_file() else (total, vert)
        raise MissingFileError(f"segmentation folder {d} has {have.name} but not {lack.name}; "
                               "TotalSegmentator's vertebrae_mr and total_mr outputs are both needed")
    return None


def _seg_on_grid(found: tuple[str, tuple[Path, ...]], affine: np.ndarray, shape: tuple[int, int, int],
                 sid: str) -> np.ndarray:
    """The segmentation ``found`` (:func:`_find_seg`) as uint8 labels on the grid ``(affine, shape)``."""
    from ..io import read_volume
    from ..spine import COLUMN_LABELS

    kind, paths = found
    if kind == "ours":
        vol = read_volume(paths[0], kind="seg")
        labels, src_affine = vol.data, vol.affine
    else:
        from .segment import seg_from_totalsegmentator  # optional: only for TotalSegmentator outputs

        labels, src_affine = seg_from_totalsegmentator(paths[0], paths[1])
    out = _resample_labels(np.asarray(labels), np.asarray(src_affine, float), affine, shape)
    if not np.isin(out, COLUMN_LABELS).any():
        raise EmptySegmentationError(
            f"segmentation {paths[0]} has no spine-column label inside subject {sid}'s MRI field of view")
    return out


def _mri_grid(folder: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(affine, shape) of the subject's written ``mri_water.nii.gz``."""
    import nibabel as nib

    img = nib.load(str(folder / "mri_water.nii.gz"))
    return np.asarray(img.affine, float), tuple(int(v) for v in img.shape[:3])


def _mri_dtype(volume: np.ndarray) -> type:
    """int16 for integer values that fit (a quarter the size of float32 once gzipped), else float32."""
    info = np.iinfo(np.int16)
    if volume.min() >= info.min and volume.max() <= info.max and np.array_equal(volume, np.rint(volume)):
        return np.int16
    return np.float32


def ingest_subject(job: dict) -> tuple[str, str, str]:
    """Ingest one participant visit into its subject folder (the fan-out item of ``ingest_ukb``).

    Parameters
    ----------
    job : ``sid``, ``eid``, ``visit``, ``folder`` (the subject folder), ``dxa`` and ``mri``
        (zip paths, or None when missing), ``seg_dir`` (Path or None), ``check_ids`` (bool),
        ``dxa_dir`` and ``mri_dir`` (the zip folders, for messages).

    Returns
    -------
    ``(id, state, reason)``, state one of ``ingested``, ``resumed``, ``needs_seg``,
    ``failed``. Only spinelib errors become reasons.
    """
    from ..io import write_dxa, write_nifti
    from .ukb_dxa import read_ukb_dxa
    from .ukb_mri import read_ukb_mri

    sid, eid, folder = job["sid"], job["eid"], Path(job["folder"])
    dxa_zip, mri_zip, seg_dir = job["dxa"], job["mri"], job["seg_dir"]
    try:
        if dxa_zip is None:
            return sid, "failed", (f"no DXA zip (field {DXA_FIELD}, {eid}_{DXA_FIELD}_{job['visit']}.zip) "
                                   f"in {job['dxa_dir']}")
        if mri_zip is None:
            return sid, "failed", (f"no MRI zip (field {MRI_FIELD}, {eid}_{MRI_FIELD}_{job['visit']}.zip) "
                                   f"in {job['mri_dir']}")
        record = _source_record(eid, Path(dxa_zip), Path(mri_zip))
        found = _find_seg(seg_dir, sid)
        if _is_complete(folder, record):
            if (folder / "seg.nii.gz").is_file():
                return sid, "resumed", ""
            if found is None:
                return sid, "needs_seg", NO_SEGMENTATION
            affine, shape = _mri_grid(folder)
            write_nifti(folder / "seg.nii.gz", _seg_on_grid(found, affine, shape, sid), affine, dtype=np.uint8)
            return sid, "ingested", ""
        dxa = read_ukb_dxa(dxa_zip)
        mri = read_ukb_mri(mri_zip)
        if job["check_ids"]:
            _check_ids(eid, dxa, mri)
        seg = _seg_on_grid(found, mri.affine, mri.fat.shape, sid) if found is not None else None
        with atomic_dir(folder) as tmp:
            write_dxa(tmp / "dxa.npz", dxa.bone, dxa.tissue, dxa.pixel_spacing_mm)
            write_nifti(tmp / "mri_fat.nii.gz", mri.fat, mri.affine, dtype=_mri_dtype(mri.fat))
            write_nifti(tmp / "mri_water.nii.gz", mri.water, mri.affine, dtype=_mri_dtype(mri.water))
            if seg is not None:
                write_nifti(tmp / "seg.nii.gz", seg, mri.affine, dtype=np.uint8)
            write_json_atomic(tmp / _SOURCE, record)
        return sid, ("ingested" if seg is not None else "needs_seg"), ("" if seg is not None else NO_SEGMENTATION)
    except SpineLibError as exc:
        return sid, "failed", f"{type(exc).__name__}: {exc}"
