"""Where the network's crop lies and how it is cut, found from the DXA image alone.

A DXA is first resampled to square pixels of ``pixel_mm`` keeping its mm origin
(:func:`resample_image`: pixel ``j`` <-> ``j * pixel_mm`` mm). The crop window is then placed
on the bone channel's spine ridge (:func:`spine_ridge`, :func:`find_spine_crop`), never on the
ground-truth curves: the published code centred its test-time crop on the true curves, which
leaks the answer. :func:`sample_crop` cuts the window out of a ``(C, H, W)`` stack, optionally
rotated and shifted (the augmentation of :mod:`spinelib.learn.data`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..geometry.transform import check_image_shape
from ..shape.curves import CropWindow

__all__ = [
    "resample_image",
    "SPINE_MIDLINE_SD_MM",
    "spine_ridge",
    "find_spine_crop",
    "sample_crop",
]


def _check_px(pixel_mm: float) -> float:
    """``pixel_mm`` as a float, refused unless finite and positive."""
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise InvalidArgumentError(f"pixel_mm must be a positive number, got {pixel_mm!r}")
    return float(pixel_mm)


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
    """A crop's ``(rows, cols)``, refused unless two integer sizes of at least 8 pixels."""
    return check_image_shape(image_size, "image_size", 8)


