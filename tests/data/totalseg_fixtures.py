"""TotalSegmentator-like MR outputs of a synthetic subject, with a known answer (test helper).

TotalSegmentator's ``vertebrae_mr`` labels each *whole* vertebra (body and posterior
elements), ``total_mr`` labels all vertebrae as one class and all discs as another. A
synthetic subject's ``seg.nii.gz`` (labels of :mod:`spinelib.spine`) has per-vertebra
bodies but one label (22) for every vertebra's posterior elements, so this helper
re-rasterises each vertebra's posterior primitives (the generator's own, from
``draw_subject_geometry``) to tell which vertebra a posterior voxel belongs to. The
spinal cord is the generator's canal, narrowed to 60 % (a cord is thinner than its canal).

Imported by path from the tests (``tests`` is not a package).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from spinelib.spine import (
    DISC_LABEL,
    LUMBOSACRAL_DISC_LABEL,
    N_VERTEBRAE,
    POSTERIOR_LABEL,
    SACRUM_LABEL,
)
from spinelib.synth.parts import vertebra_primitives
from spinelib.synth.mri import rasterise_labels
from spinelib.synth.subject import draw_subject_geometry
from spinelib.synth.config import SynthConfig

#: TotalSegmentator ``vertebrae_mr`` label of our body label ``i`` (T1 = 1 -> 18, L5 = 17 -> 2).
TS_VERTEBRA = {i: 19 - i for i in range(1, N_VERTEBRAE + 1)}
TS_SACRUM = 1
TS_C7 = 19
TOTAL_SACRUM, TOTAL_VERTEBRAE, TOTAL_DISCS, TOTAL_CORD = 18, 19, 20, 21
CORD_FRACTION = 0.6


def totalseg_arrays(seg: np.ndarray, affine: np.ndarray, index: int, params: dict
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(vertebrae_mr, total_mr)`` uint8 label volumes on the subject's own MRI grid.

    ``seg`` and ``affine`` are the subject's (``make_subject(index, params)``); the grid
    must be the generator's canonical one (diagonal affine).
    """
    seg = np.asarray(seg)
    g = draw_subject_geometry(index, SynthConfig.from_profile(params))
    spine, shape = g["spine_mri"], g["shape"]
    posts, canals = [], []
    for i in range(N_VERTEBRAE):
        p, cn, _ = vertebra_primitives(i, spine, shape)
        posts += [replace(q, label=i + 1, paint_label=True) for q in p]
        canals += cn
    owner = rasterise_labels(posts, affine, seg.shape)
    cords = [replace(c, semi=c.semi * np.array([CORD_FRACTION, CORD_FRACTION, 1.0]), label=1, paint_label=True)
             for c in canals]
    cord = rasterise_labels(cords, affine, seg.shape) > 0

    post = seg == POSTERIOR_LABEL
    # posterior voxels the re-painting missed (painting order, partial volume) take the
    # nearest painted owner
    if np.any(post & (owner == 0)) and np.any(owner > 0):
        idx = ndi.distance_transform_edt(owner == 0, return_distances=False, return_indices=True)
        nearest = owner[tuple(idx)]
        owner = np.where(owner > 0, owner, nearest)
    vert = np.zeros(seg.shape, dtype=np.uint8)
    for ours, ts in TS_VERTEBRA.items():
        vert[seg == ours] = ts
        vert[post & (owner == ours)] = ts
    vert[seg == SACRUM_LABEL] = TS_SACRUM

    total = np.zeros(seg.shape, dtype=np.uint8)
    total[(seg >= 1) & (seg <= N_VERTEBRAE) | post] = TOTAL_VERTEBRAE
    total[seg == SACRUM_LABEL] = TOTAL_SACRUM
    total[np.isin(seg, (DISC_LABEL, LUMBOSACRAL_DISC_LABEL))] = TOTAL_DISCS
    total[cord & (seg == 0)] = TOTAL_CORD
    return vert, total


def resample_labels(labels: np.ndarray, affine: np.ndarray, target_shape: tuple[int, int, int],
                    target_affine: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of a label volume onto another grid (0 outside)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in target_shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ np.asarray(target_affine)[:3, :3].T + np.asarray(target_affine)[:3, 3]
    inv = np.linalg.inv(affine)
    src = np.rint(world @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    ok = np.all((src >= 0) & (src < np.array(labels.shape)), axis=1)
    out = np.zeros(len(ijk), dtype=labels.dtype)
    out[ok] = labels[tuple(src[ok].T)]
    return out.reshape(target_shape)


def totalseg_images(seg: np.ndarray, affine: np.ndarray, index: int, params: dict, *,
                    target: tuple[tuple[int, int, int], np.ndarray] | None = None
                    ) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """``(vertebrae_mr, total_mr)`` NIfTI images, on ``target = (shape, affine)`` if given
    (TotalSegmentator writes its output on the grid of the MRI it was given)."""
    vert, total = totalseg_arrays(seg, affine, index, params)
    aff = np.asarray(affine, dtype=float)
    if target is not None:
        shape_t, aff_t = tuple(int(n) for n in target[0]), np.asarray(target[1], dtype=float)
        vert = resample_labels(vert, aff, shape_t, aff_t)
        total = resample_labels(total, aff, shape_t, aff_t)
        aff = aff_t
    return nib.Nifti1Image(vert, aff), nib.Nifti1Image(total, aff)


def write_totalseg_outputs(seg_dir: str | Path, eid: str, seg: np.ndarray, affine: np.ndarray, index: int,
                           params: dict, *, target: tuple | None = None) -> tuple[Path, Path]:
    """Write ``seg_dir/<eid>/vertebrae_mr.nii.gz`` and ``total_mr.nii.gz`` as TotalSegmentator
    (``--ml``) would; returns both paths."""
    out = Path(seg_dir) / str(eid)
    out.mkdir(parents=True, exist_ok=True)
    vimg, timg = totalseg_images(seg, affine, index, params, target=target)
    pv, pt = out / "vertebrae_mr.nii.gz", out / "total_mr.nii.gz"
    nib.save(vimg, str(pv))
    nib.save(timg, str(pt))
    return pv, pt
