"""MRI spine segmentation from TotalSegmentator's MR outputs, in spinelib's label convention.

UK Biobank gives no spine segmentation. TotalSegmentator (an optional tool the user runs
on ``mri_water.nii.gz``; never imported here) segments MR with two tasks whose outputs
this module combines (:func:`seg_from_totalsegmentator`):

* ``vertebrae_mr`` -- one label per *whole* vertebra (body and posterior elements), the
  numbering of :data:`VERTEBRAE_MR_LABELS` (1 sacrum, 2 L5 ... 18 T1, 19 C7 ... 25 C1);
* ``total_mr`` -- 50 structures, of which this module uses ``intervertebral_discs`` (all
  discs, one label) and, when present, ``spinal_cord`` (:data:`TOTAL_MR_LABELS`).

Both must be multilabel files (``TotalSegmentator --ml``) on the grid of the same MRI.
The result uses the labels of :mod:`spinelib.spine`: bodies T1..L5 -> 1..17, sacrum 18,
column discs T1/T2..L4/L5 -> 20, L5/S1 -> 21, posterior elements -> 22. Cervical
vertebrae and discs above T1 are outside the convention and dropped.

Each vertebra T1..L5 is split into body and posterior elements by the rule of
:mod:`spinelib.ingest.vertebra_body` (:func:`~spinelib.ingest.vertebra_body.split_vertebra`),
along a superior axis through the neighbouring vertebrae's core centroids; the discs go to
the gaps between the bodies by the rule of :mod:`spinelib.ingest.discs`
(:func:`~spinelib.ingest.discs.assign_discs`). Bodies, sacrum and posterior elements win
over discs where the two tasks overlap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import (
    DTypeError,
    EmptySegmentationError,
    InvalidArgumentError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
)
from ..spine import LEVELS, POSTERIOR_LABEL, SACRUM_LABEL, vertebra_label
from .discs import assign_discs
from .labelgrid import box_affine, opened_core, padded_box, to_world, unit, voxel_sizes
from .vertebra_body import OPENING_RADIUS_MM, split_vertebra

__all__ = [
    "TOTALSEGMENTATOR_VERSION",
    "VERTEBRAE_MR_LABELS",
    "TOTAL_MR_LABELS",
    "TOTAL_MR_N_CLASSES",
    "VERTEBRAE_MR_LEVEL_LABEL",
    "seg_from_totalsegmentator",
]

#: Version of TotalSegmentator whose ``totalsegmentator/map_to_binary.py`` (``class_map``)
#: the label maps below are copied from.
TOTALSEGMENTATOR_VERSION = "2.18.0"

#: ``class_map["vertebrae_mr"]`` of TotalSegmentator 2.18.0 (whole vertebrae).
VERTEBRAE_MR_LABELS: dict[int, str] = {
    1: "sacrum", 2: "vertebrae_L5", 3: "vertebrae_L4", 4: "vertebrae_L3", 5: "vertebrae_L2",
    6: "vertebrae_L1", 7: "vertebrae_T12", 8: "vertebrae_T11", 9: "vertebrae_T10",
    10: "vertebrae_T9", 11: "vertebrae_T8", 12: "vertebrae_T7", 13: "vertebrae_T6",
    14: "vertebrae_T5", 15: "vertebrae_T4", 16: "vertebrae_T3", 17: "vertebrae_T2",
    18: "vertebrae_T1", 19: "vertebrae_C7", 20: "vertebrae_C6", 21: "vertebrae_C5",
    22: "vertebrae_C4", 23: "vertebrae_C3", 24: "vertebrae_C2", 25: "vertebrae_C1",
}

#: The entries of ``class_map["total_mr"]`` (TotalSegmentator 2.18.0) used here.
TOTAL_MR_LABELS: dict[int, str] = {18: "sacrum", 19: "vertebrae", 20: "intervertebral_discs", 21: "spinal_cord"}
#: Number of classes of ``total_mr`` (labels 1..50); a larger label means another task's file.
TOTAL_MR_N_CLASSES = 50

_VERT_BY_NAME = {name: lab for lab, name in VERTEBRAE_MR_LABELS.items()}
#: ``vertebrae_mr`` label of each level of the spine column, ``'T1' -> 18`` ... ``'L5' -> 2``.
VERTEBRAE_MR_LEVEL_LABEL: dict[str, int] = {lv: _VERT_BY_NAME[f"vertebrae_{lv}"] for lv in LEVELS}
_VERT_SACRUM = _VERT_BY_NAME["sacrum"]
_VERT_C7 = _VERT_BY_NAME["vertebrae_C7"]
_TOTAL_DISCS = 20
_TOTAL_CORD = 21
#: padding (mm) of each vertebra's box: room for the opening and the cord beside it
_BOX_PAD_MM = 15.0


# --------------------------------------------------------------------------- loading


def _load(obj: Any, name: str, max_label: int, task: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(integer labels, affine, description) of a path or nibabel image, canonical RAS+."""
    import nibabel as nib

    from ..io import read_volume

    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if p.is_dir():
            raise InvalidArgumentError(
                f"{name} {p} is a folder: run TotalSegmentator with --ml so that task {task} "
                "writes one multilabel NIfTI file"
            )
        if not p.exists():
            raise MissingFileError(f"{name}: TotalSegmentator {task} output {p} does not exist")
        vol = read_volume(p, kind="seg", require_column=False)
        labels, affine, where = vol.data, vol.affine, str(p)
    elif isinstance(obj, nib.spatialimages.SpatialImage):
        where = f"{name} (in-memory {task} image)"
        if len(obj.shape) == 4 and obj.shape[3] == 1:
            obj = obj.slicer[..., 0]
        if len(obj.shape) != 3:
            raise ShapeError(f"{where} must be 3D, got shape {obj.shape}")
        aff = np.asarray(obj.affine, dtype=float)
        if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise InvalidArgumentError(f"{where} has a singular or non-finite affine")
        img = nib.as_closest_canonical(obj)
        data = np.asarray(img.dataobj)
        if data.dtype.kind not in "iuf":
            raise DTypeError(f"{where} has dtype {data.dtype}; expected integer labels")
        if data.dtype.kind == "f":
            if not np.all(np.isfinite(data)):
                raise NonFiniteError(f"{where} holds NaN or infinite values")
            if not np.all(data == np.round(data)):
                raise DTypeError(f"{where} holds non-integer values; expected integer labels")
        if data.size and data.min() < 0:
            raise DTypeError(f"{where} holds negative labels")
        labels, affine = data, np.asarray(img.affine, dtype=float)
    else:
        raise InvalidArgumentError(
            f"{name} must be a path or a nibabel image, got {type(obj).__name__}"
        )
    top = int(labels.max(initial=0))
    if top > max_label:
        raise InvalidArgumentError(
            f"{where} holds label {top} but TotalSegmentator task {task} has labels 1..{max_label}: "
            f"is it the output of --task {task} --ml?"
        )
    return np.asarray(labels, dtype=np.uint8), affine, where


