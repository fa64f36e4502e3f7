"""Dixon-like MRI volumes and the label volume, rasterised from the analytic anatomy.

Painter's algorithm with partial volume: each primitive (in order) blends its material's
(fat, water) signal fractions into the volumes with its occupancy fraction, evaluated only
inside its bounding box; labels are painted where the occupancy exceeds one half. Then a
smooth multiplicative bias field (low-order polynomial) and Rician noise are applied and
the signals are stored as int16 (pure water = 100, noise sigma 2: a quantisation step
well below the noise, which keeps the gzip files small).

The volume is canonical RAS: ``affine = diag(vx, vy, vz, 1)`` plus the world position of
voxel (0, 0, 0); axes i -> x (patient right), j -> y (anterior), k -> z (superior).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, ShapeError
from .torso import Torso
from .primitives import Primitive, occupancy, world_aabb

__all__ = ["mri_grid", "rasterise", "rasterise_labels", "finish_mri", "SIGNAL_SCALE"]

SIGNAL_SCALE = 100.0


def mri_grid(lo: np.ndarray, hi: np.ndarray, voxel_mm) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of a canonical grid covering the world box ``[lo, hi]``."""
    v = np.asarray(voxel_mm, float)
    shape = tuple(int(n) for n in np.ceil((np.asarray(hi) - np.asarray(lo)) / v).astype(int) + 1)
    aff = np.diag([v[0], v[1], v[2], 1.0])
    aff[:3, 3] = lo
    return aff, shape


def _grid_axes(affine: np.ndarray, shape: tuple[int, int, int]):
    """World coordinates (mm) of the voxel centres along each axis, origin, voxel size."""
    v = np.diag(affine)[:3]
    o = affine[:3, 3]
    return [o[k] + v[k] * np.arange(shape[k]) for k in range(3)], o, v


def _occupancy_box(p: Primitive, axes, o: np.ndarray, inv_v: np.ndarray, shape, ramp: float):
    """``(slices, occupancy)`` of primitive ``p`` over the voxels of its bounding box, or
    ``None`` when the box misses the grid."""
    xs, ys, zs = axes
    lo, hi = world_aabb(p)
    i0 = np.maximum(np.floor((lo - o) * inv_v).astype(int), 0)
    i1 = np.minimum(np.ceil((hi - o) * inv_v).astype(int) + 1, shape)
    if np.any(i1 <= i0):
        return None
    pts = (xs[i0[0]:i1[0], None, None], ys[None, i0[1]:i1[1], None], zs[None, None, i0[2]:i1[2]])
    f = occupancy(p, pts, ramp).astype(np.float32)
    return (slice(i0[0], i1[0]), slice(i0[1], i1[1]), slice(i0[2], i1[2])), f


def rasterise_labels(prims: list[Primitive], affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The label volume (uint8, shape ``shape``) of ``prims`` alone: what :func:`rasterise`
    paints into its labels, without the signal volumes.

    Only the label-painting primitives (``paint_label``: vertebral bodies, discs, posterior
    elements, canal, sacrum) are evaluated, in order, so this is much cheaper than
    :func:`rasterise` and gives the same labels for the same primitives.

    Parameters
    ----------
    prims : primitives in painting order (MRI world mm).
    affine : (4, 4) canonical (diagonal) voxel-to-world affine, mm.
    shape : grid shape (I, J, K).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"shape must be three positive sizes, got {shape!r}")
    A = np.asarray(affine, float)
    if A.shape != (4, 4) or not np.allclose(A[:3, :3], np.diag(np.diag(A[:3, :3]))) or np.any(np.diag(A)[:3] <= 0):
        raise InvalidArgumentError("affine must be a (4, 4) canonical affine with positive voxel sizes on its diagonal")
    axes, o, v = _grid_axes(A, shape)
    inv_v, ramp = 1.0 / v, float(np.cbrt(v.prod()))
    labels = np.zeros(shape, np.uint8)
    for p in prims:
        if not p.paint_label:
            continue
        box = _occupancy_box(p, axes, o, inv_v, shape, ramp)
        if box is None:
            continue
        sl, f = box
        labels[sl][f > 0.5] = p.label
    return labels


