"""The visible summaries: what a coronal DXA plainly shows, as a fixed-length feature vector.

A network that reads the sagittal shape of the spine from a coronal DXA must do better than
a linear model of the image's obvious summaries, or it has learnt nothing beyond them (the
``visible_summaries`` ridge baseline, :mod:`spinelib.learn.ridge`). This module computes
those summaries from the same crop the networks see
(:class:`spinelib.learn.data.PreparedScan`), AP channels only -- never the lateral view:

per crop row (then averaged into ``n_bins`` equal bands of rows, so that every scan gives a
vector of the same length ``4 * n_bins``)

``tissue_mean_g_cm2``
    mean areal soft-tissue density across the body on the image's full row (g/cm^2: body
    thickness times density; pixels above ``BODY_THRESHOLD_G_CM2`` are the body);
``outline_width_mm``
    width of the body on the full row (pixels above ``BODY_THRESHOLD_G_CM2``, mm);
``bone_width_mm``
    width of the bone on the crop row (pixels at or above half the row's brightest bone and
    above ``BONE_FLOOR_G_CM2``, mm);
``bone_centroid_mm``
    bone-weighted mean column of those pixels, in mm from the crop's first column (the
    crop's middle where a row holds no bone).

Examples
--------
>>> import numpy as np
>>> bin_rows(np.arange(6.0), 3).tolist()
[0.5, 2.5, 4.5]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..shape.curves import CropWindow
from .crop import sample_crop
from .data import INPUT_SCALE, PreparedScan

__all__ = [
    "N_BINS",
    "BODY_THRESHOLD_G_CM2",
    "BONE_FLOOR_G_CM2",
    "FEATURE_GROUPS",
    "feature_names",
    "row_summaries",
    "bin_rows",
    "visible_summaries",
    "summary_matrix",
]

#: Bands of crop rows the per-row summaries are averaged into (about one per vertebra at
#: the default crop, T1-L5 being 17 vertebrae).
N_BINS = 16
#: Soft-tissue areal density (g/cm^2, about 1 cm of water) above which a pixel is inside the body.
BODY_THRESHOLD_G_CM2 = 1.0
#: Bone areal density (g/cm^2) below which a pixel holds no bone (above the detector's noise).
BONE_FLOOR_G_CM2 = 0.05
#: The four per-row summaries, in the order of the feature vector.
FEATURE_GROUPS: tuple[str, ...] = ("tissue_mean_g_cm2", "outline_width_mm", "bone_width_mm", "bone_centroid_mm")


def feature_names(n_bins: int = N_BINS) -> list[str]:
    """Names of the ``4 * n_bins`` features, ``"<group>[<bin>]"`` in vector order."""
    n = _check_bins(n_bins)
    return [f"{g}[{b}]" for g in FEATURE_GROUPS for b in range(n)]


def _check_bins(n_bins: Any) -> int:
    """``n_bins`` as an int, refused unless it is an integer >= 1."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or int(n_bins) < 1:
        raise InvalidArgumentError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)


def _check_scan(scan: Any, what: str = "scan") -> tuple[np.ndarray, CropWindow]:
    """The AP bone and tissue channels (2, H, W) and the crop window of a checked prepared scan."""
    if not isinstance(scan, PreparedScan):
        raise InvalidArgumentError(f"{what} must be a spinelib.learn.data.PreparedScan, got {type(scan).__name__}")
    stack = np.asarray(scan.stack)
    if stack.ndim != 3 or stack.shape[0] < 2 or min(stack.shape[1:]) < 1:
        raise ShapeError(f"{what}.stack must be (C >= 2, H, W) with AP bone and AP tissue first, got {stack.shape}")
    ap = stack[:2]  # the lateral channels, if any, are never read
    if not np.all(np.isfinite(ap)):
        raise NonFiniteError(f"{what}.stack holds NaN or infinite values in its AP channels")
    if not isinstance(scan.crop, CropWindow):
        raise InvalidArgumentError(f"{what}.crop must be a CropWindow, got {type(scan.crop).__name__}")
    return ap, scan.crop