def _load_pair(vertebrae_mr: Any, total_mr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    """(vertebrae_mr labels, total_mr labels, affine, where_v, where_t) of two outputs on one grid."""
    vert, aff_v, where_v = _load(vertebrae_mr, "vertebrae_mr", max(VERTEBRAE_MR_LABELS), "vertebrae_mr")
    tot, aff_t, where_t = _load(total_mr, "total_mr", TOTAL_MR_N_CLASSES, "total_mr")
    if vert.shape != tot.shape:
        raise ShapeError(
            f"{where_v} has shape {vert.shape} but {where_t} has {tot.shape}: run both tasks on the same MRI"
        )
    if not np.allclose(aff_v, aff_t, atol=1e-3, rtol=0):
        raise InvalidArgumentError(
            f"{where_v} and {where_t} have different affines (voxel grids): run both tasks on the same MRI"
        )
    return vert, tot, aff_v, where_v, where_t


def _present_labels(vert: np.ndarray, where_v: str) -> np.ndarray:
    """Bool table of the ``vertebrae_mr`` labels present; raises when one of T1..L5 is missing."""
    present = np.zeros(max(VERTEBRAE_MR_LABELS) + 1, dtype=bool)
    present[np.unique(vert)] = True
    missing = [lv for lv in LEVELS if not present[VERTEBRAE_MR_LEVEL_LABEL[lv]]]
    if missing:
        labs = ", ".join(str(VERTEBRAE_MR_LEVEL_LABEL[lv]) for lv in missing)
        raise EmptySegmentationError(
            f"{where_v} lacks vertebrae {', '.join(missing)} (vertebrae_mr labels {labs}); the spine "
            "column needs every vertebra T1-L5: check that the MRI covers them"
        )
    return present


# --------------------------------------------------------------------------- the adapter


def _superior_axes(centres: np.ndarray) -> np.ndarray:
    """(N, 3) unit superior axes from (N, 3) body centroids ordered superior -> inferior."""
    n = len(centres)
    out = np.zeros_like(centres)
    for i in range(n):
        up = centres[max(i - 1, 0)] - centres[min(i + 1, n - 1)]
        uu = unit(up)
        out[i] = uu if uu is not None else np.array([0.0, 0.0, 1.0])
    return out


def _vertebra_boxes(vert: np.ndarray, affine: np.ndarray) -> tuple[dict, np.ndarray]:
    """``{level: (box, box affine, mask)}`` of each vertebra T1..L5 and their (17, 3) superior axes."""
    vox = voxel_sizes(affine)
    objects = ndi.find_objects(vert)
    pad = np.ceil(_BOX_PAD_MM / vox).astype(int)
    boxes, cores = {}, {}
    for lv in LEVELS:  # core centroids first: they give every vertebra's superior axis
        sl = objects[VERTEBRAE_MR_LEVEL_LABEL[lv] - 1]
        box, lo = padded_box(np.array([s_.start for s_ in sl]), np.array([s_.stop for s_ in sl]), pad, vert.shape)
        box_aff = box_affine(affine, lo)
        m = vert[box] == VERTEBRAE_MR_LEVEL_LABEL[lv]
        boxes[lv] = (box, box_aff, m)
        core = opened_core(m, vox, OPENING_RADIUS_MM)
        cores[lv] = to_world(np.argwhere(core).astype(float), box_aff).mean(axis=0)
    return boxes, _superior_axes(np.array([cores[lv] for lv in LEVELS]))


def _split_bodies(vert: np.ndarray, boxes: dict, ups: np.ndarray, cord: np.ndarray | None,
                  where_v: str) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray, float]]]:
    """(uint8 body labels, bool posterior elements, disc anchors T1..L5) of the column's vertebrae."""
    out = np.zeros(vert.shape, dtype=np.uint8)
    posterior = np.zeros(vert.shape, dtype=bool)
    anchors: list[tuple[str, np.ndarray, float]] = []
    for i, lv in enumerate(LEVELS):
        box, box_aff, m = boxes[lv]
        body = split_vertebra(m, box_aff, ups[i], cord=None if cord is None else cord[box])
        if not body.any():
            raise EmptySegmentationError(f"{where_v}: no vertebral body found in vertebra {lv}")
        out[box][body] = vertebra_label(lv)
        posterior[box] |= m & ~body
        bpts = to_world(np.argwhere(body).astype(float), box_aff)
        c = bpts.mean(axis=0)
        lat = unit(np.cross(ups[i], np.array([0.0, 1.0, 0.0])))
        lat = lat if lat is not None else np.array([1.0, 0.0, 0.0])
        anchors.append((lv, c, float(np.ptp((bpts - c) @ lat)) / 2))
    return out, posterior, anchors


