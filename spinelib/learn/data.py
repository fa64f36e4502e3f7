"""What the network sees: prepared scans, their augmentation, and the training datasets.

Pipeline for one scan (the same at training, validation, test and prediction time)::

    DXA (bone, tissue[, lateral]) --resample_image--> pixel_mm grid (pixel j <-> j * pixel_mm mm)
        --find_spine_crop (bone channel only)--> CropWindow --sample_crop--> (C, rows, cols)

The resampling and the crop, found from the image alone, are :mod:`spinelib.learn.crop`'s;
:func:`prepare_scan` runs them once per scan. Training may jitter the crop (shift and small
rotation) and mirror it left-right, applied to the image and to the curves together
(:func:`rotate_curves`, :func:`mirror_crop_vector`); a lateral view follows the row shift only,
since its columns are depth above the table, the unit of the sagittal targets
(:func:`sample_views`), and is not mirrored.

Channels are scaled by fixed physical constants (``INPUT_SCALE``; our files hold g/cm^2),
not per image, so the absolute soft-tissue thickness -- a physical cue to how deep the
spine lies above the table -- reaches the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..errors import InvalidArgumentError, ShapeError
from ..io import DXAImage
from ..io.checks import check_integer
from ..shape.curves import CropWindow, SpineCurves, to_crop
from .crop import _check_px, _check_size, find_spine_crop, resample_image, sample_crop

log = logging.getLogger(__name__)

__all__ = [
    "INPUT_SCALE",
    "rotate_curves",
    "mirror_crop_vector",
    "prepare_scan",
    "PreparedScan",
    "prepare_scans",
    "AP_CHANNELS",
    "sample_views",
    "SpineDataset",
]

#: Divisors bringing bone and soft-tissue areal densities (g/cm^2) to about [0, 1].
INPUT_SCALE = {"bone": 2.0, "tissue": 40.0}

#: Channels of the AP view (bone, tissue) at the front of a prepared stack; any further
#: channels are the lateral view (:func:`prepare_scan`).
AP_CHANNELS = 2


def rotate_curves(curves: SpineCurves, angle_deg: float, centre_mm: tuple[float, float]) -> SpineCurves:
    """The curves of an image rotated by ``angle_deg`` about ``centre_mm`` (row_mm, col_mm).

    The coronal boundary and centre points of every level, and the extent's end points,
    are rotated; the curves are then re-read at the new evenly spaced levels (linear
    interpolation along the rotated rows). Sagittal depths travel with their level.
    Exact for the positions; for the small angles of augmentation (a few degrees) the
    re-levelling error is far below a pixel.
    """
    t = np.deg2rad(angle_deg)
    c, s = np.cos(t), np.sin(t)
    r0, c0 = centre_mm

    def rot(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr, dc = rr - r0, cc - c0
        return r0 + c * dr - s * dc, c0 + s * dr + c * dc

    v, levels = curves.values, curves.levels_mm
    cen_r, cen_c = rot(levels, v[1])
    top_r, _ = rot(np.array([curves.extent_mm[0]]), v[1, :1])
    bot_r, _ = rot(np.array([curves.extent_mm[1]]), v[1, -1:])
    ext = np.array([top_r[0], bot_r[0]])
    k = curves.n_levels
    new_levels = ext[0] + (np.arange(k) + 0.5) * (ext[1] - ext[0]) / k
    out = np.empty_like(v)
    for i in (0, 1, 2):
        rr, cc = rot(levels, v[i])
        order = np.argsort(rr)
        out[i] = np.interp(new_levels, rr[order], cc[order])
    order = np.argsort(cen_r)
    for i in (3, 4, 5):
        out[i] = np.interp(new_levels, cen_r[order], v[i][order])
    return SpineCurves(out, ext)


def mirror_crop_vector(vector: np.ndarray, cols: int) -> np.ndarray:
    """The crop-coordinate targets of a crop mirrored left-right.

    Crop column ``i`` becomes ``cols - 1 - i``: a coronal value ``c`` (crop columns / ``cols``)
    becomes ``(cols - 1) / cols - c`` and the left and right boundaries swap places, so that
    left stays the smaller column. Sagittal depths and the extent do not change. Its own
    inverse.

    Parameters
    ----------
    vector : (6 K + 2,) or (B, 6 K + 2) crop-coordinate vectors (:func:`~spinelib.shape.curves.to_crop`).
    cols : the crop's width in pixels.

    Returns
    -------
    An array of ``vector``'s shape and dtype.

    Raises
    ------
    ShapeError
        The last axis is not ``6 K + 2`` long for some ``K >= 1``.
    """
    v = np.asarray(vector)
    n = v.shape[-1] if v.ndim in (1, 2) else 0
    if n < 8 or (n - 2) % 6:
        raise ShapeError(f"vector must be (6 K + 2,) or (B, 6 K + 2) with K >= 1, got shape {v.shape}")
    cols = check_integer(cols, "cols", minimum=1)
    k = (n - 2) // 6
    out = v.copy()
    flip = (cols - 1) / cols
    left, centre, right = (slice(i * k, (i + 1) * k) for i in range(3))
    out[..., left] = flip - v[..., right]
    out[..., centre] = flip - v[..., centre]
    out[..., right] = flip - v[..., left]
    return out


@dataclass(frozen=True)
class PreparedScan:
    """One scan resampled and located: everything the dataset needs but the targets."""

    stack: np.ndarray  # (C, H', W') float32, scaled channels on the pixel_mm grid
    crop: CropWindow


def prepare_scan(dxa: DXAImage, *, pixel_mm: float, image_size: Sequence[int],
                 lateral: bool = False) -> PreparedScan:
    """Resample a DXA (and optionally its lateral view) and find its crop from the image.

    Channels: AP bone, AP tissue, then with ``lateral`` the lateral bone and tissue, the
    lateral view placed so that its rows match the AP rows and its column ``j`` is
    depth ``j * pixel_mm`` above the table, and shifted left so that the crop's columns
    (starting at ``col0``) cover depths from the table upwards.
    """
    px = _check_px(pixel_mm)
    rows, cols = _check_size(image_size)
    sp = dxa.pixel_spacing_mm
    bone = resample_image(dxa.bone, sp, px)
    chans = [bone / INPUT_SCALE["bone"], resample_image(dxa.tissue, sp, px) / INPUT_SCALE["tissue"]]
    crop = find_spine_crop(bone, pixel_mm=px, image_size=(rows, cols))
    if lateral:
        if not dxa.has_lateral:
            raise InvalidArgumentError(f"{dxa.path or 'DXA'} has no lateral view; the biplanar model needs one")
        lsp = dxa.lateral_pixel_spacing_mm
        for name in ("lateral_bone", "lateral_tissue"):
            img = resample_image(getattr(dxa, name), lsp, px) / INPUT_SCALE[name.split("_")[1]]
            placed = np.zeros_like(bone)
            h = min(placed.shape[0], img.shape[0])
            c0 = int(crop.col0)
            # depth column j of the lateral view goes to AP-grid column col0 + j
            w = max(0, min(img.shape[1], placed.shape[1] - max(c0, 0)))
            src0 = max(0, -c0)
            if w > src0:
                placed[:h, max(c0, 0): max(c0, 0) + w - src0] = img[:h, src0:w]
            chans.append(placed)
    return PreparedScan(np.stack(chans).astype(np.float32), crop)


def sample_views(stack: np.ndarray, crop: CropWindow, *, angle_deg: float = 0.0,
                 shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Cut the crop out of a prepared stack, jittering each view the way its axes allow.

    The AP channels (the first :data:`AP_CHANNELS`) are cut by
    :func:`~spinelib.learn.crop.sample_crop` with the rotation and the ``(row, col)`` shift. The lateral channels, when present, share
    the AP rows but their columns are depth above the table, not left-right position:
    they take the row shift only, so a lateral crop column ``j`` keeps showing depth
    ``j * pixel_mm`` -- the depth the sagittal targets are measured in (``to_crop``
    normalises depth independently of the crop's ``col0``). Shifting them by the column
    jitter would move the anatomy in depth while the targets stay put.

    Parameters
    ----------
    stack : (C, H, W) float array, ``C`` = 2 (AP) or 4 (AP, then lateral), as made by
        :func:`prepare_scan`.
    crop : the crop window (pixels of the ``pixel_mm`` grid).
    angle_deg : rotation of the AP crop in degrees; must be 0 with a lateral view (an
        AP rotation has no counterpart in the lateral projection).
    shift_px : (row, col) shift in pixels.

    Returns
    -------
    (C, rows, cols) float32.

    Raises
    ------
    ShapeError
        ``stack`` not 3D or with fewer than :data:`AP_CHANNELS` channels.
    InvalidArgumentError
        A non-zero ``angle_deg`` with a lateral view.
    """
    s = np.asarray(stack, dtype=np.float32)
    if s.ndim != 3 or s.shape[0] < AP_CHANNELS:
        raise ShapeError(f"stack must be (C, H, W) with C >= {AP_CHANNELS}, got {s.shape}")
    ap = sample_crop(s[:AP_CHANNELS], crop, angle_deg=angle_deg, shift_px=shift_px)
    if s.shape[0] == AP_CHANNELS:
        return ap
    if angle_deg != 0.0:
        raise InvalidArgumentError(f"angle_deg must be 0 with a lateral view, got {angle_deg!r}")
    lateral = sample_crop(s[AP_CHANNELS:], crop, shift_px=(float(shift_px[0]), 0.0))
    return np.concatenate([ap, lateral])


