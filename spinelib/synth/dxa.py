"""DXA projections of the analytic anatomy: exact line integrals, then blur, noise, quantisation.

The AP image lives in its own DXA frame (``spinelib.geometry.transform``): pixel ``(row, col)`` maps
to MRI world ``(x, z)`` through the true :class:`~spinelib.geometry.transform.PlanarTransform`;
each pixel's value is the integral along the world y axis (posterior -> anterior) of

* ``bone``: bone mineral density -> areal BMD in g/cm^2;
* ``tissue``: soft-tissue density -> areal soft-tissue density in g/cm^2,

computed exactly per primitive by ray-quadric chord lengths (and analytically for the
slab-wise elliptic torso). The lateral image uses the same physics along the DXA frame's
x_d axis (world direction ``(cos theta, 0, sin theta)``); its rows are the AP rows (same
z_d sampling) and its column ``j`` is at depth ``j * spacing`` above the table.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ..geometry.transform import PlanarTransform, dxa_pixel_to_mri
from .torso import Torso
from .primitives import Primitive, chord_mm, world_aabb

__all__ = ["project_ap", "project_lateral", "finish_dxa"]


def _weights(p: Primitive, mats: dict) -> tuple[float, float]:
    m, q = mats[p.material], mats[p.parent]
    return (m[0] - q[0]) / 10.0, (m[1] - q[1]) / 10.0  # g/cm^3 * mm -> g/cm^2


def _torso_ap(torso: Torso, x: np.ndarray, z: np.ndarray, mats: dict):
    cx, cy, a, b, ai, bi, yclip = torso.at(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(a > 0, (x - cx) / np.where(a > 0, a, 1.0), 2.0)
        ui = np.where(ai > 0, (x - cx) / np.where(ai > 0, ai, 1.0), 2.0)
    h = b * np.sqrt(np.clip(1.0 - u * u, 0.0, None))
    hi = bi * np.sqrt(np.clip(1.0 - ui * ui, 0.0, None))
    outer = np.clip(cy + h - np.maximum(cy - h, torso.table_y), 0.0, None)
    inner = np.clip(cy + hi - np.maximum(cy - hi, yclip), 0.0, None)
    fat, mus = mats["fat"][1], mats["muscle"][1]
    return (fat * (outer - inner) + mus * inner) / 10.0


def project_ap(prims: list[Primitive], torso: Torso, mats: dict, transform: PlanarTransform,
               shape: tuple[int, int], spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free AP ``(bone, tissue)`` images (float64, g/cm^2) of one session's anatomy."""
    n_r, n_c = shape
    M = dxa_pixel_to_mri(transform, shape, (spacing_mm, spacing_mm))
    Minv = np.linalg.inv(M)
    rr, cc = np.mgrid[0:n_r, 0:n_c].astype(float)
    xw = M[0, 0] * rr + M[0, 1] * cc + M[0, 2]
    zw = M[1, 0] * rr + M[1, 1] * cc + M[1, 2]
    bone = np.zeros(shape)
    tissue = _torso_ap(torso, xw, zw, mats)
    ydir = np.array([0.0, 1.0, 0.0])
    for p in prims:
        wb, wt = _weights(p, mats)
        if wb == 0.0 and wt == 0.0:
            continue
        lo, hi = world_aabb(p)
        corners = np.array([[lo[0], lo[2], 1], [lo[0], hi[2], 1], [hi[0], lo[2], 1], [hi[0], hi[2], 1]])
        pix = corners @ Minv.T
        r0 = max(int(np.floor(pix[:, 0].min())), 0)
        r1 = min(int(np.ceil(pix[:, 0].max())) + 1, n_r)
        c0 = max(int(np.floor(pix[:, 1].min())), 0)
        c1 = min(int(np.ceil(pix[:, 1].max())) + 1, n_c)
        if r0 >= r1 or c0 >= c1:
            continue
        ch = chord_mm(p, (xw[r0:r1, c0:c1], p.centre[1], zw[r0:r1, c0:c1]), ydir)
        if wb:
            bone[r0:r1, c0:c1] += wb * ch
        if wt:
            tissue[r0:r1, c0:c1] += wt * ch
    return bone, tissue


