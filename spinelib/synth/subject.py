"""One synthetic subject in memory: paired DXA and Dixon MRI of the same anatomy, with truth.

``make_subject(index, config)`` is a pure function of ``(config.seed, index)`` and the
cohort's sizes (:class:`~spinelib.synth.config.SynthConfig`): its random streams come from ``numpy.random.SeedSequence([seed, index])``,
so a subject never depends on the number of workers or the order of generation.

Two sessions of the same body are simulated: the MRI session (spine as drawn) and the DXA
session (the same body after a small change of posture, ``posture_change_mm``). The DXA
image is taken in its own frame, displaced from the MRI by a random planar rigid
transform (``theta`` within +/- 6 deg, shifts of tens of mm): the true DXA -> MRI
transform is recorded in ``truth["transform"]``. The label volume of the DXA-session
anatomy (``seg_dxa``, same grid and labels as ``seg``) is kept too, so that evaluations can
build targets of the anatomy the DXA actually shows.

What the AP image carries about the sagittal shape is physics only: the projection of
tilted and axially rotated vertebrae (bodies foreshortened, endplates seen obliquely as
ellipses, pedicles off-centre). The torso's depth is drawn from the demographics, not from
the spine (``anatomy.draw_body``), and clipped only rarely (``truth["body"]``).
:mod:`spinelib.study.ap_information` measures how much of the kyphosis and lordosis the AP
image's plain summaries read, with the parts around the column drawn or left out.

Version history (``GENERATOR_VERSION``, part of every subject's signature, so a cohort
folder of another version is regenerated rather than mixed): 1, the first generator;
2, torso depth independent of the spine, individual vertebral depth/width ratio, weak
demographic dependence of kyphosis and lordosis, ``seg_dxa.nii.gz``; 3, ribs that follow
their vertebra's coronal tilt and axial rotation but not its sagittal tilt
(``parts.rib_frame``), the anatomy around the column sized by its own frame scale
(``anatomy.FRAME_SCALE_SD``) with a sternum, shoulder girdle and rib slope of the
subject's own, lungs, heart, liver and the torso's landmarks placed from the top of the
thorax and the trunk's length rather than at given vertebrae, a vertebral cortical shell of
realistic thickness (``parts.CORTICAL_SHELL_MM``) and disc heights with their realistic
spread (``shape.DISC_SUBJECT_SD``):
version 2 let a ridge on the AP image's plain summaries read the kyphosis (held-out R2
about 0.5 at the default resolution) from the rib cage swinging with the thoracic tilt
and from anatomy that measured the column's length to 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from ..spine import LEVELS
from ..geometry.transform import PlanarTransform
from .anatomy import draw_body, materials_for
from .chain import build_spine, measure_angles
from .config import SynthConfig
from .dxa import finish_dxa, project_ap, project_lateral
from .mri import finish_mri, mri_grid, rasterise, rasterise_labels
from .parts import build_primitives
from .population import draw_demographics
from .shape import draw_posture_change, draw_shape, rounded
from .supine import place_supine
from .torso import make_torso

__all__ = ["Subject", "make_subject", "subject_id", "subject_signature", "draw_subject_geometry", "dxa_shape",
           "DXA_FOV_MM"]

#: DXA field of view (rows = superior-inferior, cols = right-left) and lateral depth, mm
DXA_FOV_MM = (760.0, 500.0)
LATERAL_DEPTH_MM = 420.0
GENERATOR_VERSION = 3


def subject_id(index: int) -> str:
    """``S00000``-style id of the subject with this index in its cohort."""
    return f"S{int(index):05d}"


def subject_signature(config: SynthConfig) -> dict:
    """What a subject's ``truth.json`` records of how it was made (its ``signature``): the
    generator version and :meth:`SynthConfig.signature`. A stored subject is this subject only
    while the two signatures are equal."""
    return {"generator_version": GENERATOR_VERSION, **config.signature()}


@dataclass
class Subject:
    """Arrays and truth of one synthetic subject (the file layout is in :mod:`spinelib.io`)."""

    subject_id: str
    bone: np.ndarray
    tissue: np.ndarray
    pixel_spacing_mm: np.ndarray
    lateral_bone: np.ndarray
    lateral_tissue: np.ndarray
    lateral_pixel_spacing_mm: np.ndarray
    fat: np.ndarray
    water: np.ndarray
    seg: np.ndarray
    affine: np.ndarray
    truth: dict
    #: label volume of the DXA-session anatomy (after the posture change), grid of ``seg``
    seg_dxa: np.ndarray


def _streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    ss = np.random.SeedSequence([int(seed), int(index)])
    names = ("anatomy", "posture", "placement", "dxa_noise", "mri_noise")
    return {n: np.random.default_rng(s) for n, s in zip(names, ss.spawn(len(names)))}


def draw_subject_geometry(index: int, config: SynthConfig) -> dict:
    """Everything but the images: drawn parameters, both sessions' spines, torso, transform.

    Cheap (a few milliseconds); used by :func:`make_subject` and by cohort statistics.
    ``torso_clip_fraction`` is the fraction of the torso's checked knots whose drawn
    depth the containment rule clipped.
    """
    rs = _streams(config.seed, index)
    rng = rs["anatomy"]
    demo = draw_demographics(rng)
    shape = draw_shape(rng, demo, scoliosis_severity=config.scoliosis_severity)
    body = draw_body(rng, demo, shape)
    posture = draw_posture_change(rs["posture"], config.posture_change_mm)
    pl = rs["placement"]
    table_y = -float(pl.uniform(100.0, 140.0))
    s1_xz = (float(pl.normal(0.0, 8.0)), float(pl.normal(-230.0, 20.0)))
    spine_mri = place_supine(build_spine(shape), shape, table_y=table_y, s1_xz=s1_xz)
    spine_dxa = place_supine(build_spine(shape, posture), shape, table_y=table_y, s1_xz=s1_xz,
                             shift_mm=posture["shift_mm"])
    torso = make_torso(spine_mri, shape, body, demo)
    z_top = spine_mri["centres"][0, 2] + shape["body_height_mm"][0] / 2
    z_mid = 0.5 * (z_top + torso.z[0] + 60.0)
    theta = float(pl.uniform(-6.0, 6.0))
    tx = float(spine_mri["s1_top"][0] + pl.normal(0.0, 20.0))
    ty = float(z_mid + pl.normal(0.0, 25.0))
    return {
        "demographics": demo,
        "shape": shape,
        "body": body,
        "posture": posture,
        "table_y": table_y,
        "s1_xz": s1_xz,
        "spine_mri": spine_mri,
        "spine_dxa": spine_dxa,
        "torso": torso,
        "torso_clip_fraction": torso.clip_fraction,
        "transform": PlanarTransform(theta, tx, ty),
    }


def _centres(spine: dict) -> dict[str, list[float]]:
    """Vertebral centres T1..L5 and S1 (world mm, rounded) by level name."""
    out = {lv: rounded(spine["centres"][i], 4) for i, lv in enumerate(LEVELS)}
    out["S1"] = rounded(spine["sacrum_centres"][0], 4)
    return out


def _mri_volumes(g: dict, prims_mri: list, prims_dxa: list, mats: dict, config: SynthConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(fat, water, seg, seg_dxa, affine, grid shape) on a grid around the torso from above T1 to below the hips."""
    shape, torso = g["shape"], g["torso"]
    z_top = g["spine_mri"]["centres"][0, 2] + shape["body_height_mm"][0] / 2
    z_lo, z_hi = torso.z[0] + 80.0, z_top + 55.0
    zz = np.linspace(z_lo, z_hi, 60)
    cx, cy, a, b, *_ = torso.at(zz)
    lo = np.array([np.min(cx - a) - 12.0, torso.table_y - 10.0, z_lo])
    hi = np.array([np.max(cx + a) + 12.0, np.max(cy + b) + 12.0, z_hi])
    affine, vshape = mri_grid(lo, hi, config.mri_voxel_mm)
    fat, water, seg = rasterise(prims_mri, torso, mats, affine, vshape)
    fat_i, water_i = finish_mri(fat, water, rng)
    seg_dxa = rasterise_labels(prims_dxa, affine, vshape)
    return fat_i, water_i, seg, seg_dxa, affine, vshape


