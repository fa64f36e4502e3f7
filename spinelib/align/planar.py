"""Two-stage DXA <-> MRI planar alignment (paper, Figure 2; Windsor et al. 2021).

The alignment is the three-parameter rigid transform of :mod:`spinelib.transform`
(``theta_deg, tx_mm, ty_mm``: DXA frame -> MRI coronal plane ``(x, z)``), found in two
stages, both by normalised cross-correlation (NCC) computed with FFTs:

1. *Image level.* A DXA and an MRI share no intensities, but both measure how much
   tissue the AP ray crosses: the DXA ``tissue`` channel is areal soft-tissue density
   (g/cm^2, about body thickness in cm) and the MRI body mask summed along ``y`` is a
   tissue thickness in mm. The two thickness maps are correlated on a common mm grid
   over a range of rotation angles, coarse to fine; for every angle the best
   translation is the peak of the NCC map.
2. *Spine level.* Around the stage-1 result, the coronal projection of the MRI spine
   labels is matched against the DXA ``bone`` channel inside a band of about 40 mm
   around the spine line (ribs and pelvis outside the band are ignored), with a small
   search in angle and translation and a sub-pixel peak.

Both NCCs are *masked* (Padfield 2012): each image has a validity mask (its field of
view; for stage 2 the band) and every shift is normalised over the overlap only, so
that two different fields of view compare fairly.

Internal maps ("world maps") are 2D arrays indexed ``[iz, ix]`` with ``z`` and ``x``
*increasing* with the index: pixel ``(iz, ix)`` is at world ``x = x0 + ix * s``,
``z = z0 + iz * s``.

References
----------
Padfield, D. "Masked object registration in the Fourier domain." IEEE TIP 21 (2012).
Windsor, R., Jamaludin, A., Kadir, T., Zisserman, A. "Self-supervised multi-modal
alignment for whole body medical imaging." MICCAI 2021.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..spine import COLUMN_LABELS, DISC_LABEL, LUMBOSACRAL_DISC_LABEL
from ..transform import PlanarTransform, _check_spacing, coronal_affine

__all__ = [
    "AlignmentResult",
    "WorldMap",
    "SPINE_BONE_LABELS",
    "mri_coronal_thickness",
    "mri_spine_projection",
    "dxa_thickness",
    "dxa_on_grid",
    "ncc_fft",
    "search_rotation",
    "refine_spine",
    "search_near",
    "Hit",
    "align_pair",
]

#: Labels whose coronal projection is matched against the DXA bone channel in stage 2:
#: every bony spine label (bodies, sacrum, posterior elements); discs hold no mineral.
SPINE_BONE_LABELS: tuple[int, ...] = tuple(
    sorted(set(COLUMN_LABELS) - {DISC_LABEL} | {18, 22})
)

# Fixed settings of the search (the tunable ones are profile parameters).
_BODY_THRESHOLD = 0.15  # fraction of the robust maximum of fat + water inside the body
_COARSE_ANGLE_STEP = 2.0  # degrees, stage 1 coarse level (at twice the pixel size)
_FINE_ANGLE_STEP = 0.5  # degrees, stage 1 fine level and stage 2
_FINE_ANGLE_HALF = 1.5  # stage 1 fine level covers the coarse best +/- this
_SPINE_ANGLE_HALF = 1.5  # stage 2 covers the stage-1 angle +/- this
_SPINE_SHIFT_MM = 16.0  # stage 2 searches translations within this of stage 1
_BAND_MM = 40.0  # half-width of the band around the spine line used in stage 2
_MIN_OVERLAP = 0.5  # stage 1: overlap at least this fraction of the smaller mask


@dataclass(frozen=True)
class AlignmentResult:
    """Outcome of :func:`align_pair`.

    Attributes
    ----------
    transform : stage-2 (final) DXA frame -> MRI ``(x, z)`` transform.
    stage1 : the image-level transform.
    score : stage-2 NCC at the final transform (in [-1, 1]).
    stage1_score : stage-1 NCC of the thickness maps at ``stage1``.
    trusted : False when the result should not be used (see ``reason``).
    reason : why the result is not trusted; empty when trusted.
    """

    transform: PlanarTransform
    stage1: PlanarTransform
    score: float
    stage1_score: float
    trusted: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly record of the result."""
        out: dict[str, Any] = {f"{k}": v for k, v in self.transform.to_dict().items()}
        out.update({f"stage1_{k}": v for k, v in self.stage1.to_dict().items()})
        out.update(
            score=float(self.score),
            stage1_score=float(self.stage1_score),
            trusted=bool(self.trusted),
            reason=self.reason,
        )
        return out


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
def _check_pixel_mm(pixel_mm: float) -> float:
    try:
        s = float(pixel_mm)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"pixel_mm must be a positive number of mm, got {pixel_mm!r}") from None
    if not np.isfinite(s) or s <= 0:
        raise InvalidArgumentError(f"pixel_mm must be a positive number of mm, got {pixel_mm!r}")
    return s


