"""Intervertebral discs labelled by the gap they fill (:func:`assign_discs`).

TotalSegmentator's ``total_mr`` gives all discs as one label. Each connected component goes
to the gap between the two consecutive vertebrae (C7, T1 .. L5, sacrum; by their body
centroids, the sacrum's top tenth standing for its body) whose connecting segment its
centroid projects inside of and lies nearest to; components projecting outside every
segment, or farther from it than the larger body's half-width plus 10 mm, are dropped.
Discs between two of T1..L5 get :data:`spinelib.spine.DISC_LABEL`, L5/S1
:data:`spinelib.spine.LUMBOSACRAL_DISC_LABEL`; discs above T1 are outside the convention.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InvalidArgumentError, ShapeError
from ..spine import DISC_LABEL, LEVELS, LUMBOSACRAL_DISC_LABEL
from .labelgrid import to_world

__all__ = ["assign_discs"]


def _check_disc_args(discs, affine, anchors) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(bool mask, (4, 4) affine, anchor names, (N, 3) centroids, (N,) half-widths), or the error."""
    d = np.asarray(discs)
    if d.ndim != 3:
        raise ShapeError(f"discs must be a 3D mask, got shape {d.shape}")
    d = d.astype(bool)
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise InvalidArgumentError("affine must be a finite (4, 4) matrix")
    if len(anchors) < 2:
        raise InvalidArgumentError(f"assign_discs needs at least two anchor vertebrae, got {len(anchors)}")
    names = [str(n) for n, _, _ in anchors]
    cents = np.array([np.asarray(c, dtype=float) for _, c, _ in anchors])
    halfw = np.array([float(w) for _, _, w in anchors])
    if cents.shape != (len(anchors), 3) or not np.all(np.isfinite(cents)):
        raise InvalidArgumentError("anchor centroids must be finite (3,) points")
    return d, a, names, cents, halfw


def _gap_label(upper: str, lower: str) -> int | None:
    """Label of a disc between vertebrae ``upper`` and ``lower``, None outside the convention."""
    if upper in LEVELS and lower in LEVELS:
        return DISC_LABEL
    if upper == LEVELS[-1] and lower == "sacrum":
        return LUMBOSACRAL_DISC_LABEL
    return None


def _nearest_gap(point: np.ndarray, cents: np.ndarray, halfw: np.ndarray) -> int | None:
    """Index ``g`` of the gap between anchors ``g`` and ``g + 1`` that ``point`` (world mm) fills, or None."""
    p0, p1 = cents[:-1], cents[1:]
    seg = p1 - p0
    seg_len2 = np.maximum((seg * seg).sum(axis=1), 1e-9)
    s = ((point - p0) * seg).sum(axis=1) / seg_len2
    foot = p0 + s[:, None] * seg
    dist = np.linalg.norm(point - foot, axis=1)
    ok = (s > 0.0) & (s < 1.0) & (dist <= np.maximum(halfw[:-1], halfw[1:]) + 10.0)
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, dist, np.inf)))


def assign_discs(
    discs: np.ndarray,
    affine: np.ndarray,
    anchors: list[tuple[str, np.ndarray, float]],
) -> np.ndarray:
    """Label each connected disc component with the gap it fills (rule in the module docstring).

    Parameters
    ----------
    discs : (I, J, K) bool mask of all intervertebral discs.
    affine : (4, 4) voxel -> world (mm) affine.
    anchors : consecutive vertebrae from superior to inferior, as ``(name, (3,) body
        centroid in world mm, half-width in mm)``; names of :data:`spinelib.spine.LEVELS`
        plus ``"C7"`` and ``"sacrum"``.

    Returns
    -------
    (I, J, K) uint8: 20 for discs between two of T1..L5, 21 for L5/S1, 0 elsewhere.

    Raises
    ------
    ShapeError, InvalidArgumentError
        Bad mask, affine or anchors.
    """
    d, a, names, cents, halfw = _check_disc_args(discs, affine, anchors)
    out = np.zeros(d.shape, dtype=np.uint8)
    lab, n = ndi.label(d)
    if n == 0:
        return out
    com = np.array(ndi.center_of_mass(d, lab, range(1, n + 1)), dtype=float).reshape(n, 3)
    com_w = to_world(com, a)
    for comp in range(n):
        g = _nearest_gap(com_w[comp], cents, halfw)
        value = None if g is None else _gap_label(names[g], names[g + 1])
        if value is not None:
            out[lab == comp + 1] = value
    return out