def resample_image(image: np.ndarray, spacing_mm: Sequence[float], pixel_mm: float) -> np.ndarray:
    """Resample a 2D image to square pixels of ``pixel_mm``, keeping the mm origin.

    Output pixel ``(i, j)`` samples the input at mm position ``(i, j) * pixel_mm``, i.e.
    input pixel ``(i * pixel_mm / s_row, j * pixel_mm / s_col)`` (linear interpolation),
    so "row-mm" and "column-mm" coordinates mean the same in both grids.

    Parameters
    ----------
    image : (H, W) float array.
    spacing_mm : (row, col) input spacing in mm.
    pixel_mm : output pixel size in mm.

    Returns
    -------
    (H', W') float32 array, ``H' = floor((H - 1) * s_row / pixel_mm) + 1``.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ShapeError(f"image must be 2D, got shape {img.shape}")
    px = _check_px(pixel_mm)
    sr, sc = (float(s) for s in spacing_mm)
    if not (sr > 0 and sc > 0):
        raise InvalidArgumentError(f"spacing_mm must be positive, got {spacing_mm!r}")
    out_shape = (int((img.shape[0] - 1) * sr / px) + 1, int((img.shape[1] - 1) * sc / px) + 1)
    return ndimage.affine_transform(
        img, np.array([px / sr, px / sc]), output_shape=out_shape, order=1, mode="nearest"
    ).astype(np.float32)


#: Spread (SD, mm) of the prior on the spine's column about the skeleton's bone-weighted
#: centre column. The spine runs down the body's midline, which the symmetric skeleton
#: (ribs, shoulder girdle, pelvis, limbs) centres the bone mass on; a scoliotic spine's
#: mean column stays within a few centimetres of it. Without the prior, the lateral edge
#: of the rib cage lined up with a scapula and an ilium can make a straighter ridge than a
#: curved, faint spine.
SPINE_MIDLINE_SD_MM = 60.0


def spine_ridge(bone: np.ndarray, *, pixel_mm: float) -> tuple[int, int, int]:
    """Find the spine in a bone image: its column and the rows it spans.

    The spine is the bright vertical ridge of the bone channel: the column whose
    horizontally high-passed bone signal (smoothed at 4 mm, background over 90 mm) is
    largest over most rows, weighted by a Gaussian prior (SD :data:`SPINE_MIDLINE_SD_MM`)
    about the image's bone-weighted centre column. It spans the rows where the mean bone
    signal of a 30 mm band on that column exceeds half its typical (median) value.

    Parameters
    ----------
    bone : (H, W) bone image on a square grid of ``pixel_mm``.
    pixel_mm : pixel size in mm.

    Returns
    -------
    (column, first row, last row) of the spine, in pixels.

    Raises
    ------
    ShapeError, NonFiniteError
        ``bone`` is not a finite 2D image.
    InvalidArgumentError
        No ridge (a blank or uniform image).
    """
    b = np.asarray(bone, dtype=np.float32)
    if b.ndim != 2:
        raise ShapeError(f"bone must be 2D, got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise NonFiniteError("bone image holds NaN or infinite values")
    px = _check_px(pixel_mm)
    smooth = ndimage.gaussian_filter(b, 4.0 / px)
    # high-pass across columns: the spine is narrower (~30-50 mm) than rib cage and pelvis
    background = ndimage.uniform_filter1d(smooth, max(3, int(round(90.0 / px))), axis=1)
    ridge = np.clip(smooth - background, 0, None)
    if not np.any(ridge > 0):
        raise InvalidArgumentError("no spine ridge found in the bone image (blank or uniform image)")
    col_score = np.median(ridge, axis=0) + 0.25 * ridge.mean(axis=0)
    cols = np.arange(b.shape[1])
    mass = np.clip(smooth, 0, None).sum(axis=0)
    midline = float((mass * cols).sum() / mass.sum())
    prior = np.exp(-0.5 * ((cols - midline) * px / SPINE_MIDLINE_SD_MM) ** 2)
    centre = int(np.argmax(ndimage.uniform_filter1d(col_score, max(3, int(round(20.0 / px)))) * prior))
    half = max(1, int(round(15.0 / px)))
    band = smooth[:, max(0, centre - half): centre + half + 1].mean(axis=1)
    typical = np.median(band[band > 0.25 * band.max()])
    on = np.nonzero(band > 0.5 * typical)[0]
    top, bottom = (int(on[0]), int(on[-1])) if on.size else (0, b.shape[0] - 1)
    return centre, top, bottom


def find_spine_crop(bone: np.ndarray, *, pixel_mm: float, image_size: Sequence[int],
                    top_margin: float = 0.06) -> CropWindow:
    """Place the network's crop on the spine using the bone image alone.

    The crop is centred on the spine's column (:func:`spine_ridge`) and starts
    ``top_margin`` of its height above the spine's first row.

    Parameters
    ----------
    bone : (H, W) bone image already resampled to ``pixel_mm``.
    pixel_mm : pixel size in mm.
    image_size : (rows, cols) of the crop.

    Returns
    -------
    CropWindow with integer ``row0``/``col0`` (may extend past the image: padded by zeros).
    """
    rows, cols = _check_size(image_size)
    centre, top, _ = spine_ridge(bone, pixel_mm=pixel_mm)
    row0 = top - int(round(top_margin * rows))
    col0 = centre - cols // 2
    return CropWindow(row0=float(row0), col0=float(col0), rows=rows, cols=cols, pixel_mm=_check_px(pixel_mm))


def sample_crop(stack: np.ndarray, crop: CropWindow, *, angle_deg: float = 0.0,
                shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Cut the crop out of a ``(C, H, W)`` stack, optionally rotated and shifted.

    Crop pixel ``p`` samples the stack at ``R(angle) (p - c) + c + o`` where ``c`` is the
    crop centre and ``o = (row0, col0) + shift``; outside the image is zero.

    Returns
    -------
    (C, rows, cols) float32.
    """
    s = np.asarray(stack, dtype=np.float32)
    if s.ndim != 3:
        raise ShapeError(f"stack must be (C, H, W), got {s.shape}")
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    ctr = np.array([(crop.rows - 1) / 2.0, (crop.cols - 1) / 2.0])
    o = np.array([crop.row0 + shift_px[0], crop.col0 + shift_px[1]])
    offset = ctr + o - rot @ ctr
    out = np.empty((s.shape[0], crop.rows, crop.cols), dtype=np.float32)
    for ch in range(s.shape[0]):
        if angle_deg == 0.0 and float(offset[0]).is_integer() and float(offset[1]).is_integer():
            out[ch] = _integer_crop(s[ch], int(offset[0]), int(offset[1]), crop.rows, crop.cols)
        else:
            out[ch] = ndimage.affine_transform(s[ch], rot, offset=offset, output_shape=out.shape[1:],
                                               order=1, mode="constant", cval=0.0)
    return out


def _integer_crop(img: np.ndarray, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` window of ``img`` at whole-pixel offset ``(r0, c0)``, zero outside the image."""
    out = np.zeros((rows, cols), dtype=np.float32)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + rows, img.shape[0]), min(c0 + cols, img.shape[1])
    if re > rs and ce > cs:
        out[rs - r0: re - r0, cs - c0: ce - c0] = img[rs:re, cs:ce]
    return out
