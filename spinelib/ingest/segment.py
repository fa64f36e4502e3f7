"""MRI spine segmentation from TotalSegmentator's MR outputs, in spinelib's label convention.

UK Biobank gives no spine segmentation. TotalSegmentator (an optional tool the user runs
on ``mri_water.nii.gz``; never imported here) segments MR with two tasks whose outputs
this module combines:

* ``vertebrae_mr`` -- one label per *whole* vertebra (body and posterior elements), the
  numbering of :data:`VERTEBRAE_MR_LABELS` (1 sacrum, 2 L5 ... 18 T1, 19 C7 ... 25 C1);
* ``total_mr`` -- 50 structures, of which this module uses ``intervertebral_discs`` (all
  discs, one label) and, when present, ``spinal_cord`` (:data:`TOTAL_MR_LABELS`).

Both must be multilabel files (``TotalSegmentator --ml``) on the grid of the same MRI.
The result uses the labels of :mod:`spinelib.spine`: bodies T1..L5 -> 1..17, sacrum 18,
column discs T1/T2..L4/L5 -> 20, L5/S1 -> 21, posterior elements -> 22. Cervical
vertebrae and discs above T1 are outside the convention and dropped.

The vertebral body rule (:func:`split_vertebra`)
------------------------------------------------
The body is the part of the vertebra anterior to its posterior wall, and the posterior
wall is the anterior edge of the vertebral canal. Per vertebra, in world mm:

1. *Core*: the largest connected component of the vertebra's morphological opening by a
   ball of radius ``opening_radius_mm`` (5 mm). Pedicles, laminae and processes are
   thinner than the ball and vanish; the body (over 15 mm in every direction) stays.
2. *Axes*: the superior axis ``u`` runs along the column (from the next lower to the next
   upper vertebra's core centroid). The anterior axis ``a`` points from the spinal cord
   (``total_mr``'s ``spinal_cord`` voxels at the vertebra's height) to the core centroid;
   without cord voxels it points from the centroid of the thin parts (vertebra minus core)
   to the core centroid; without those, it is the scanner's anterior axis. ``a`` is made
   orthogonal to ``u``, so the rule follows sagittal tilt and axial rotation.
3. *Canal edge*: the vertebra's voxels in a mid-sagittal band (lateral distance from the
   core centroid within ``band_fraction`` of the core's width) are binned along ``a``.
   Walking from the most anterior bin backwards, past the body's front, the first bin
   holding at most ``gap_fraction`` of the fullest bin's voxels is the canal; the wall is
   that bin's anterior edge, never behind the cord's anterior edge when the cord is known.
   If no such gap exists (a canal the segmentation filled in), the wall is the posterior
   face of the core in the band (or the cord's anterior edge, whichever is more anterior).
4. *Body*: the vertebra's voxels anterior to the wall (a plane orthogonal to ``a``), the
   connected component holding the core; everything else of the vertebra is posterior.

Discs (:func:`assign_discs`): each connected component of ``intervertebral_discs`` goes
to the gap between the two consecutive vertebrae (C7, T1 .. L5, sacrum; by their body
centroids, the sacrum's top tenth standing for its body) whose connecting segment its centroid projects inside of and lies nearest to;
components projecting outside every segment, or farther from it than the larger body's
half-width plus 10 mm, are dropped. Bodies, sacrum and posterior elements win over discs
where the two tasks overlap.
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
from ..spine import DISC_LABEL, LEVELS, LUMBOSACRAL_DISC_LABEL, POSTERIOR_LABEL, SACRUM_LABEL, vertebra_label

__all__ = [
    "TOTALSEGMENTATOR_VERSION",
    "VERTEBRAE_MR_LABELS",
    "TOTAL_MR_LABELS",
    "TOTAL_MR_N_CLASSES",
    "OPENING_RADIUS_MM",
    "VERTEBRAE_MR_LEVEL_LABEL",
    "seg_from_totalsegmentator",
    "split_vertebra",
    "assign_discs",
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

#: Radius of the ball whose opening strips a vertebra's posterior elements (step 1 of the rule):
#: thicker than pedicles, laminae and processes (about 5-10 mm across), thinner than a body.
OPENING_RADIUS_MM = 5.0

_VERT_BY_NAME = {name: lab for lab, name in VERTEBRAE_MR_LABELS.items()}
#: ``vertebrae_mr`` label of each level of the spine column, ``'T1' -> 18`` ... ``'L5' -> 2``.
VERTEBRAE_MR_LEVEL_LABEL: dict[str, int] = {lv: _VERT_BY_NAME[f"vertebrae_{lv}"] for lv in LEVELS}
_VERT_SACRUM = _VERT_BY_NAME["sacrum"]
_VERT_C7 = _VERT_BY_NAME["vertebrae_C7"]
_TOTAL_DISCS = 20
_TOTAL_CORD = 21


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


# --------------------------------------------------------------------------- geometry


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def _ball(radius_mm: float, voxel_mm: np.ndarray) -> np.ndarray:
    """Boolean ellipsoidal structuring element: a ball of ``radius_mm`` on this grid."""
    half = np.floor(radius_mm / voxel_mm).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * v for h, v in zip(half, voxel_mm)], indexing="ij")
    return sum(g * g for g in grids) <= radius_mm**2 + 1e-9


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _world(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 3) world mm of (N, 3) voxel indices."""
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else None