def _end_anchors(anchors: list, vert: np.ndarray, affine: np.ndarray, present: np.ndarray,
                 sacrum: np.ndarray, up_l5: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """``anchors`` with C7 above and the sacrum below when segmented (half-widths of T1 and L5)."""
    anchors = list(anchors)
    if present[_VERT_C7]:
        c7 = to_world(np.argwhere(vert == _VERT_C7).astype(float), affine)
        anchors.insert(0, ("C7", c7.mean(axis=0), anchors[0][2]))
    if sacrum.any():
        # the sacrum's top (its superior tenth) stands for its "body" next to the L5/S1 disc
        spts = to_world(np.argwhere(sacrum).astype(float), affine)
        h = spts @ up_l5
        top = spts[h >= np.quantile(h, 0.9)]
        anchors.append(("sacrum", top.mean(axis=0), anchors[-1][2]))
    return anchors


def seg_from_totalsegmentator(vertebrae_mr: Any, total_mr: Any) -> tuple[np.ndarray, np.ndarray]:
    """Combine TotalSegmentator's ``vertebrae_mr`` and ``total_mr`` outputs into our labels.

    Parameters
    ----------
    vertebrae_mr : path (``str`` or ``Path``) to, or nibabel image of, the multilabel output
        of ``TotalSegmentator --task vertebrae_mr --ml`` (labels :data:`VERTEBRAE_MR_LABELS`).
    total_mr : the same for ``--task total_mr --ml`` (labels 1..50; discs 20, cord 21).

    Returns
    -------
    labels : (I, J, K) uint8 volume in :mod:`spinelib.spine`'s convention (bodies T1..L5
        1..17, sacrum 18, column discs 20, L5/S1 disc 21, posterior elements 22), in
        canonical RAS+ orientation (``nibabel.as_closest_canonical`` of the inputs).
    affine : (4, 4) float voxel -> world (mm) affine of ``labels``.

    Raises
    ------
    MissingFileError, UnreadableFileError, DTypeError, NonFiniteError
        A file missing or unreadable, or labels that are not integers.
    InvalidArgumentError
        A folder instead of a ``--ml`` file, labels beyond the task's range, or affines
        that differ between the two outputs.
    ShapeError
        The two outputs have different shapes.
    EmptySegmentationError
        ``vertebrae_mr`` lacks any of T1..L5 (the message lists them), or ``total_mr``
        holds no intervertebral disc.
    """
    vert, tot, aff_v, where_v, where_t = _load_pair(vertebrae_mr, total_mr)
    present = _present_labels(vert, where_v)
    disc_mask = tot == _TOTAL_DISCS
    if not disc_mask.any():
        raise EmptySegmentationError(
            f"{where_t} holds no intervertebral_discs voxel (total_mr label {_TOTAL_DISCS})"
        )
    cord = tot == _TOTAL_CORD
    boxes, ups = _vertebra_boxes(vert, aff_v)
    out, posterior, anchors = _split_bodies(vert, boxes, ups, cord if cord.any() else None, where_v)
    sacrum = vert == _VERT_SACRUM
    anchors = _end_anchors(anchors, vert, aff_v, present, sacrum, ups[-1])
    discs = assign_discs(disc_mask & (vert == 0), aff_v, anchors)
    out[(out == 0) & sacrum] = SACRUM_LABEL
    out[(out == 0) & posterior] = POSTERIOR_LABEL
    free = out == 0
    out[free] = discs[free]
    return out, aff_v
