"""Modality-shared features of the alignment, as maps on the MRI coronal plane.

A DXA and an MRI share no intensities, but both measure how much tissue the AP ray
crosses (thickness maps), and both show the bony spine (bone channel vs projected
spine labels). Maps ("world maps") are 2D arrays indexed ``[iz, ix]`` with ``z`` and
``x`` *increasing* with the index: pixel ``(iz, ix)`` is at world
``x = x0 + ix * s, z = z0 + iz * s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import DTypeError, EmptySegmentationError, NonFiniteError, ShapeError
from ..spine import COLUMN_LABELS, DISC_LABEL, LUMBOSACRAL_DISC_LABEL
from ..geometry.transform import coronal_affine
from ..io.checks import check_positive

__all__ = [
    "WorldMap",
    "SPINE_BONE_LABELS",
    "mri_coronal_thickness",
    "mri_spine_projection",
    "dxa_thickness",
    "dxa_on_grid",
]

#: Labels whose coronal projection is matched against the DXA bone channel in stage 2:
#: every bony spine label (bodies, sacrum, posterior elements); discs hold no mineral.
SPINE_BONE_LABELS: tuple[int, ...] = tuple(
    sorted(set(COLUMN_LABELS) - {DISC_LABEL} | {18, 22})
)

#: Tissue is where fat + water exceeds this fraction of its robust maximum.
_BODY_THRESHOLD = 0.15


@dataclass(frozen=True)
class WorldMap:
    """A 2D map on an isotropic grid of the MRI coronal plane.

    ``data[iz, ix]`` lies at world ``(x0 + ix * pixel_mm, z0 + iz * pixel_mm)``;
    ``valid`` marks pixels inside the source's field of view (``None``: all valid).
    """

    data: np.ndarray
    x0: float
    z0: float
    pixel_mm: float
    valid: np.ndarray | None = field(default=None)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def world_xz(self, iz: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x0 + np.asarray(ix) * self.pixel_mm, self.z0 + np.asarray(iz) * self.pixel_mm


# --------------------------------------------------------------------------- validation
def _finite_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}D, got shape {arr.shape}")
    if min(arr.shape) < 2:
        raise ShapeError(f"{name} is too small: shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DTypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return arr


# --------------------------------------------------------------------------- features
def _mri_projection_map(proj_ik: np.ndarray, affine: np.ndarray, pixel_mm: float) -> WorldMap:
    """Resample a coronal projection indexed ``[i, k]`` onto an isotropic world grid."""
    m = coronal_affine(affine)
    sx, sz, ox, oz = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    ni, nk = proj_ik.shape
    nx = int(np.floor((ni - 1) * sx / pixel_mm)) + 1
    nz = int(np.floor((nk - 1) * sz / pixel_mm)) + 1
    src = proj_ik
    sig = (0.4 * pixel_mm / sx, 0.4 * pixel_mm / sz)  # anti-alias when shrinking
    if max(sig) > 0.45:
        src = ndi.gaussian_filter(src, [s if s > 0.45 else 0 for s in sig], mode="nearest")
    ii = (np.arange(nx) * pixel_mm) / sx
    kk = (np.arange(nz) * pixel_mm) / sz
    kg, ig = np.meshgrid(kk, ii, indexing="ij")  # [iz, ix]
    data = ndi.map_coordinates(src, [ig, kg], order=1, mode="nearest", prefilter=False)
    return WorldMap(data.astype(np.float32), float(ox), float(oz), pixel_mm)


def mri_coronal_thickness(
    fat: np.ndarray, water: np.ndarray, affine: np.ndarray, *, pixel_mm: float,
    threshold: float = _BODY_THRESHOLD,
) -> WorldMap:
    """Tissue thickness along AP (mm) of an MRI, as a coronal world map.

    Tissue is where the Dixon signal ``fat + water`` exceeds ``threshold`` times its
    robust maximum (99.5th percentile): air outside the body and inside the lungs is
    dark in both channels, as it is transparent to X-rays.

    Parameters
    ----------
    fat, water : (I, J, K) canonical RAS volumes.
    affine : (4, 4) canonical affine (diagonal, positive).
    pixel_mm : spacing of the output grid.

    Returns
    -------
    WorldMap of shape about ``(K * sz / pixel_mm, I * sx / pixel_mm)``, in mm.
    """
    s = check_positive(pixel_mm, "pixel_mm")
    fat = _finite_array(fat, "MRI fat", 3)
    water = _finite_array(water, "MRI water", 3)
    if fat.shape != water.shape:
        raise ShapeError(f"MRI fat {fat.shape} and water {water.shape} differ in shape")
    signal = fat + water
    ref = float(np.percentile(signal[:: 2, :: 2, :: 2], 99.5))
    if ref <= 0:
        body = np.zeros(signal.shape, dtype=bool)
    else:
        body = signal > threshold * ref
    sy = float(np.asarray(affine)[1, 1])
    thick = body.sum(axis=1, dtype=np.float32) * sy
    return _mri_projection_map(thick, affine, s)


def mri_spine_projection(
    seg: np.ndarray, affine: np.ndarray, *, pixel_mm: float,
    labels: tuple[int, ...] = SPINE_BONE_LABELS,
) -> tuple[WorldMap, np.ndarray]:
    """Coronal projection (mm of bone along AP) of the spine labels of ``seg``.

    Returns
    -------
    (WorldMap of the bony spine labels, (nz, nx) float map of the column
    (bodies and discs, T1-L5) projection on the same grid).

    Raises
    ------
    EmptySegmentationError
        When ``seg`` holds no spine-column label.
    """
    s = check_positive(pixel_mm, "pixel_mm")
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ShapeError(f"seg must be 3D, got shape {seg.shape}")
    if not (np.issubdtype(seg.dtype, np.integer) or seg.dtype == bool):
        if not np.all(np.isfinite(seg)):
            raise NonFiniteError("seg holds NaN or infinite values")
        seg = np.rint(seg).astype(np.int16)
    lut = np.zeros(max(int(seg.max(initial=0)), LUMBOSACRAL_DISC_LABEL, 22) + 1, dtype=np.uint8)
    lut[list(labels)] |= 1
    lut[list(COLUMN_LABELS)] |= 2
    coded = lut[np.clip(seg, 0, lut.size - 1)]
    column = (coded & 2).astype(bool)
    if not column.any():
        raise EmptySegmentationError("seg holds no spine-column label (T1-L5 bodies or discs)")
    sy = float(np.asarray(affine)[1, 1])
    bone = (coded & 1).sum(axis=1, dtype=np.float32) * sy
    col = column.sum(axis=1, dtype=np.float32) * sy
    bone_map = _mri_projection_map(bone, affine, s)
    col_map = _mri_projection_map(col, affine, s)
    return bone_map, col_map.data


def dxa_thickness(tissue: np.ndarray) -> np.ndarray:
    """Soft-tissue thickness in mm from the DXA areal tissue density (g/cm^2).

    At a density of about 1 g/cm^3, 1 g/cm^2 is 1 cm of tissue along the ray.
    """
    return np.asarray(tissue, dtype=np.float32) * np.float32(10.0)


def _prefilter(img: np.ndarray, spacing: tuple[float, float], pixel_mm: float) -> np.ndarray:
    """Gaussian anti-alias before sampling ``img`` at ``pixel_mm`` (no-op if not shrinking)."""
    sig = [0.4 * pixel_mm / sp for sp in spacing]
    if max(sig) <= 0.45:
        return img
    return ndi.gaussian_filter(img, [s if s > 0.45 else 0.0 for s in sig], mode="constant")


def dxa_on_grid(
    img: np.ndarray, spacing: tuple[float, float], theta_deg: float,
    u0: float, v0: float, shape: tuple[int, int], pixel_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a DXA image, rotated by ``theta_deg``, on a world-aligned grid.

    Pixel ``(iz, ix)`` of the output is the point ``(u, v) = (u0 + ix*s, v0 + iz*s)``
    *relative to where the DXA frame origin lands*: with the transform
    ``(theta, tx, ty)`` it is world ``(u + tx, v + ty)``. The DXA point sampled there is
    the frame point ``R(theta)^T (u, v)``.

    Returns
    -------
    (values (nz, nx) float32, valid (nz, nx) bool: inside the DXA field of view).
    """
    nr, nc = img.shape
    sr, sc = spacing
    t = np.deg2rad(theta_deg)
    c, s_ = np.cos(t), np.sin(t)
    u = u0 + np.arange(shape[1]) * pixel_mm
    v = v0 + np.arange(shape[0]) * pixel_mm
    # frame point p = R^T (u, v): x_d = c u + s v, z_d = -s u + c v
    xd = c * u[None, :] + s_ * v[:, None]
    zd = -s_ * u[None, :] + c * v[:, None]
    col = (nc - 1) / 2.0 - xd / sc
    row = (nr - 1) / 2.0 - zd / sr
    valid = (row >= -0.5) & (row <= nr - 0.5) & (col >= -0.5) & (col <= nc - 0.5)
    vals = ndi.map_coordinates(img, [row, col], order=1, mode="constant", cval=0.0, prefilter=False)
    return vals.astype(np.float32), valid

def _mri_resample(m: WorldMap, pixel_mm: float) -> WorldMap:
    """Resample a world map to a coarser isotropic grid (anti-aliased)."""
    f = pixel_mm / m.pixel_mm
    src = ndi.gaussian_filter(m.data, 0.4 * f, mode="nearest") if f > 1.1 else m.data
    nz = int(np.floor((m.shape[0] - 1) / f)) + 1
    nx = int(np.floor((m.shape[1] - 1) / f)) + 1
    zz, xx = np.meshgrid(np.arange(nz) * f, np.arange(nx) * f, indexing="ij")
    data = ndi.map_coordinates(src, [zz, xx], order=1, mode="nearest", prefilter=False)
    return WorldMap(data.astype(np.float32), m.x0, m.z0, pixel_mm)