def _vertebra_core(mask: np.ndarray, voxel_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Largest component of the opening of ``mask`` by a ball (``mask`` itself if the ball
    is a single voxel or the opening removes everything)."""
    ball = _ball(radius_mm, voxel_mm)
    if ball.sum() <= 1:
        return _largest_component(mask)
    opened = ndi.binary_opening(mask, structure=ball)
    if not opened.any():
        return _largest_component(mask)
    return _largest_component(opened)


def _check_split_args(vertebra, affine, superior, cord, opening_radius_mm, band_fraction, gap_fraction):
    v = np.asarray(vertebra)
    if v.ndim != 3:
        raise ShapeError(f"vertebra must be a 3D mask, got shape {v.shape}")
    if v.dtype != bool:
        if v.dtype.kind not in "iuf" or not np.all(np.isin(np.unique(v), (0, 1))):
            raise DTypeError(f"vertebra must be a boolean (or 0/1) mask, got dtype {v.dtype}")
        v = v.astype(bool)
    if not v.any():
        raise EmptySegmentationError("vertebra mask is empty")
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise InvalidArgumentError(f"affine must be a finite, invertible (4, 4) matrix, got shape {a.shape}")
    u = np.asarray(superior, dtype=float)
    if u.shape != (3,) or not np.all(np.isfinite(u)) or _unit(u) is None:
        raise InvalidArgumentError(f"superior must be a finite non-zero (3,) vector, got {superior!r}")
    c = None
    if cord is not None:
        c = np.asarray(cord)
        if c.shape != v.shape:
            raise ShapeError(f"cord mask shape {c.shape} differs from the vertebra's {v.shape}")
        c = c.astype(bool)
    for nm, val, lo, hi in (("opening_radius_mm", opening_radius_mm, 0.0, 50.0),
                            ("band_fraction", band_fraction, 0.0, 0.5),
                            ("gap_fraction", gap_fraction, 0.0, 1.0)):
        if not np.isfinite(val) or not lo < float(val) < hi:
            raise InvalidArgumentError(f"{nm} must lie in ({lo}, {hi}), got {val!r}")
    return v, a, _unit(u), c


def split_vertebra(
    vertebra: np.ndarray,
    affine: np.ndarray,
    superior: np.ndarray,
    *,
    cord: np.ndarray | None = None,
    opening_radius_mm: float = OPENING_RADIUS_MM,
    band_fraction: float = 0.1,
    gap_fraction: float = 0.1,
) -> np.ndarray:
    """The vertebral body of a whole-vertebra mask (the rule in the module docstring).

    Parameters
    ----------
    vertebra : (I, J, K) bool mask of one whole vertebra (body and posterior elements).
    affine : (4, 4) voxel -> world (mm) affine of the mask.
    superior : (3,) world direction of the column's superior axis at this vertebra.
    cord : optional (I, J, K) bool mask of the spinal cord (any extent; only the voxels at
        this vertebra's height are used).
    opening_radius_mm : radius of the ball that strips the posterior elements (step 1).
    band_fraction : half-width of the mid-sagittal band, as a fraction of the core's width.
    gap_fraction : a bin holding at most this fraction of the fullest bin is the canal.

    Returns
    -------
    (I, J, K) bool mask of the body, a subset of ``vertebra``.

    Raises
    ------
    ShapeError, DTypeError, EmptySegmentationError, InvalidArgumentError
        Bad masks, affine, axis or parameters.
    """
    v, aff, u, cord_m = _check_split_args(vertebra, affine, superior, cord, opening_radius_mm,
                                          band_fraction, gap_fraction)
    # work in the vertebra's bounding box (padded for the opening): volumes are large
    idx = np.nonzero(v)
    vox = _voxel_sizes(aff)
    pad = np.ceil(opening_radius_mm / vox).astype(int) + 2
    lo = np.maximum(np.array([i.min() for i in idx]) - pad, 0)
    hi = np.minimum(np.array([i.max() for i in idx]) + pad + 1, v.shape)
    box = tuple(slice(int(a0), int(b0)) for a0, b0 in zip(lo, hi))
    sub = v[box]
    sub_aff = aff.copy()
    sub_aff[:3, 3] = _world(lo[None, :].astype(float), aff)[0]

    core = _vertebra_core(sub, vox, float(opening_radius_mm))
    pts = _world(np.argwhere(sub).astype(float), sub_aff)
    core_pts = _world(np.argwhere(core).astype(float), sub_aff)
    c_core = core_pts.mean(axis=0)

    anterior = None
    near = np.zeros((0, 3))
    if cord_m is not None:
        cpts = _world(np.argwhere(cord_m).astype(float), aff)
        h = (core_pts - c_core) @ u
        hc = (cpts - c_core) @ u
        near = cpts[(hc >= h.min()) & (hc <= h.max())]
        if len(near):
            anterior = c_core - near.mean(axis=0)
    if anterior is None:
        thin = sub & ~core
        if thin.sum() >= 0.05 * sub.sum():
            anterior = c_core - _world(np.argwhere(thin).astype(float), sub_aff).mean(axis=0)
    for cand in (anterior, np.array([0.0, 1.0, 0.0])):  # RAS+: +y is anterior
        if cand is None:
            continue
        a = _unit(cand - (cand @ u) * u)
        if a is not None:
            break
    else:  # the column runs along y: no meaningful anterior axis
        raise InvalidArgumentError(f"superior axis {u.tolist()} leaves no anterior direction")
    lat = np.cross(u, a)

    rel = pts - c_core
    t = rel @ a
    width = np.ptp((core_pts - c_core) @ lat)
    band = np.abs(rel @ lat) <= max(band_fraction * width, 0.5 * float(vox.min()))
    tb = t[band]
    # bin width: the largest step along ``a`` between neighbouring voxels, so that a bin of
    # a solid part is never empty by sampling alone
    step = max(float(np.max(np.abs(aff[:3, :3].T @ a))), 1e-6)
    # bins centred on the most anterior voxel: when ``a`` runs along a grid axis, every
    # voxel lies mid-bin and the wall (a bin edge) falls half-way between voxel rows, so
    # rounding never decides which side a voxel is on
    n_bins = int(np.floor((tb.max() - tb.min()) / step + 0.5)) + 1
    edges = tb.max() + 0.5 * step - step * np.arange(n_bins + 1)[::-1]  # ascending
    edges[0] = min(edges[0], tb.min() - 0.5 * step)
    counts, _ = np.histogram(tb, bins=edges)
    thresh = gap_fraction * counts.max()
    wall = None
    in_body = False
    for k in range(n_bins - 1, -1, -1):  # anterior -> posterior; stray anterior voxels before
        if counts[k] > thresh:            # the body's front are not the canal
            in_body = True
        elif in_body:
            wall = edges[k + 1]
            break
    if wall is None:
        core_band = np.abs((core_pts - c_core) @ lat) <= max(band_fraction * width, 0.5 * float(vox.min()))
        back = ((core_pts - c_core) @ a)[core_band] if core_band.any() else t
        wall = float(back.min()) - 0.5 * step
    if len(near):
        # the cord lies in the canal: the wall is never behind the cord's anterior edge
        # (this matters when coarse voxels fill the canal between the pedicles)
        wall = max(wall, float(((near - c_core) @ a).max()) + 0.5 * step)

    body_sub = np.zeros_like(sub)
    ijk = np.argwhere(sub)
    keep = t >= wall
    body_sub[tuple(ijk[keep].T)] = True
    lab, n = ndi.label(body_sub)
    if n > 1:
        hits = np.bincount(lab[core & body_sub], minlength=n + 1)
        hits[0] = 0
        body_sub = lab == int(np.argmax(hits)) if hits.any() else _largest_component(body_sub)
    out = np.zeros(v.shape, dtype=bool)
    out[box] = body_sub
    return out


# --------------------------------------------------------------------------- discs


def assign_discs(
    discs: np.ndarray,
    affine: np.ndarray,
    anchors: list[tuple[str, np.ndarray, float]],
) -> np.ndarray:
    """Label each connected disc component with the gap it fills (rule in the module docstring).

    Parameters
    ----------
    discs : (I, J, K) bool mask of all intervertebral discs.
    affine : (4, 4) voxel -> world (mm) affine.
    anchors : consecutive vertebrae from superior to inferior, as ``(name, (3,) body
        centroid in world mm, half-width in mm)``; names of :data:`spinelib.spine.LEVELS`
        plus ``"C7"`` and ``"sacrum"``.

    Returns
    -------
    (I, J, K) uint8: 20 for discs between two of T1..L5, 21 for L5/S1, 0 elsewhere.

    Raises
    ------
    ShapeError, InvalidArgumentError
        Bad mask, affine or anchors.
    """
    d = np.asarray(discs)
    if d.ndim != 3:
        raise ShapeError(f"discs must be a 3D mask, got shape {d.shape}")
    d = d.astype(bool)
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise InvalidArgumentError("affine must be a finite (4, 4) matrix")
    if len(anchors) < 2:
        raise InvalidArgumentError(f"assign_discs needs at least two anchor vertebrae, got {len(anchors)}")
    names = [str(n) for n, _, _ in anchors]
    cents = np.array([np.asarray(c, dtype=float) for _, c, _ in anchors])
    halfw = np.array([float(w) for _, _, w in anchors])
    if cents.shape != (len(anchors), 3) or not np.all(np.isfinite(cents)):
        raise InvalidArgumentError("anchor centroids must be finite (3,) points")
    out = np.zeros(d.shape, dtype=np.uint8)
    lab, n = ndi.label(d)
    if n == 0:
        return out
    com = np.array(ndi.center_of_mass(d, lab, range(1, n + 1)), dtype=float).reshape(n, 3)
    com_w = _world(com, a)
    p0, p1 = cents[:-1], cents[1:]
    seg = p1 - p0
    seg_len2 = np.maximum((seg * seg).sum(axis=1), 1e-9)
    column = set(LEVELS)
    for comp in range(n):
        s = ((com_w[comp] - p0) * seg).sum(axis=1) / seg_len2
        foot = p0 + s[:, None] * seg
        dist = np.linalg.norm(com_w[comp] - foot, axis=1)
        ok = (s > 0.0) & (s < 1.0) & (dist <= np.maximum(halfw[:-1], halfw[1:]) + 10.0)
        if not ok.any():
            continue
        g = int(np.argmin(np.where(ok, dist, np.inf)))
        upper, lower = names[g], names[g + 1]
        if upper in column and lower in column:
            value = DISC_LABEL
        elif upper == LEVELS[-1] and lower == "sacrum":
            value = LUMBOSACRAL_DISC_LABEL
        else:
            continue
        out[lab == comp + 1] = value
    return out


# --------------------------------------------------------------------------- the adapter


def _superior_axes(centres: np.ndarray) -> np.ndarray:
    """(N, 3) unit superior axes from (N, 3) body centroids ordered superior -> inferior."""
    n = len(centres)
    out = np.zeros_like(centres)
    for i in range(n):
        up = centres[max(i - 1, 0)] - centres[min(i + 1, n - 1)]
        uu = _unit(up)
        out[i] = uu if uu is not None else np.array([0.0, 0.0, 1.0])
    return out


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
    present = np.zeros(max(VERTEBRAE_MR_LABELS) + 1, dtype=bool)
    present[np.unique(vert)] = True
    missing = [lv for lv in LEVELS if not present[VERTEBRAE_MR_LEVEL_LABEL[lv]]]
    if missing:
        labs = ", ".join(str(VERTEBRAE_MR_LEVEL_LABEL[lv]) for lv in missing)
        raise EmptySegmentationError(
            f"{where_v} lacks vertebrae {', '.join(missing)} (vertebrae_mr labels {labs}); the spine "
            "column needs every vertebra T1-L5: check that the MRI covers them"
        )
    disc_mask = tot == _TOTAL_DISCS
    if not disc_mask.any():
        raise EmptySegmentationError(
            f"{where_t} holds no intervertebral_discs voxel (total_mr label {_TOTAL_DISCS})"
        )
    cord = tot == _TOTAL_CORD
    cord = cord if cord.any() else None
    vox = _voxel_sizes(aff_v)

    # each vertebra is handled in its bounding box, padded for the opening and the cord
    objects = ndi.find_objects(vert)
    pad = np.ceil(15.0 / vox).astype(int)
    boxes, cores = {}, {}
    for lv in LEVELS:  # core centroids first: they give every vertebra's superior axis
        sl = objects[VERTEBRAE_MR_LEVEL_LABEL[lv] - 1]
        lo = np.array([max(s_.start - p_, 0) for s_, p_ in zip(sl, pad)])
        hi = np.array([min(s_.stop + p_, n) for s_, p_, n in zip(sl, pad, vert.shape)])
        box = tuple(slice(int(a0), int(b0)) for a0, b0 in zip(lo, hi))
        box_aff = aff_v.copy()
        box_aff[:3, 3] = _world(lo[None, :].astype(float), aff_v)[0]
        m = vert[box] == VERTEBRAE_MR_LEVEL_LABEL[lv]
        boxes[lv] = (box, box_aff, m)
        core = _vertebra_core(m, vox, OPENING_RADIUS_MM)
        cores[lv] = _world(np.argwhere(core).astype(float), box_aff).mean(axis=0)
    ups = _superior_axes(np.array([cores[lv] for lv in LEVELS]))

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
        bpts = _world(np.argwhere(body).astype(float), box_aff)
        c = bpts.mean(axis=0)
        lat = _unit(np.cross(ups[i], np.array([0.0, 1.0, 0.0])))
        lat = lat if lat is not None else np.array([1.0, 0.0, 0.0])
        anchors.append((lv, c, float(np.ptp((bpts - c) @ lat)) / 2))
    if present[_VERT_C7]:
        c7 = _world(np.argwhere(vert == _VERT_C7).astype(float), aff_v)
        anchors.insert(0, ("C7", c7.mean(axis=0), anchors[0][2]))
    sacrum = vert == _VERT_SACRUM
    if sacrum.any():
        # the sacrum's top (its superior tenth) stands for its "body" next to the L5/S1 disc
        spts = _world(np.argwhere(sacrum).astype(float), aff_v)
        h = spts @ ups[-1]
        top = spts[h >= np.quantile(h, 0.9)]
        anchors.append(("sacrum", top.mean(axis=0), anchors[-1][2]))
    discs = assign_discs(disc_mask & (vert == 0), aff_v, anchors)
    out[(out == 0) & sacrum] = SACRUM_LABEL
    out[(out == 0) & posterior] = POSTERIOR_LABEL
    free = out == 0
    out[free] = discs[free]
    return out, aff_v

