"""The vertebral body of a whole-vertebra mask (:func:`split_vertebra`).

TotalSegmentator's ``vertebrae_mr`` labels whole vertebrae; spinelib's convention labels the
body apart from the posterior elements. The body is the part of the vertebra anterior to its
posterior wall, and the posterior wall is the anterior edge of the vertebral canal. Per
vertebra, in world mm:

1. *Core*: the largest connected component of the vertebra's morphological opening by a
   ball of radius ``opening_radius_mm`` (:data:`OPENING_RADIUS_MM`, 5 mm). Pedicles, laminae
   and processes are thinner than the ball and vanish; the body (over 15 mm in every
   direction) stays.
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
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import DTypeError, EmptySegmentationError, InvalidArgumentError, ShapeError
from .labelgrid import box_affine, largest_component, opened_core, padded_box, to_world, unit, voxel_sizes

__all__ = ["OPENING_RADIUS_MM", "split_vertebra"]

#: Radius of the ball whose opening strips a vertebra's posterior elements (step 1 of the rule):
#: thicker than pedicles, laminae and processes (about 5-10 mm across), thinner than a body.
OPENING_RADIUS_MM = 5.0


def _check_split_args(vertebra, affine, superior, cord, opening_radius_mm, band_fraction, gap_fraction):
    """(bool mask, (4, 4) affine, unit superior axis, bool cord mask or None), or the error of a bad argument."""
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
    if u.shape != (3,) or not np.all(np.isfinite(u)) or unit(u) is None:
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
    return v, a, unit(u), c


def _cord_at_height(cord: np.ndarray | None, affine: np.ndarray, core_pts: np.ndarray, c_core: np.ndarray,
                    u: np.ndarray) -> np.ndarray:
    """(M, 3) world mm of the cord voxels within the core's extent along ``u`` (M = 0 without a cord)."""
    if cord is None:
        return np.zeros((0, 3))
    cpts = to_world(np.argwhere(cord).astype(float), affine)
    h = (core_pts - c_core) @ u
    hc = (cpts - c_core) @ u
    return cpts[(hc >= h.min()) & (hc <= h.max())]


def _anterior_axis(u: np.ndarray, c_core: np.ndarray, near: np.ndarray, sub: np.ndarray, core: np.ndarray,
                   sub_aff: np.ndarray) -> np.ndarray:
    """Unit anterior axis orthogonal to ``u``: from the cord, else the thin parts, else the scanner's +y (step 2)."""
    anterior = None
    if len(near):
        anterior = c_core - near.mean(axis=0)
    if anterior is None:
        thin = sub & ~core
        if thin.sum() >= 0.05 * sub.sum():
            anterior = c_core - to_world(np.argwhere(thin).astype(float), sub_aff).mean(axis=0)
    for cand in (anterior, np.array([0.0, 1.0, 0.0])):  # RAS+: +y is anterior
        if cand is None:
            continue
        a = unit(cand - (cand @ u) * u)
        if a is not None:
            return a
    # the column runs along y: no meaningful anterior axis
    raise InvalidArgumentError(f"superior axis {u.tolist()} leaves no anterior direction")


def _canal_gap(tb: np.ndarray, step: float, gap_fraction: float) -> float | None:
    """Position along ``a`` of the canal's anterior edge from the band's voxels ``tb`` (step 3), or None."""
    # bins centred on the most anterior voxel: when ``a`` runs along a grid axis, every
    # voxel lies mid-bin and the wall (a bin edge) falls half-way between voxel rows, so
    # rounding never decides which side a voxel is on
    n_bins = int(np.floor((tb.max() - tb.min()) / step + 0.5)) + 1
    edges = tb.max() + 0.5 * step - step * np.arange(n_bins + 1)[::-1]  # ascending
    edges[0] = min(edges[0], tb.min() - 0.5 * step)
    counts, _ = np.histogram(tb, bins=edges)
    thresh = gap_fraction * counts.max()
    in_body = False
    for k in range(n_bins - 1, -1, -1):  # anterior -> posterior; stray anterior voxels before
        if counts[k] > thresh:            # the body's front are not the canal
            in_body = True
        elif in_body:
            return edges[k + 1]
    return None


def _posterior_wall(t: np.ndarray, core_t: np.ndarray, in_band: np.ndarray, core_in_band: np.ndarray,
                    step: float, gap_fraction: float, cord_front: float | None) -> float:
    """Position along ``a`` (mm from the core centroid) of the body's posterior wall (step 3).

    ``t``, ``core_t``: positions along ``a`` of the vertebra's and the core's voxels;
    ``in_band``, ``core_in_band``: which lie in the mid-sagittal band; ``cord_front``: the
    cord's most anterior position along ``a`` (None without cord voxels at this height).
    """
    wall = _canal_gap(t[in_band], step, gap_fraction)
    if wall is None:
        back = core_t[core_in_band] if core_in_band.any() else t
        wall = float(back.min()) - 0.5 * step
    if cord_front is not None:
        # the cord lies in the canal: the wall is never behind the cord's anterior edge
        # (this matters when coarse voxels fill the canal between the pedicles)
        wall = max(wall, cord_front + 0.5 * step)
    return wall


def _body_component(sub: np.ndarray, core: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Bool mask of the voxels of ``sub`` flagged ``keep`` (in ``argwhere`` order), the component holding the core."""
    body_sub = np.zeros_like(sub)
    ijk = np.argwhere(sub)
    body_sub[tuple(ijk[keep].T)] = True
    lab, n = ndi.label(body_sub)
    if n > 1:
        hits = np.bincount(lab[core & body_sub], minlength=n + 1)
        hits[0] = 0
        body_sub = lab == int(np.argmax(hits)) if hits.any() else largest_component(body_sub)
    return body_sub


def split_vertebra(vertebra: np.ndarray, affine: np.ndarray, superior: np.ndarray, *, cord: np.ndarray | None = None,
                   opening_radius_mm: float = OPENING_RADIUS_MM, band_fraction: float = 0.1,
                   gap_fraction: float = 0.1) -> np.ndarray:
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
    vox = voxel_sizes(aff)
    box, lo = padded_box(np.array([i.min() for i in idx]), np.array([i.max() for i in idx]) + 1,
                         np.ceil(opening_radius_mm / vox).astype(int) + 2, v.shape)
    sub, sub_aff = v[box], box_affine(aff, lo)

    core = opened_core(sub, vox, float(opening_radius_mm))
    pts = to_world(np.argwhere(sub).astype(float), sub_aff)
    core_pts = to_world(np.argwhere(core).astype(float), sub_aff)
    c_core = core_pts.mean(axis=0)
    near = _cord_at_height(cord_m, aff, core_pts, c_core, u)
    a = _anterior_axis(u, c_core, near, sub, core, sub_aff)
    lat = np.cross(u, a)

    t = (pts - c_core) @ a
    half_band = max(band_fraction * np.ptp((core_pts - c_core) @ lat), 0.5 * float(vox.min()))
    # bin width: the largest step along ``a`` between neighbouring voxels, so that a bin of
    # a solid part is never empty by sampling alone
    step = max(float(np.max(np.abs(aff[:3, :3].T @ a))), 1e-6)
    wall = _posterior_wall(t, (core_pts - c_core) @ a, np.abs((pts - c_core) @ lat) <= half_band,
                           np.abs((core_pts - c_core) @ lat) <= half_band, step, gap_fraction,
                           float(((near - c_core) @ a).max()) if len(near) else None)
    out = np.zeros(v.shape, dtype=bool)
    out[box] = _body_component(sub, core, t >= wall)
    return out