def row_summaries(scan: PreparedScan) -> dict[str, np.ndarray]:
    """The four per-row summaries of a prepared scan's crop (AP channels only).

    Parameters
    ----------
    scan : PreparedScan
        ``stack`` (C, H, W) float, channels AP bone and AP tissue scaled by
        :data:`spinelib.learn.data.INPUT_SCALE` (any further, lateral, channels are ignored), on a
        square grid of ``crop.pixel_mm``; ``crop`` the window the networks see.

    Returns
    -------
    dict of (rows,) float64 arrays, one per crop row, keyed by :data:`FEATURE_GROUPS`:
    ``tissue_mean_g_cm2`` (g/cm^2), ``outline_width_mm``, ``bone_width_mm`` and
    ``bone_centroid_mm`` (mm; the centroid from the centre of the crop's first column).
    Crop rows outside the image (the crop is zero-padded there) hold no body and no bone.

    Raises
    ------
    InvalidArgumentError
        ``scan`` is not a PreparedScan with a CropWindow.
    ShapeError
        ``scan.stack`` is not (C >= 2, H, W).
    NonFiniteError
        The AP channels hold NaN or infinite values.
    """
    ap, crop = _check_scan(scan)
    px = float(crop.pixel_mm)
    rows, cols = int(crop.rows), int(crop.cols)
    bone = sample_crop(ap[:1], crop)[0].astype(np.float64) * INPUT_SCALE["bone"]  # (rows, cols) g/cm^2
    # the body outline needs the whole image row: the crop is narrower than most bodies
    tissue_rows = np.zeros((rows, ap.shape[2]))
    r = int(round(float(crop.row0))) + np.arange(rows)
    inside = (r >= 0) & (r < ap.shape[1])
    tissue_rows[inside] = ap[1, r[inside]].astype(np.float64) * INPUT_SCALE["tissue"]
    body = tissue_rows > BODY_THRESHOLD_G_CM2
    n_body = body.sum(axis=1)
    tissue_mean = np.where(n_body > 0, (tissue_rows * body).sum(axis=1) / np.maximum(n_body, 1), 0.0)
    peak = bone.max(axis=1, keepdims=True)
    on = (bone >= 0.5 * peak) & (bone > BONE_FLOOR_G_CM2)
    weight = bone * on
    mass = weight.sum(axis=1)
    cols_mm = np.arange(cols) * px
    centroid = np.where(mass > 0, (weight * cols_mm).sum(axis=1) / np.where(mass > 0, mass, 1.0),
                        0.5 * (cols - 1) * px)
    return {
        "tissue_mean_g_cm2": tissue_mean,
        "outline_width_mm": n_body * px,
        "bone_width_mm": on.sum(axis=1) * px,
        "bone_centroid_mm": centroid,
    }


def bin_rows(values: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Average a per-row profile into ``n_bins`` consecutive bands of (nearly) equal height.

    Row ``i`` of ``rows`` goes to band ``floor(i * n_bins / rows)``.

    Parameters
    ----------
    values : (rows,) float, ``rows >= n_bins``.
    n_bins : int >= 1.

    Returns
    -------
    (n_bins,) float64, the mean of each band (units of ``values``).
    """
    n = _check_bins(n_bins)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ShapeError(f"values must be a 1D per-row profile, got shape {v.shape}")
    if v.size < n:
        raise ShapeError(f"cannot average {v.size} rows into {n} bins (needs rows >= n_bins)")
    if not np.all(np.isfinite(v)):
        raise NonFiniteError("values hold NaN or infinite values")
    band = (np.arange(v.size) * n) // v.size
    return np.bincount(band, weights=v, minlength=n) / np.bincount(band, minlength=n)


def visible_summaries(scan: PreparedScan, n_bins: int = N_BINS) -> np.ndarray:
    """The feature vector of one scan: the four :func:`row_summaries`, each binned.

    Returns
    -------
    (4 * n_bins,) float64 in the order of :func:`feature_names` (g/cm^2 for the tissue
    means, mm for the rest).
    """
    n = _check_bins(n_bins)
    per_row = row_summaries(scan)
    return np.concatenate([bin_rows(per_row[g], n) for g in FEATURE_GROUPS])


def summary_matrix(scans: Sequence[PreparedScan], n_bins: int = N_BINS, *, progress: bool = True) -> np.ndarray:
    """:func:`visible_summaries` of every scan, stacked: ``(N, 4 * n_bins)`` float64."""
    if isinstance(scans, PreparedScan) or not isinstance(scans, Sequence) or len(scans) == 0:
        raise InvalidArgumentError("scans must be a non-empty sequence of PreparedScan")
    n = _check_bins(n_bins)
    out = np.empty((len(scans), 4 * n))
    bar = tqdm(scans, desc="visible summaries", unit="scan", disable=None if progress else True, leave=False)
    for i, s in enumerate(bar):
        out[i] = visible_summaries(s, n)
    return out