class SpineDataset(Dataset):
    """Crops and crop-coordinate targets of a list of scans.

    Parameters
    ----------
    scans : prepared scans (:func:`prepare_scan`).
    curves : the matching targets in mm, or ``None`` for prediction-only use.
    augment : jitter each training sample (intensity, shift, small rotation) with a
        generator drawn from ``(seed, epoch, index)``, so the sequence is reproducible
        and independent of the order of access. The image is cut by :func:`sample_views`
        (a lateral view follows the row shift only; no rotation with a lateral view) and
        the targets by the same window, so both move together.
    seed : augmentation seed.
    max_shift_px, max_angle_deg, intensity : augmentation ranges.
    mirror : with ``augment``, also mirror half of the samples left-right: the AP crop's
        columns reversed and the targets by :func:`mirror_crop_vector`. A lateral view,
        a projection along the left-right axis, is the same for the mirrored body.

    Items are ``(image (C, rows, cols) float32 tensor, target (6 K + 2,) float32 tensor)``.
    """

    def __init__(self, scans: Sequence[PreparedScan], curves: Sequence[SpineCurves] | None = None, *,
                 augment: bool = False, seed: int = 0, max_shift_px: float = 4.0,
                 max_angle_deg: float = 3.0, intensity: float = 0.1, mirror: bool = False) -> None:
        if curves is not None and len(curves) != len(scans):
            raise InvalidArgumentError(f"{len(scans)} scans but {len(curves)} curve sets")
        self.scans = list(scans)
        self.curves = None if curves is None else list(curves)
        self.augment = augment
        self.seed = seed
        self.max_shift_px, self.max_angle_deg, self.intensity = max_shift_px, max_angle_deg, intensity
        self.mirror = bool(mirror)
        self.epoch = 0
        # a rotation of the AP view has no simple counterpart in the lateral view
        self._rotate = all(s.stack.shape[0] == AP_CHANNELS for s in self.scans)

    def __len__(self) -> int:
        return len(self.scans)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _jitter(self, index: int) -> tuple[float, tuple[float, float], np.ndarray, bool]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        angle = float(rng.uniform(-self.max_angle_deg, self.max_angle_deg)) if self._rotate else 0.0
        shift = tuple(float(v) for v in rng.uniform(-self.max_shift_px, self.max_shift_px, size=2))
        gain = 1.0 + rng.uniform(-self.intensity, self.intensity, size=self.scans[index].stack.shape[0])
        # drawn last, so that the other draws are those of a dataset without mirroring
        mirrored = self.mirror and bool(rng.random() < 0.5)
        return angle, shift, gain, mirrored

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        scan = self.scans[index]
        crop = scan.crop
        mirrored = False
        if self.augment:
            angle, shift, gain, mirrored = self._jitter(index)
            image = sample_views(scan.stack, crop, angle_deg=angle, shift_px=shift) * gain[:, None, None].astype(np.float32)
            moved = CropWindow(crop.row0 + shift[0], crop.col0 + shift[1], crop.rows, crop.cols, crop.pixel_mm)
        else:
            image, moved, angle = sample_crop(scan.stack, crop), crop, 0.0
        if mirrored:  # numpy buffers the overlapping views of an in-place reversal
            image[:AP_CHANNELS] = image[:AP_CHANNELS, :, ::-1]
        if self.curves is None:
            return torch.from_numpy(np.ascontiguousarray(image)), torch.zeros(0)
        curves = self.curves[index]
        if angle:
            # crop pixel p shows the image at R(angle)(p - c) + c + o: in the crop's own
            # un-rotated frame the anatomy is turned by -angle about the crop centre
            centre = (moved.pixel_mm * (moved.row0 + (moved.rows - 1) / 2.0),
                      moved.pixel_mm * (moved.col0 + (moved.cols - 1) / 2.0))
            curves = rotate_curves(curves, -angle, centre)
        target = to_crop(curves, moved).astype(np.float32)
        if mirrored:
            target = mirror_crop_vector(target, moved.cols)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(target)


def prepare_scans(dxas: Sequence[DXAImage], *, pixel_mm: float, image_size: Sequence[int],
                  lateral: bool = False, desc: str = "preparing scans") -> list[PreparedScan]:
    """:func:`prepare_scan` over a list, with a progress bar on a terminal."""
    return [prepare_scan(d, pixel_mm=pixel_mm, image_size=image_size, lateral=lateral)
            for d in tqdm(dxas, desc=desc, unit="scan", leave=False, disable=None)]
