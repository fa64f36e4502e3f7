"""The whole-body DXA of a UK Biobank bulk zip (field 20158) as bone and tissue images.

Rules, as the public UK Biobank DXA/MRI preprocessing applies them (Windsor et al.,
``unzip_dxas.py``), and what we add:

* **Which images.** Of the zip's DICOM files, those whose ProtocolName is
  ``"Total Body"``, sorted by InstanceNumber: the first is the *tissue* image, the
  second the *bone* image (public rule). A zip with fewer than two is incomplete; any
  further whole-body images are ignored, as the public scripts do.
* **Pixel spacing.** ``(ExposedArea[1] / Rows, ExposedArea[0] / Columns)`` as
  (row, col) (public rule). ExposedArea (0040,0303) is the field's size "row dimension
  followed by column", i.e. (width along a row, height along a column), so the
  formula pairs the height with Rows. *Units:* the public scripts use the quotient as
  millimetres. DICOM now defines ExposedArea in cm (X-Ray Acquisition Dose module); its
  retired use (Radiation Dose module) was in mm. ExposedArea is an integer (VR US),
  and a whole-body field is well over a metre long, so a field height below
  ``_CM_BELOW`` (400) can only be cm: it is then multiplied by 10 (assumption, logged).
  The spacing is therefore only as exact as a whole millimetre over the field: a
  relative error below 0.5 mm / field height.
* **Values.** The public scripts keep the raw stored integers. We apply
  RescaleSlope / RescaleIntercept when the files carry them (pydicom's modality LUT),
  so calibrated files give g/cm^2; without them the raw values are kept.
* **Orientation.** Our DXA convention is row 0 superior, column 0 at the patient's
  right (a coronal view from the front). PatientOrientation (0020,0020), when present,
  names the patient directions of the row and column axes ("L", "F" is our
  convention); other values are flipped or transposed into it. When it is absent the
  image is taken as stored, as the public scripts do (assumption: the scanner writes
  head-up, patient's right on the image's left).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IncompleteScanError, ShapeError, UnreadableFileError
from .dicomzip import patient_id, pixels, read_zip_dicoms

__all__ = ["UKBDXA", "read_ukb_dxa", "TOTAL_BODY", "exposed_area_mm", "orient_dxa"]

log = logging.getLogger("spinelib.ingest")

TOTAL_BODY = "Total Body"
_CM_BELOW = 400  # a whole-body field height below this many units is in cm, not mm
_SPACING_RANGE_MM = (0.05, 20.0)
_OPPOSITE = {"L": "R", "R": "L", "H": "F", "F": "H", "A": "P", "P": "A"}


@dataclass(frozen=True, eq=False)
class UKBDXA:
    """A whole-body DXA read from a bulk zip.

    Attributes
    ----------
    bone, tissue : float32 (H, W)
        Row 0 superior, column 0 at the patient's right; modality-LUT values.
    pixel_spacing_mm : float64 (2,)
        (row, col) in mm.
    patient_id : str
        PatientID of the files ("" when absent).
    path : Path
    """

    bone: np.ndarray
    tissue: np.ndarray
    pixel_spacing_mm: np.ndarray
    patient_id: str
    path: Path


def exposed_area_mm(exposed_area, *, where: str) -> tuple[float, float]:
    """(width, height) of the exposed field in mm from ExposedArea (see the module notes).

    >>> exposed_area_mm([600, 1950], where="x")
    (600.0, 1950.0)
    >>> exposed_area_mm([60, 195], where="x")
    (600.0, 1950.0)
    """
    try:
        vals = [float(v) for v in (exposed_area if isinstance(exposed_area, (list, tuple)) else list(exposed_area))]
    except (TypeError, ValueError):
        raise UnreadableFileError(f"{where}: ExposedArea {exposed_area!r} is not numeric") from None
    if len(vals) != 2 or not all(np.isfinite(vals)) or min(vals) <= 0:
        raise UnreadableFileError(
            f"{where}: ExposedArea must be two positive numbers (width, height), got {exposed_area!r}")
    width, height = vals
    if height < _CM_BELOW:
        log.debug("%s: ExposedArea %s taken as cm", where, vals)
        return width * 10.0, height * 10.0
    return width, height


def _orientation_plan(orientation, *, where: str) -> tuple[bool, bool, bool]:
    """(transpose, flip columns, flip rows) that bring PatientOrientation to ("L", "F")."""
    if orientation is None or len(orientation) == 0:
        return False, False, False
    dirs = [str(v).strip().upper()[:1] for v in orientation]
    if len(dirs) != 2 or any(d not in _OPPOSITE for d in dirs):
        raise UnreadableFileError(f"{where}: PatientOrientation {list(orientation)!r} is not two of L R H F A P")
    col_dir, row_dir = dirs
    transpose = col_dir in "HF" and row_dir in "LR"  # stored on its side: rows run across the patient
    if transpose:
        col_dir, row_dir = row_dir, col_dir
    if col_dir not in "LR" or row_dir not in "HF":
        raise UnreadableFileError(f"{where}: PatientOrientation {list(orientation)!r} is not a coronal view")
    return transpose, col_dir == "R", row_dir == "H"


def orient_dxa(image: np.ndarray, orientation, *, where: str) -> np.ndarray:
    """Bring an image to row 0 superior, column 0 at the patient's right.

    ``orientation`` is PatientOrientation: the patient direction of increasing column
    index, then of increasing row index (``("L", "F")`` is already our convention);
    empty or ``None``: returned unchanged.

    Raises
    ------
    UnreadableFileError
        An orientation that is not a coronal view.

    >>> orient_dxa(np.array([[1, 2], [3, 4]]), ["R", "F"], where="x").tolist()
    [[2, 1], [4, 3]]
    >>> orient_dxa(np.array([[1, 2], [3, 4]]), ["F", "L"], where="x").tolist()
    [[1, 3], [2, 4]]
    """
    transpose, flip_cols, flip_rows = _orientation_plan(orientation, where=where)
    if transpose:
        image = image.T
    if flip_cols:
        image = image[:, ::-1]
    if flip_rows:
        image = image[::-1, :]
    return np.ascontiguousarray(image)


def read_ukb_dxa(path: str | Path) -> UKBDXA:
    """Read the tissue and bone whole-body images of a field-20158 zip.

    Raises
    ------
    MissingFileError, UnreadableFileError
        Missing file, not a zip, bad DICOM, unreadable ExposedArea or pixel data.
    IncompleteScanError
        Fewer than two "Total Body" images (tissue and bone).
    ShapeError
        Tissue and bone images of different shapes.
    ParticipantMismatchError
        Files of several PatientIDs in the zip.
    """
    p = Path(path)
    what = "DXA zip"
    dsets = read_zip_dicoms(p, what=what)
    pid = patient_id(dsets, what=what, path=p)
    body = [(n, ds) for n, ds in dsets if str(getattr(ds, "ProtocolName", "")).strip() == TOTAL_BODY]
    try:
        body.sort(key=lambda item: int(item[1].InstanceNumber))
    except (AttributeError, TypeError, ValueError) as exc:
        raise UnreadableFileError(f"{what} {p}: a '{TOTAL_BODY}' image has no usable InstanceNumber ({exc})") from exc
    if len(body) < 2:
        have = [int(ds.InstanceNumber) for _, ds in body]
        raise IncompleteScanError(
            f"{what} {p} has {len(body)} '{TOTAL_BODY}' image(s) (InstanceNumber {have}); two are needed, "
            "the tissue image then the bone image: the tissue or the bone image is missing")
    if len(body) > 2:
        log.info("%s %s: %d '%s' images; using the first two by InstanceNumber", what, p, len(body), TOTAL_BODY)
    (t_name, t_ds), (b_name, b_ds) = body[0], body[1]
    tissue = pixels(t_ds, what=f"{what} {p} member {t_name}")
    bone = pixels(b_ds, what=f"{what} {p} member {b_name}")
    if tissue.shape != bone.shape:
        raise ShapeError(f"{what} {p}: tissue image {tissue.shape} and bone image {bone.shape} differ in shape")
    if getattr(t_ds, "ExposedArea", None) is None:
        raise UnreadableFileError(f"{what} {p} member {t_name} has no ExposedArea; the pixel spacing is unknown")
    width, height = exposed_area_mm(t_ds.ExposedArea, where=f"{what} {p}")
    rows, cols = tissue.shape
    spacing = np.array([height / rows, width / cols], dtype=np.float64)
    lo, hi = _SPACING_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        raise UnreadableFileError(
            f"{what} {p}: pixel spacing {spacing.round(4).tolist()} mm from ExposedArea {list(t_ds.ExposedArea)} "
            f"and {rows} x {cols} pixels is outside {lo}..{hi} mm")
    orientation = getattr(t_ds, "PatientOrientation", None)
    oriented = [orient_dxa(a, orientation, where=f"{what} {p}") for a in (tissue, bone)]
    if _orientation_plan(orientation, where=f"{what} {p}")[0]:  # the spacing pair turns with the image
        spacing = spacing[::-1].copy()
    return UKBDXA(bone=oriented[1].astype(np.float32), tissue=oriented[0].astype(np.float32),
                  pixel_spacing_mm=spacing, patient_id=pid, path=p)
