"""Masked normalised cross-correlation by FFT (Padfield 2012) and sub-pixel peaks.

References
----------
Padfield, D. "Masked object registration in the Fourier domain." IEEE TIP 21 (2012).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError

__all__ = ["ncc_fft", "MIN_OVERLAP"]

#: Default minimum overlap of :func:`ncc_fft`, as a fraction of the smaller mask.
MIN_OVERLAP = 0.5


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
    moving_mask: np.ndarray | None = None, min_overlap: float = MIN_OVERLAP,
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