def project_lateral(prims: list[Primitive], torso: Torso, mats: dict, transform: PlanarTransform,
                    shape: tuple[int, int], spacing_mm: float, n_depth: int, table_y: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free lateral ``(bone, tissue)`` images (n_rows, n_depth) along the DXA x_d axis."""
    n_r, n_c = shape
    th = np.deg2rad(transform.theta_deg)
    direction = np.array([np.cos(th), 0.0, np.sin(th)])
    M = dxa_pixel_to_mri(transform, shape, (spacing_mm, spacing_mm))
    rows = np.arange(n_r, dtype=float)
    cmid = (n_c - 1) / 2.0
    x0 = M[0, 0] * rows + M[0, 1] * cmid + M[0, 2]  # ray through x_d = 0
    z0 = M[1, 0] * rows + M[1, 1] * cmid + M[1, 2]
    depth = np.arange(n_depth, dtype=float) * spacing_mm
    yy = table_y + depth
    Y = np.broadcast_to(yy[None, :], (n_r, n_depth))
    bone = np.zeros((n_r, n_depth))
    # torso: chord of the clipped ellipse along x at the height where the ray crosses the torso
    zc = z0 + np.tan(th) * (np.interp(z0, torso.z, torso.cx) - x0)
    cx, cy, a, b, ai, bi, yclip = (v[:, None] for v in torso.at(zc))
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(b > 0, (Y - cy) / np.where(b > 0, b, 1.0), 2.0)
        vi = np.where(bi > 0, (Y - cy) / np.where(bi > 0, bi, 1.0), 2.0)
    outer = 2 * a * np.sqrt(np.clip(1 - v * v, 0, None)) * (Y >= torso.table_y)
    inner = 2 * ai * np.sqrt(np.clip(1 - vi * vi, 0, None)) * (Y >= yclip)
    tissue = (mats["fat"][1] * (outer - inner) + mats["muscle"][1] * inner) / 10.0 / max(np.cos(th), 1e-6)
    Tinv = transform.inverse()
    for p in prims:
        wb, wt = _weights(p, mats)
        if wb == 0.0 and wt == 0.0:
            continue
        lo, hi = world_aabb(p)
        cx3 = np.array([[x, z] for x in (lo[0], hi[0]) for z in (lo[2], hi[2])])
        zd = Tinv.apply(cx3)[:, 1]
        # z_d = -(row - (n_r - 1) / 2) * spacing
        rws = (n_r - 1) / 2.0 - zd / spacing_mm
        r0 = max(int(np.floor(rws.min())), 0)
        r1 = min(int(np.ceil(rws.max())) + 1, n_r)
        j0 = max(int(np.floor((lo[1] - table_y) / spacing_mm)), 0)
        j1 = min(int(np.ceil((hi[1] - table_y) / spacing_mm)) + 1, n_depth)
        if r0 >= r1 or j0 >= j1:
            continue
        ch = chord_mm(p, (x0[r0:r1, None], yy[None, j0:j1], z0[r0:r1, None]), direction)
        if wb:
            bone[r0:r1, j0:j1] += wb * ch
        if wt:
            tissue[r0:r1, j0:j1] += wt * ch
    return bone, tissue


def finish_dxa(bone: np.ndarray, tissue: np.ndarray, rng: np.random.Generator, spacing_mm: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Detector effects: Gaussian blur (1.2 mm), signal-dependent noise, non-negativity and
    quantisation to the scanner's steps (2^-10 g/cm^2 for bone, 2^-7 for tissue)."""
    sig = 1.2 / spacing_mm
    b = gaussian_filter(bone, sig, mode="nearest")
    t = gaussian_filter(tissue, sig, mode="nearest")
    body = t > 0.5
    nb = (0.006 + 0.0004 * t) * rng.standard_normal(b.shape) * body
    nt = (0.04 + 0.006 * t) * rng.standard_normal(t.shape) * body
    b = np.clip(b + nb, 0.0, None)
    t = np.clip(t + nt, 0.0, None)
    b = np.round(b * 1024.0) / 1024.0
    t = np.round(t * 128.0) / 128.0
    return b.astype(np.float32), t.astype(np.float32)
