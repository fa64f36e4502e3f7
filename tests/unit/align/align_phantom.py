"""A small analytic torso phantom for the alignment tests: MRI volumes and a DXA made by
projecting the same anatomy through a known planar transform.

The anatomy is analytic in world mm (RAS): an elliptic torso flat on the table, two
lungs, a (possibly curved) stack of 17 cylindrical vertebral bodies with discs, ribs and
a pelvis seen by the DXA only. MRI values are sampled on a voxel grid; DXA line integrals
along y are computed in closed form at each DXA pixel's world position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from spinelib.geometry.transform import PlanarTransform, apply2d, dxa_pixel_to_mri

TABLE_Y = -60.0


@dataclass
class Anatomy:
    width: float = 150.0  # torso semi-axis along x (mm)
    depth: float = 100.0  # torso semi-axis along y (mm)
    shoulder: float = 30.0  # extra width near the shoulders
    scoliosis_mm: float = 0.0  # lateral amplitude of the spine line
    spine_top: float = 260.0  # z of the top of T1
    height_scale: float = 1.0  # vertebral heights scale
    rib_tilt: float = 0.35

    def a(self, z):
        return self.width + self.shoulder * np.exp(-(((z - 220.0) / 90.0) ** 2))

    def b(self, z):
        return self.depth + 8.0 * np.cos(z / 160.0)

    def levels(self):
        """(top, bottom, radius) of the 17 bodies and the z extent of the column."""
        out, z = [], self.spine_top
        for k in range(17):
            h = (17.0 + 0.7 * k) * self.height_scale
            r = 12.0 + 0.6 * k
            out.append((z, z - h, r))
            z -= h + (4.5 if k < 11 else 9.0) * self.height_scale
        return out

    def spine_x(self, z):
        top, bottom = self.spine_top, self.levels()[-1][1]
        return self.scoliosis_mm * np.sin(np.pi * (top - z) / (top - bottom))

    def spine_y(self):
        return TABLE_Y + 65.0


def _torso_chord(an: Anatomy, x, z, zlim=(-330.0, 340.0)):
    a, b = an.a(z), an.b(z)
    inside = np.clip(1 - (x / a) ** 2, 0, None)
    ch = 2 * b * np.sqrt(inside)
    return np.where((z > zlim[0]) & (z < zlim[1]), ch, 0.0)


def _lung_chord(x, z):
    out = np.zeros_like(x)
    for xc in (-65.0, 65.0):
        q = 1 - ((x - xc) / 45.0) ** 2 - ((z - 150.0) / 110.0) ** 2
        out += 2 * 55.0 * np.sqrt(np.clip(q, 0, None))
    return out


def dxa_channels(an: Anatomy, x, z):
    """(bone g/cm^2, tissue g/cm^2) line integrals along y at world (x, z)."""
    tissue = (_torso_chord(an, x, z) - _lung_chord(x, z)) / 10.0
    bone = np.zeros_like(x)
    xs = an.spine_x(z)
    for top, bottom, r in an.levels():
        inb = (z <= top) & (z >= bottom)
        bone += np.where(inb, 2 * np.sqrt(np.clip(r**2 - (x - xs) ** 2, 0, None)), 0.0) * 0.03
        # posterior elements: a narrow dense bar behind each body
        bone += np.where(inb, 2 * np.sqrt(np.clip(5.0**2 - (x - xs) ** 2, 0, None)), 0.0) * 0.05
    for top, bottom, r in an.levels()[:12]:  # ribs
        zc = 0.5 * (top + bottom) - an.rib_tilt * np.abs(x - xs)
        on = (np.abs(z - zc) < 4.0) & (np.abs(x - xs) > r) & (np.abs(x) < an.a(z) - 12)
        bone += on * 0.35
    pelvis_z = an.levels()[-1][1] - 40.0
    for xc in (-80.0, 80.0):
        q = 1 - ((x - xc) / 60.0) ** 2 - ((z - pelvis_z) / 50.0) ** 2
        bone += (q > 0) * 0.6
    return bone, tissue


def make_mri(an: Anatomy, *, voxel=(4.4, 4.4, 5.0), fov=(420.0, 260.0, 600.0), z_centre=0.0, seed=0):
    """(fat, water, seg, affine) of the phantom."""
    rng = np.random.default_rng(seed)
    n = [int(round(f / v)) for f, v in zip(fov, voxel)]
    origin = np.array([-fov[0] / 2, TABLE_Y - 20.0, z_centre - fov[2] / 2])
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = origin
    x = origin[0] + np.arange(n[0]) * voxel[0]
    y = origin[1] + np.arange(n[1]) * voxel[1]
    z = origin[2] + np.arange(n[2]) * voxel[2]
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    yc = TABLE_Y + an.b(Z)
    body = ((X / an.a(Z)) ** 2 + ((Y - yc) / an.b(Z)) ** 2 <= 1) & (Y >= TABLE_Y)
    lung = np.zeros_like(body)
    for xc in (-65.0, 65.0):
        lung |= ((X - xc) / 45.0) ** 2 + ((Z - 150.0) / 110.0) ** 2 + ((Y - yc) / 55.0) ** 2 <= 1
    body &= ~lung
    shell = body & ((X / (an.a(Z) - 20)) ** 2 + ((Y - yc) / (an.b(Z) - 20)) ** 2 > 1)
    fat = np.where(shell, 0.9, np.where(body, 0.15, 0.0))
    water = np.where(shell, 0.1, np.where(body, 0.8, 0.0))
    seg = np.zeros(X.shape, np.uint8)
    xs = an.spine_x(Z)
    ys = an.spine_y()
    levels = an.levels()
    for k, (top, bottom, r) in enumerate(levels):
        inb = (Z <= top) & (Z >= bottom) & ((X - xs) ** 2 + (Y - ys) ** 2 <= r**2)
        seg[inb] = k + 1
        if k + 1 < len(levels):
            nxt = levels[k + 1][0]
            ind = (Z < bottom) & (Z > nxt) & ((X - xs) ** 2 + (Y - ys) ** 2 <= r**2)
            seg[ind] = 20
    fat = np.where(seg > 0, 0.6, fat) + rng.normal(0, 0.02, X.shape)
    water = np.where(seg > 0, 0.3, water) + rng.normal(0, 0.02, X.shape)
    return fat.astype(np.float32), water.astype(np.float32), seg, affine


def make_dxa(an: Anatomy, transform: PlanarTransform, *, shape=(320, 200), spacing=(2.2, 2.2), seed=0):
    """dict(bone, tissue, pixel_spacing_mm) of the phantom seen through ``transform``."""
    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    m = dxa_pixel_to_mri(transform, shape, spacing)
    xz = apply2d(m, np.stack([rr.ravel(), cc.ravel()], axis=1).astype(float))
    x, z = xz[:, 0].reshape(shape), xz[:, 1].reshape(shape)
    bone, tissue = dxa_channels(an, x, z)
    bone = ndi.gaussian_filter(bone, 0.8) + rng.normal(0, 0.01, shape)
    tissue = ndi.gaussian_filter(tissue, 0.8) + rng.normal(0, 0.1, shape)
    return {
        "bone": bone.astype(np.float32),
        "tissue": tissue.astype(np.float32),
        "pixel_spacing_mm": np.array(spacing),
    }


def column_centres_xz(an: Anatomy) -> np.ndarray:
    """(17, 2) world (x, z) centres of the vertebral bodies."""
    zs = np.array([0.5 * (t + b) for t, b, _ in an.levels()])
    return np.stack([an.spine_x(zs), zs], axis=1)