def rasterise(prims: list[Primitive], torso: Torso, mats: dict, affine: np.ndarray,
              shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free ``(fat, water, labels)`` volumes: float32 fractions in [0, 1] and uint8."""
    v = np.diag(affine)[:3]
    o = affine[:3, 3]
    xs = o[0] + v[0] * np.arange(shape[0])
    ys = o[1] + v[1] * np.arange(shape[1])
    zs = o[2] + v[2] * np.arange(shape[2])
    ramp_xy = float(np.sqrt(v[0] * v[1]))
    # torso: outer (fat) then inner (muscle), 2D ellipses per z clipped at the table
    cx, cy, a, b, ai, bi, yclip = (v.astype(np.float32) for v in torso.at(zs))
    X = xs[:, None, None].astype(np.float32)
    Y = ys[None, :, None].astype(np.float32)

    def ellipse_occ(ax, bx, yc):
        ax = np.maximum(ax, 1e-3)[None, None, :]
        bx = np.maximum(bx, 1e-3)[None, None, :]
        qx = (X - cx[None, None, :]) / ax
        qy = (Y - cy[None, None, :]) / bx
        r = np.sqrt(qx * qx + qy * qy)
        g = np.sqrt((qx / ax) ** 2 + (qy / bx) ** 2)
        sd = (r - 1.0) * r / np.maximum(g, 1e-6)
        sd = np.maximum(sd, yc[None, None, :] - Y)
        occ = np.clip(np.float32(0.5) - sd * np.float32(1.0 / ramp_xy), 0.0, 1.0)
        return np.where((ax > 1e-2), occ, np.float32(0.0))

    f_out = ellipse_occ(a, b, np.full_like(yclip, torso.table_y))
    f_in = ellipse_occ(ai, bi, yclip)
    fat_m, mus_m = mats["fat"], mats["muscle"]
    fat = f_out * (fat_m[2] * (1 - f_in) + mus_m[2] * f_in)
    water = f_out * (fat_m[3] * (1 - f_in) + mus_m[3] * f_in)
    labels = np.zeros(shape, np.uint8)
    inv_v = 1.0 / v
    ramp = float(np.cbrt(v.prod()))
    for p in prims:
        box = _occupancy_box(p, (xs, ys, zs), o, inv_v, shape, ramp)
        if box is None:
            continue
        sl, f = box
        m = mats[p.material]
        fat[sl] += f * (m[2] - fat[sl])
        water[sl] += f * (m[3] - water[sl])
        if p.paint_label:
            lab = labels[sl]
            lab[f > 0.5] = p.label
    return fat, water, labels


def finish_mri(fat: np.ndarray, water: np.ndarray, rng: np.random.Generator, *, noise: float = 0.02
               ) -> tuple[np.ndarray, np.ndarray]:
    """Bias field, Rician noise and int16 storage (signal fraction 1 -> ``SIGNAL_SCALE``)."""
    shape = fat.shape
    # smooth multiplicative field: separable exp(quadratic in x) * exp(quadratic in y) *
    # exp(quadratic in z) (about +/- 15 % over the field of view)
    c = [float(v) for v in rng.normal(0.0, 1.0, 7)]
    parts = []
    for ax, n in enumerate(shape):
        t = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        parts.append(np.exp(np.float32(0.08 * c[ax]) * t + np.float32(0.05 * c[3 + ax]) * t * t))
    bias = parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :]
    out = []
    sig = np.float32(noise * SIGNAL_SCALE)
    # Rician magnitude noise |s + n_re + i n_im|. Two Gaussian fields serve both channels:
    # each channel's imaginary part is the other channel's real-part field rolled by an
    # odd offset, i.e. an independent draw at every voxel (halves the random draws).
    g1 = rng.standard_normal(shape, dtype=np.float32) * sig
    g2 = rng.standard_normal(shape, dtype=np.float32) * sig
    roll = (shape[0] // 3 + 1, shape[1] // 2 + 1, shape[2] // 5 + 1)
    for vol, k, n1, n2 in ((fat, 1.0, g1, np.roll(g2, roll, (0, 1, 2))),
                           (water, 1.0 + 0.03 * c[6], g2, np.roll(g1, roll, (0, 1, 2)))):
        s = vol * (bias * np.float32(SIGNAL_SCALE * k))
        mag = np.sqrt((s + n1) ** 2 + n2**2)
        out.append(np.clip(np.rint(mag), 0, 32767).astype(np.int16))
    return out[0], out[1]
