"""The searches of both stages: rotation angles, translations at the NCC peak.

Stage 1 (:func:`search_rotation`, then :func:`search_near`) correlates thickness maps
over a range of angles, coarse to fine; stage 2 (:func:`refine_spine`) matches the
MRI spine projection to the DXA bone channel in a band around the spine line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..geometry.transform import PlanarTransform
from .features import WorldMap, _mri_resample, _prefilter, dxa_on_grid
from .ncc import MIN_OVERLAP, _parabolic_angle, _Plan, _subpixel_peak

__all__ = ["Hit", "search_rotation", "search_near", "refine_spine"]

_COARSE_ANGLE_STEP = 2.0  # degrees, stage 1 coarse level (at twice the pixel size)
_FINE_ANGLE_STEP = 0.5  # degrees, stage 1 fine level and stage 2
_FINE_ANGLE_HALF = 1.5  # stage 1 fine level covers the coarse best +/- this
_SPINE_ANGLE_HALF = 1.5  # stage 2 covers the stage-1 angle +/- this
_SPINE_SHIFT_MM = 16.0  # stage 2 searches translations within this of stage 1
_BAND_MM = 40.0  # half-width of the band around the spine line used in stage 2


@dataclass(frozen=True)
class Hit:
    """One candidate of a search: a transform and its NCC score."""

    theta_deg: float
    tx_mm: float
    ty_mm: float
    score: float

    @property
    def transform(self) -> PlanarTransform:
        return PlanarTransform(self.theta_deg, self.tx_mm, self.ty_mm)


def _moving_grid(shape: tuple[int, int], spacing: tuple[float, float], max_deg: float, s: float):
    """Origin and shape of a world-aligned grid holding the DXA rotated by up to ``max_deg``."""
    h = (shape[0] - 1) * spacing[0] / 2.0
    w = (shape[1] - 1) * spacing[1] / 2.0
    t = np.deg2rad(min(abs(max_deg), 90.0))
    hu = w * np.cos(t) + h * np.sin(t)
    hv = h * np.cos(t) + w * np.sin(t)
    nx, nz = int(np.ceil(2 * hu / s)) + 1, int(np.ceil(2 * hv / s)) + 1
    return -(nx - 1) * s / 2.0, -(nz - 1) * s / 2.0, (nz, nx)


def _offset_to_t(fixed: WorldMap, u0: float, v0: float, e_row: float, e_col: float):
    """Translation at which fixed pixel q meets moving pixel q + e (moving origin u0, v0)."""
    s = fixed.pixel_mm
    return fixed.x0 - u0 - e_col * s, fixed.z0 - v0 - e_row * s


def search_rotation(
    fixed: WorldMap, dxa_img: np.ndarray, dxa_spacing: tuple[float, float], angles_deg,
    *, min_overlap: float = MIN_OVERLAP,
) -> list[Hit]:
    """For each angle, the translation maximising the masked NCC of the rotated DXA
    with ``fixed`` over every shift (exhaustive).

    Parameters
    ----------
    fixed : the MRI-side world map (its ``valid`` mask, if any, is used).
    dxa_img : (H, W) DXA-side image (already anti-aliased for ``fixed.pixel_mm``).
    dxa_spacing : (row, col) DXA spacing in mm.
    angles_deg : the rotation angles to try.

    Returns
    -------
    One :class:`Hit` per angle (score ``-inf`` when no shift is admissible).
    """
    angles = np.atleast_1d(np.asarray(angles_deg, dtype=float))
    s = fixed.pixel_mm
    u0, v0, mshape = _moving_grid(dxa_img.shape, dxa_spacing, float(np.max(np.abs(angles))), s)
    fmask = np.ones(fixed.shape, bool) if fixed.valid is None else fixed.valid
    plan = _Plan(fixed.data, fmask, mshape)
    hits = []
    for th in angles:
        g, gv = dxa_on_grid(dxa_img, dxa_spacing, th, u0, v0, mshape, s)
        a, b, val = _subpixel_peak(plan.ncc(g, gv, min_overlap))
        tx, ty = _offset_to_t(fixed, u0, v0, a - plan.origin[0], b - plan.origin[1])
        hits.append(Hit(float(th), float(tx), float(ty), float(val)))
    return hits


def search_near(
    fixed: WorldMap, dxa_img: np.ndarray, dxa_spacing: tuple[float, float], angles_deg,
    start: PlanarTransform, *, radius_mm: float, min_overlap: float = MIN_OVERLAP,
) -> tuple[list[Hit], list[bool]]:
    """Like :func:`search_rotation`, but only near ``start``: for each angle, the shifts
    within ``radius_mm`` of the translation that keeps the centre of ``fixed`` where
    ``start`` puts it (rotations turn about that point).

    Only the DXA around ``fixed`` is sampled and the FFTs have its size, so this is
    much cheaper than the exhaustive search.

    Returns
    -------
    (one Hit per angle, per angle whether the peak lies on the search radius).
    """
    s = fixed.pixel_mm
    fmask = np.ones(fixed.shape, bool) if fixed.valid is None else fixed.valid
    w = np.where(fmask, np.abs(fixed.data), 0.0) + fmask * 1e-6
    zc, xc = ndi.center_of_mass(w)
    centre_w = np.array(fixed.world_xz(zc, xc), dtype=float)
    centre_d = start.inverse().apply(centre_w[None])[0]
    pad = int(np.ceil(radius_mm / s)) + 2
    mshape = (fixed.shape[0] + 2 * pad, fixed.shape[1] + 2 * pad)
    plan = _Plan(fixed.data, fmask, mshape, valid_only=True)
    aa, bb = np.ogrid[: plan.out_shape[0], : plan.out_shape[1]]
    window = (aa - pad) ** 2 + (bb - pad) ** 2 <= (radius_mm / s) ** 2
    hits, edges = [], []
    for th in np.atleast_1d(np.asarray(angles_deg, dtype=float)):
        t = np.deg2rad(th)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        tpred = centre_w - rot @ centre_d
        u0 = fixed.x0 - pad * s - tpred[0]
        v0 = fixed.z0 - pad * s - tpred[1]
        g, gv = dxa_on_grid(dxa_img, dxa_spacing, th, u0, v0, mshape, s)
        a, b, val = _subpixel_peak(plan.ncc(g, gv, min_overlap), window)
        tx, ty = _offset_to_t(fixed, u0, v0, a, b)
        hits.append(Hit(float(th), float(tx), float(ty), float(val)))
        edges.append(bool(np.isfinite(val) and np.hypot(a - pad, b - pad) >= radius_mm / s - 1.0))
    return hits, edges


def _stage1(thick: WorldMap, tissue_mm: np.ndarray, spacing, angle_range: float) -> tuple[Hit, bool]:
    """Coarse-to-fine rotation search of the thickness maps; (best hit, angle at bound)."""
    s = thick.pixel_mm
    coarse_s = 2.0 * s
    n = max(int(np.ceil(angle_range / _COARSE_ANGLE_STEP)), 0)
    angles = np.linspace(-angle_range, angle_range, 2 * n + 1) if n else np.array([0.0])
    hits = search_rotation(_mri_resample(thick, coarse_s), _prefilter(tissue_mm, spacing, coarse_s), spacing, angles)
    best = max(hits, key=lambda h: h.score)
    if not np.isfinite(best.score):
        return best, False
    lo = max(best.theta_deg - _FINE_ANGLE_HALF, -angle_range)
    hi = min(best.theta_deg + _FINE_ANGLE_HALF, angle_range)
    fine = np.arange(lo, hi + 1e-9, _FINE_ANGLE_STEP) if hi > lo else np.array([lo])
    img = _prefilter(tissue_mm, spacing, s)
    hits, _ = search_near(thick, img, spacing, fine, best.transform, radius_mm=2.5 * coarse_s)
    theta = _parabolic_angle(fine, np.array([h.score for h in hits]))
    (best,), _ = search_near(thick, img, spacing, [theta], best.transform, radius_mm=2.5 * coarse_s)
    at_bound = angle_range > 0 and abs(theta) >= angle_range - 0.5 * _FINE_ANGLE_STEP
    return best, at_bound


# --------------------------------------------------------------------------- stage 2
def _spine_band(column: np.ndarray, pixel_mm: float, band_mm: float) -> np.ndarray:
    """Mask of pixels within ``band_mm`` of the spine line (rows spanned by the column)."""
    rows = np.flatnonzero(column.sum(axis=1) > 0)
    band = np.zeros(column.shape, bool)
    if rows.size == 0:
        return band
    xs = np.arange(column.shape[1])
    w = column[rows]
    centre = (w * xs).sum(axis=1) / w.sum(axis=1)
    margin = int(round(10.0 / pixel_mm))  # the line goes on a little above and below
    r_all = np.arange(max(rows[0] - margin, 0), min(rows[-1] + margin, column.shape[0] - 1) + 1)
    line = np.interp(r_all, rows, centre)
    band[r_all] = np.abs(xs[None, :] - line[:, None]) <= band_mm / pixel_mm
    return band


def refine_spine(
    spine: WorldMap, column: np.ndarray, bone: np.ndarray, dxa_spacing: tuple[float, float],
    stage1: PlanarTransform, *, band_mm: float = _BAND_MM, angle_half_deg: float = _SPINE_ANGLE_HALF,
    shift_mm: float = _SPINE_SHIFT_MM,
) -> tuple[Hit, str]:
    """Stage 2: match the MRI spine projection to the DXA bone channel near ``stage1``.

    Only a band of ``band_mm`` either side of the MRI spine line takes part, so ribs
    and pelvis away from the spine do not pull the match.

    Parameters
    ----------
    spine : world map of the MRI bony spine projection (:func:`mri_spine_projection`).
    column : the column projection on the same grid (defines the spine line).
    bone : (H, W) DXA bone channel.
    dxa_spacing : its (row, col) spacing.
    stage1 : the image-level transform.
    angle_half_deg, shift_mm : the search covers ``stage1`` +/- these.

    Returns
    -------
    (best hit, reason it is not trustworthy or "").
    """
    s = spine.pixel_mm
    band = _spine_band(column, s, band_mm)
    if not band.any():
        return Hit(stage1.theta_deg, stage1.tx_mm, stage1.ty_mm, -np.inf), "spine not found in the MRI"
    rr = np.flatnonzero(band.any(axis=1))
    cc = np.flatnonzero(band.any(axis=0))
    box = (slice(rr[0], rr[-1] + 1), slice(cc[0], cc[-1] + 1))
    fixed = WorldMap(spine.data[box], spine.x0 + cc[0] * s, spine.z0 + rr[0] * s, s, valid=band[box])
    img = _prefilter(bone, dxa_spacing, s)
    angles = stage1.theta_deg + np.arange(-angle_half_deg, angle_half_deg + 1e-9, _FINE_ANGLE_STEP)
    hits, _ = search_near(fixed, img, dxa_spacing, angles, stage1, radius_mm=shift_mm, min_overlap=0.9)
    scores = np.array([h.score for h in hits])
    if not np.any(np.isfinite(scores)):
        return hits[len(hits) // 2], "spine not found in the DXA bone channel"
    theta = _parabolic_angle(angles, scores)
    (hit,), (edge,) = search_near(fixed, img, dxa_spacing, [theta], stage1, radius_mm=shift_mm, min_overlap=0.9)
    reason = ""
    if edge:
        reason = "spine not found: stage-2 translation at the search bound"
    elif abs(theta - stage1.theta_deg) >= angle_half_deg - 0.5 * _FINE_ANGLE_STEP:
        reason = "spine not found: stage-2 angle at the search bound"
    return hit, reason