def dxa_shape(pixel_mm: float) -> tuple[int, int]:
    """(rows, cols) of the AP DXA image at ``pixel_mm`` (mm) over :data:`DXA_FOV_MM`."""
    return int(round(DXA_FOV_MM[0] / pixel_mm)), int(round(DXA_FOV_MM[1] / pixel_mm))


def _dxa_images(g: dict, prims_dxa: list, mats: dict, px: float, dshape: tuple[int, int], n_depth: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(AP bone, AP tissue, lateral bone, lateral tissue) of the DXA session, in the DXA frame, with noise."""
    torso, T = g["torso"], g["transform"]
    bone, tissue = project_ap(prims_dxa, torso, mats, T, dshape, px)
    lbone, ltissue = project_lateral(prims_dxa, torso, mats, T, dshape, px, n_depth, g["table_y"])
    bone, tissue = finish_dxa(bone, tissue, rng, px)
    lbone, ltissue = finish_dxa(lbone, ltissue, rng, px)
    return bone, tissue, lbone, ltissue


def _truth(index: int, config: SynthConfig, g: dict, mats: dict, dshape: tuple[int, int], n_depth: int,
           vshape: tuple[int, int, int]) -> dict:
    """The subject's ``truth.json``: drawn parameters, transform, centres, true angles, grids."""
    shape, torso = g["shape"], g["torso"]
    px = config.dxa_pixel_mm
    angles = measure_angles(g["spine_mri"], shape)
    angles_dxa = measure_angles(g["spine_dxa"], shape)
    return {
        "subject_id": subject_id(index),
        "seed": config.seed,
        "index": int(index),
        "generator_version": GENERATOR_VERSION,
        "profile": config.profile,
        "demographics": g["demographics"],
        "shape": {**shape, "body": g["body"], "table_y_mm": g["table_y"], "s1_xz_mm": list(g["s1_xz"]),
                  "pitch_deg": round(g["spine_mri"]["pitch_deg"], 4)},
        "body": {"torso_clip_fraction": round(torso.clip_fraction, 6),
                 "torso_knots_checked": int(np.count_nonzero(torso.checked)),
                 "torso_knots_clipped": int(np.count_nonzero(torso.clipped))},
        "dxa_session_seg": "seg_dxa.nii.gz",
        "materials": {k: list(v) for k, v in mats.items()},
        "transform": g["transform"].to_dict(),
        "table_y_mm": g["table_y"],
        "vertebra_centres_mm": _centres(g["spine_mri"]),
        "vertebra_centres_dxa_session_mm": _centres(g["spine_dxa"]),
        "angles": {k: angles[k] for k in ("cobb_deg", "kyphosis_deg", "lordosis_deg", "apex_level",
                                          "curve_type", "cobb_upper_end", "cobb_lower_end")},
        "angles_detail": {k: angles[k] for k in ("coronal_tilt_deg", "sagittal_tilt_deg", "axial_rotation_deg",
                                                 "curve_type_drawn")},
        "angles_dxa_session": {k: angles_dxa[k] for k in ("cobb_deg", "kyphosis_deg", "lordosis_deg")},
        "posture": {**g["posture"], "pitch_deg": round(g["spine_dxa"]["pitch_deg"], 4),
                    "posture_change_mm": config.posture_change_mm},
        "dxa": {"shape": list(dshape), "pixel_spacing_mm": [px, px], "lateral_shape": [dshape[0], n_depth]},
        "mri": {"shape": list(vshape), "voxel_mm": list(config.mri_voxel_mm)},
    }


def make_subject(index: int, config: SynthConfig) -> Subject:
    """Generate subject ``index`` of the cohort ``config`` describes (its seed, grids, scoliosis
    severity and posture change; :class:`~spinelib.synth.config.SynthConfig`)."""
    if not isinstance(config, SynthConfig):
        raise InvalidArgumentError(f"config must be a SynthConfig (SynthConfig.from_profile(params)), "
                                   f"got {type(config).__name__}")
    g = draw_subject_geometry(index, config)
    rs = _streams(config.seed, index)
    mats = materials_for(g["demographics"], g["body"])
    prims_mri = build_primitives(g["spine_mri"], g["shape"], g["body"], g["torso"])
    prims_dxa = build_primitives(g["spine_dxa"], g["shape"], g["body"], g["torso"])
    fat, water, seg, seg_dxa, affine, vshape = _mri_volumes(g, prims_mri, prims_dxa, mats, config, rs["mri_noise"])
    px = config.dxa_pixel_mm
    dshape, n_depth = dxa_shape(px), int(round(LATERAL_DEPTH_MM / px))
    bone, tissue, lbone, ltissue = _dxa_images(g, prims_dxa, mats, px, dshape, n_depth, rs["dxa_noise"])
    truth = _truth(index, config, g, mats, dshape, n_depth, vshape)
    return Subject(
        subject_id=subject_id(index), bone=bone, tissue=tissue, pixel_spacing_mm=np.array([px, px]),
        lateral_bone=lbone, lateral_tissue=ltissue, lateral_pixel_spacing_mm=np.array([px, px]),
        fat=fat, water=water, seg=seg, affine=affine, truth=truth, seg_dxa=seg_dxa,
    )
