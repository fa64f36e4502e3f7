"""Is a DXA scan head-up? The check every scan passes before it reaches a network.

The lungs lie beside the upper half of the spine, so the soft tissue beside the upper half
of the spine is lighter (lower g/cm^2) than beside its lower half (abdomen). A scan whose
upper half is clearly the denser one (:func:`orientation_ratio` below
:data:`UPSIDE_DOWN_RATIO`) is refused with :class:`OrientationError`, whose message names
the fix (``--flip-vertical``, :func:`flip_dxa`). The rule needs a soft-tissue image
distinct from the bone image; a one-channel (grey) image cannot be checked and is used as
given (a warning is logged). A left-right mirror cannot be detected this way (the body is
nearly symmetric at this resolution); ``--flip-horizontal`` mirrors explicitly.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .crop import resample_image, spine_ridge
from ..errors import InvalidArgumentError
from ..io import DXAImage

log = logging.getLogger(__name__)

__all__ = ["OrientationError", "UPSIDE_DOWN_RATIO", "flip_dxa", "orientation_ratio", "check_orientation"]

#: :func:`orientation_ratio` below this means the scan is upside down. Head-up synthetic
#: scans give 1.15-1.49 (lungs beside the upper spine); flipped ones the inverse.
UPSIDE_DOWN_RATIO = 0.95
# the orientation check's working resolution and its bands beside the spine (mm)
_ORIENT_PX_MM = 4.0
_ORIENT_BAND_MM = (25.0, 100.0)


class OrientationError(InvalidArgumentError):
    """A scan is not head-up (its pelvis lies above its shoulders)."""


def flip_dxa(dxa: DXAImage, *, vertical: bool = False, horizontal: bool = False) -> DXAImage:
    """``dxa`` mirrored top-bottom and/or left-right (an explicit fix for a scan stored flipped).

    The vertical flip reverses the rows of every image (the lateral view shares the AP
    rows); the horizontal flip reverses the AP columns only (the lateral view's columns
    are depth). Curves predicted from the result are in the flipped image's frame: a row
    ``r`` of it is row ``H - 1 - r`` of the stored image, a column ``c`` is ``W - 1 - c``.
    """
    if not isinstance(dxa, DXAImage):
        raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
    if not vertical and not horizontal:
        return dxa

    def flip(a: np.ndarray | None, cols: bool) -> np.ndarray | None:
        if a is None:
            return None
        if vertical:
            a = a[::-1]
        if horizontal and cols:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    return dataclasses.replace(dxa, bone=flip(dxa.bone, True), tissue=flip(dxa.tissue, True),
                               lateral_bone=flip(dxa.lateral_bone, False),
                               lateral_tissue=flip(dxa.lateral_tissue, False))


def orientation_ratio(dxa: DXAImage) -> float | None:
    """How head-up a scan looks: soft tissue beside the lower half of the spine over the upper half.

    The spine and the rows it spans are found by :func:`spinelib.learn.crop.spine_ridge` (the
    crop is placed from the same). In bands 25-100 mm either side of it, the mean
    soft-tissue areal density of the lower half of that extent is divided by that of the
    upper half. In a head-up scan
    the lungs lie beside the upper (thoracic) half, so the ratio is above 1; upside down it
    is below 1.

    Returns
    -------
    The ratio, or ``None`` when it cannot be measured: the tissue image is the bone image
    (a grey PNG/TIFF), there is no spine ridge, or no soft tissue beside it.
    """
    if not isinstance(dxa, DXAImage):
        raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
    if dxa.bone is dxa.tissue or np.array_equal(dxa.bone, dxa.tissue):
        return None
    px = _ORIENT_PX_MM
    bone = resample_image(dxa.bone, dxa.pixel_spacing_mm, px)
    tissue = resample_image(dxa.tissue, dxa.pixel_spacing_mm, px)
    try:
        centre, top, bottom = spine_ridge(bone, pixel_mm=px)
    except InvalidArgumentError:  # no ridge at all
        return None
    if bottom - top < 3:
        return None
    mid = (top + bottom + 1) // 2
    lo, hi = (int(round(v / px)) for v in _ORIENT_BAND_MM)
    cols = np.r_[max(0, centre - hi): max(0, centre - lo), min(tissue.shape[1], centre + lo): min(tissue.shape[1], centre + hi)]
    if cols.size == 0:
        return None
    beside = tissue[:, cols].mean(axis=1)
    upper, lower = float(beside[top:mid].mean()), float(beside[mid:bottom + 1].mean())
    if not (np.isfinite(upper) and np.isfinite(lower)) or upper <= 0 or lower <= 0:
        return None
    return lower / upper


def check_orientation(dxa: DXAImage) -> float | None:
    """Refuse an upside-down scan (:func:`orientation_ratio` below :data:`UPSIDE_DOWN_RATIO`).

    Returns the ratio (``None``: not measurable, a warning is logged).

    Raises
    ------
    OrientationError
        The scan's upper half is the denser: pelvis above the shoulders. The message names
        the fix: ``--flip-vertical`` (``flip_dxa(dxa, vertical=True)``).
    """
    ratio = orientation_ratio(dxa)
    where = dxa.path or "DXA"
    if ratio is None:
        log.warning("%s: cannot check that the scan is head-up (no separate soft-tissue image or no spine "
                    "ridge); using it as given", where)
    elif ratio < UPSIDE_DOWN_RATIO:
        raise OrientationError(
            f"{where}: the scan looks upside down (pelvis above the shoulders): the soft tissue beside the upper "
            f"half of the spine is denser than beside its lower half (ratio {ratio:.2f} < {UPSIDE_DOWN_RATIO}), "
            "where the lungs should be; if it is stored flipped, pass --flip-vertical "
            "(predict_file(..., flip_vertical=True) or flip_dxa(dxa, vertical=True))"
        )
    return ratio