def _finite_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}D, got shape {arr.shape}")
    if min(arr.shape) < 2:
        raise ShapeError(f"{name} is too small: shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InvalidArgumentError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return arr


def _dxa_fields(dxa: Any) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    if isinstance(dxa, dict):
        get = dxa.__getitem__
    else:
        get = lambda k: getattr(dxa, k)  # noqa: E731
    try:
        bone, tissue, spacing = get("bone"), get("tissue"), get("pixel_spacing_mm")
    except (KeyError, AttributeError) as exc:
        raise InvalidArgumentError(
            f"dxa must provide bone, tissue and pixel_spacing_mm (an io.DXAImage); missing {exc}"
        ) from None
    bone = _finite_array(bone, "DXA bone", 2)
    tissue = _finite_array(tissue, "DXA tissue", 2)
    if bone.shape != tissue.shape:
        raise ShapeError(f"DXA bone {bone.shape} and tissue {tissue.shape} differ in shape")
    return bone, tissue, _check_spacing(tuple(np.asarray(spacing, dtype=float).ravel()))


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
    s = _check_pixel_mm(pixel_mm)
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
    s = _check_pixel_mm(pixel_mm)
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


# --------------------------------------------------------------------------- NCC
def _standardise(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over ``mask``; zero outside (limits FFT round-off)."""
    vals = img[mask]
    if vals.size == 0:
        return np.zeros(img.shape, np.float32)
    sd = float(vals.std())
    out = (img - float(vals.mean())) / (sd if sd > 0 else 1.0)
    return np.where(mask, out, 0.0).astype(np.float32)


class _Plan:
    """Masked NCC (Padfield 2012) of one fixed image against moving images of one shape.

    The result is indexed by the offset ``e`` pairing ``fixed[q]`` with ``moving[q + e]``:
    ``out[a, b]`` is offset ``e = (a, b) - self.origin``. With ``valid_only`` the fixed
    image must fit inside the moving one and only offsets keeping it inside are
    computed (``origin = (0, 0)``; FFTs of the moving size); otherwise every offset
    with any overlap (``origin = (Hf - 1, Wf - 1)``).
    """

    def __init__(self, fixed: np.ndarray, mask: np.ndarray, moving_shape, *, valid_only: bool = False):
        hf, wf = fixed.shape
        hm, wm = self.moving_shape = tuple(int(n) for n in moving_shape)
        if valid_only:
            if hm < hf or wm < wf:
                raise ShapeError(f"fixed {fixed.shape} does not fit in moving {self.moving_shape}")
            self.out_shape, self.origin, need = (hm - hf + 1, wm - wf + 1), (0, 0), (hm, wm)
        else:
            self.out_shape, self.origin = (hf + hm - 1, wf + wm - 1), (hf - 1, wf - 1)
            need = self.out_shape
        self.size = tuple(sfft.next_fast_len(n, real=True) for n in need)
        mask = np.asarray(mask, bool)
        f = _standardise(fixed, mask)
        m = mask.astype(np.float32)
        self.spec = np.conj(sfft.rfft2(np.stack([f, f * f, m]), s=self.size, axes=(-2, -1)))
        self.mask_sum = float(m.sum())
        # output rows/cols in the circular result (negative offsets wrap around)
        self._rows = (np.arange(self.out_shape[0]) - self.origin[0]) % self.size[0]
        self._cols = (np.arange(self.out_shape[1]) - self.origin[1]) % self.size[1]

    def ncc(self, moving: np.ndarray, mask: np.ndarray, min_overlap: float) -> np.ndarray:
        if moving.shape != self.moving_shape:
            raise ShapeError(f"moving image {moving.shape} differs from the planned {self.moving_shape}")
        mask = np.asarray(mask, bool)
        g = _standardise(moving, mask)
        gm = mask.astype(np.float32)
        G, GG, MG = sfft.rfft2(np.stack([g, g * g, gm]), s=self.size, axes=(-2, -1))
        F, FF, MF = self.spec
        prods = np.stack([MF * MG, F * MG, MF * G, FF * MG, MF * GG, F * G])
        full = sfft.irfft2(prods, s=self.size, axes=(-2, -1))
        n, sf, sg, sff, sgg, sfg = full[:, self._rows][:, :, self._cols].astype(np.float64)
        n = np.rint(n)
        need = max(min_overlap * min(self.mask_sum, float(gm.sum())), 4.0)
        ok = n >= need
        nn = np.where(ok, n, 1.0)
        varf = sff - sf * sf / nn
        varg = sgg - sg * sg / nn
        # constant over the overlap (relative to unit variance inputs): no correlation defined
        ok &= (varf > 1e-3 * nn) & (varg > 1e-3 * nn)
        out = np.full(self.out_shape, -np.inf)
        r = (sfg[ok] - sf[ok] * sg[ok] / nn[ok]) / np.sqrt(varf[ok] * varg[ok])
        out[ok] = np.clip(r, -1.0, 1.0)
        return out


def ncc_fft(
    fixed: np.ndarray, moving: np.ndarray, *, fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None, min_overlap: float = _MIN_OVERLAP,
) -> np.ndarray:
    """Masked normalised cross-correlation of two 2D images for every integer offset.

    ``out[a, b]`` is the Pearson correlation of ``fixed[q]`` and ``moving[q + e]`` over
    the ``q`` where both masks are set, for the offset ``e = (a - (Hf - 1), b - (Wf - 1))``
    (``Hf, Wf`` the fixed shape). Offsets whose overlap is smaller than ``min_overlap``
    times the smaller mask, or where either image is constant over the overlap, are
    ``-inf``. Computed with FFTs (Padfield 2012); inputs are standardised first.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(40, 30))
    >>> c = ncc_fft(f, f[5:25, 3:20], min_overlap=0.9)
    >>> a, b = np.unravel_index(np.argmax(c), c.shape)
    >>> int(a - 39), int(b - 29), round(float(c[a, b]), 4)
    (-5, -3, 1.0)
    """
    f = np.asarray(fixed, dtype=np.float64)
    g = np.asarray(moving, dtype=np.float64)
    if f.ndim != 2 or g.ndim != 2:
        raise ShapeError(f"ncc_fft needs 2D images, got {f.shape} and {g.shape}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
        raise NonFiniteError("ncc_fft inputs hold NaN or infinite values")
    fm = np.ones(f.shape, bool) if fixed_mask is None else np.asarray(fixed_mask, bool)
    gm = np.ones(g.shape, bool) if moving_mask is None else np.asarray(moving_mask, bool)
    if fm.shape != f.shape or gm.shape != g.shape:
        raise ShapeError("masks must have the shapes of their images")
    if not 0 < min_overlap <= 1:
        raise InvalidArgumentError(f"min_overlap must be in (0, 1], got {min_overlap}")
    return _Plan(f, fm, g.shape).ncc(g, gm, min_overlap)


def _subpixel_peak(c: np.ndarray, window: np.ndarray | None = None) -> tuple[float, float, float]:
    """Peak ``(a, b, value)`` of an NCC map with a parabolic sub-pixel correction."""
    cc = c if window is None else np.where(window, c, -np.inf)
    a, b = np.unravel_index(int(np.argmax(cc)), c.shape)
    best = float(cc[a, b])
    if not np.isfinite(best):
        return float(a), float(b), -np.inf

    def vertex(lo: float, mid: float, hi: float) -> float:
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return 0.0
        den = lo - 2 * mid + hi
        return float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0

    da = vertex(c[a - 1, b], best, c[a + 1, b]) if 0 < a < c.shape[0] - 1 else 0.0
    db = vertex(c[a, b - 1], best, c[a, b + 1]) if 0 < b < c.shape[1] - 1 else 0.0
    return a + da, b + db, best


def _parabolic_angle(angles: np.ndarray, scores: np.ndarray) -> float:
    i = int(np.argmax(scores))
    if 0 < i < len(angles) - 1 and np.all(np.isfinite(scores[i - 1: i + 2])):
        lo, mid, hi = scores[i - 1: i + 2]
        den = lo - 2 * mid + hi
        if den < 0:
            step = angles[i + 1] - angles[i]
            return float(angles[i] + np.clip(0.5 * (lo - hi) / den, -0.5, 0.5) * step)
    return float(angles[i])


# --------------------------------------------------------------------------- searches
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
    *, min_overlap: float = _MIN_OVERLAP,
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
    start: PlanarTransform, *, radius_mm: float, min_overlap: float = _MIN_OVERLAP,
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


def _mri_resample(m: WorldMap, pixel_mm: float) -> WorldMap:
    """Resample a world map to a coarser isotropic grid (anti-aliased)."""
    f = pixel_mm / m.pixel_mm
    src = ndi.gaussian_filter(m.data, 0.4 * f, mode="nearest") if f > 1.1 else m.data
    nz = int(np.floor((m.shape[0] - 1) / f)) + 1
    nx = int(np.floor((m.shape[1] - 1) / f)) + 1
    zz, xx = np.meshgrid(np.arange(nz) * f, np.arange(nx) * f, indexing="ij")
    data = ndi.map_coordinates(src, [zz, xx], order=1, mode="nearest", prefilter=False)
    return WorldMap(data.astype(np.float32), m.x0, m.z0, pixel_mm)


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


# --------------------------------------------------------------------------- the pair
def _spine_pixel_mm(pixel_mm: float, spacing: tuple[float, float]) -> float:
    """Stage 2 works at half the stage-1 pixel, but never finer than the DXA pixel."""
    return max(0.5 * pixel_mm, min(spacing))


def _default(name: str) -> Any:
    from ..profiles import PROFILES

    return PROFILES["default"][name]


def align_pair(
    dxa: Any, fat: np.ndarray, water: np.ndarray, seg: np.ndarray, affine: np.ndarray, *,
    pixel_mm: float | None = None, angle_range_deg: float | None = None,
    min_score: float | None = None, min_stage1_score: float | None = None,
) -> AlignmentResult:
    """Align one DXA to its MRI: image level, then spine level.

    Parameters
    ----------
    dxa : an :class:`spinelib.io.DXAImage` or anything with ``bone``, ``tissue``
        (H, W) and ``pixel_spacing_mm`` (row, col) (attributes or dict keys).
    fat, water : (I, J, K) canonical RAS Dixon volumes.
    seg : (I, J, K) label volume (``spinelib.spine`` labels).
    affine : (4, 4) canonical RAS affine shared by the three volumes.
    pixel_mm : working grid (profile ``align_pixel_mm``; ``default`` profile if None).
    angle_range_deg : stage 1 searches +/- this (``align_angle_range_deg``).
    min_score : a stage-2 NCC below this is not trusted (``align_min_score``).
    min_stage1_score : a stage-1 NCC below this is not trusted
        (``align_min_stage1_score``). The two scores fail in different ways: two
        people with alike spines still differ in body shape (stage 1), two alike
        bodies in their spines (stage 2); a pair of two different subjects is caught
        by one or the other.

    Returns
    -------
    AlignmentResult. A pair that can be processed but whose result is doubtful (low
    score, angle at the search bound, spine not found, blank image) comes back with
    ``trusted=False`` and the reason; it is not an exception.

    Raises
    ------
    InvalidArgumentError : non-positive ``pixel_mm``, negative angle range, bad min_score,
        non-canonical affine.
    ShapeError : wrong dimensions or mismatched shapes.
    NonFiniteError : NaN or infinite values in any image.
    EmptySegmentationError : no spine-column label in ``seg``.
    """
    s = _check_pixel_mm(_default("align_pixel_mm") if pixel_mm is None else pixel_mm)
    rng = float(_default("align_angle_range_deg") if angle_range_deg is None else angle_range_deg)
    ms = float(_default("align_min_score") if min_score is None else min_score)
    ms1 = float(_default("align_min_stage1_score") if min_stage1_score is None else min_stage1_score)
    if not np.isfinite(rng) or not 0 <= rng <= 45:
        raise InvalidArgumentError(f"angle_range_deg must be in [0, 45], got {angle_range_deg!r}")
    for name, val in (("min_score", ms), ("min_stage1_score", ms1)):
        if not np.isfinite(val) or not -1 <= val <= 1:
            raise InvalidArgumentError(f"{name} must be an NCC value in [-1, 1], got {val!r}")
    bone, tissue, spacing = _dxa_fields(dxa)
    affine = np.asarray(affine, dtype=float)
    coronal_affine(affine)  # validates shape and canonical form
    fat = _finite_array(fat, "MRI fat", 3)
    water = _finite_array(water, "MRI water", 3)
    seg = np.asarray(seg)
    if not (fat.shape == water.shape == seg.shape):
        raise ShapeError(f"MRI fat {fat.shape}, water {water.shape} and seg {seg.shape} differ in shape")
    spine, column = mri_spine_projection(seg, affine, pixel_mm=_spine_pixel_mm(s, spacing))
    thick = mri_coronal_thickness(fat, water, affine, pixel_mm=s)
    tissue_mm = dxa_thickness(tissue)

    centre = PlanarTransform(0.0, thick.x0 + (thick.shape[1] - 1) * s / 2, thick.z0 + (thick.shape[0] - 1) * s / 2)
    if float(np.ptp(tissue_mm)) <= 0 or float(np.ptp(thick.data)) <= 0:
        which = "DXA tissue channel" if float(np.ptp(tissue_mm)) <= 0 else "MRI body mask"
        return AlignmentResult(centre, centre, 0.0, 0.0, False, f"{which} is blank")

    hit1, at_bound = _stage1(thick, tissue_mm, spacing, rng)
    if not np.isfinite(hit1.score):
        return AlignmentResult(centre, centre, 0.0, 0.0, False, "stage 1 found no admissible overlap")
    t1 = hit1.transform
    reasons = []
    if at_bound:
        reasons.append(f"stage-1 angle {hit1.theta_deg:.2f} deg at the search bound +/-{rng:g}")
    if hit1.score < ms1:
        reasons.append(f"stage-1 score {hit1.score:.3f} below align_min_stage1_score {ms1:g}")
    if float(np.ptp(bone)) <= 0:
        return AlignmentResult(t1, t1, 0.0, hit1.score, False, "; ".join(reasons + ["DXA bone channel is blank"]))
    hit2, why = refine_spine(spine, column, bone, spacing, t1)
    if not np.isfinite(hit2.score):
        reasons.append(why or "spine not found")
        return AlignmentResult(t1, t1, 0.0, hit1.score, False, "; ".join(reasons))
    if why:
        reasons.append(why)
    if hit2.score < ms:
        reasons.append(f"stage-2 score {hit2.score:.3f} below align_min_score {ms:g}")
    return AlignmentResult(hit2.transform, t1, hit2.score, hit1.score, not reasons, "; ".join(reasons))
