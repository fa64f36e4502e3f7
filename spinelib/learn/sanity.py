"""Sanity checks around the network: is the scan a DXA it can read, is its answer on the spine?

Before a scan reaches the network its pixel spacing must give a plausible field of view
(:func:`check_spacing`: :data:`MIN_SPINE_FOV_MM` .. :data:`MAX_FOV_MM`); after it, the
outputs must lie near the crop placed on the spine (:func:`check_crop_output`:
:data:`PLAUSIBLE_CROP_RANGE`). That the image is head-up is :mod:`spinelib.learn.orientation`'s
check.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..io import DXAImage

__all__ = ["check_spacing", "check_crop_output", "MIN_SPINE_FOV_MM", "MAX_FOV_MM", "PLAUSIBLE_CROP_RANGE"]

#: A DXA whose field of view is shorter than this cannot hold a T1-L5 spine: its pixel
#: spacing is almost certainly wrong.
MIN_SPINE_FOV_MM = 300.0
#: A whole-body DXA is about 2 m tall; a field of view beyond this means a wrong spacing.
MAX_FOV_MM = 2500.0
_SPACING_RANGE_MM = (0.2, 10.0)
#: Network outputs (crop coordinates) outside this range put the spine more than a quarter
#: of the crop outside the crop placed on it: the input is not what the model knows.
PLAUSIBLE_CROP_RANGE = (-0.25, 1.25)


def check_spacing(dxa: DXAImage) -> None:
    """Refuse a pixel spacing no DXA has: its field of view must lie between
    :data:`MIN_SPINE_FOV_MM` (a T1-L5 spine) and :data:`MAX_FOV_MM` (a whole body).

    Raises
    ------
    InvalidArgumentError
        Naming the scan, its spacing and the field of view it gives.
    """
    sp = np.asarray(dxa.pixel_spacing_mm, dtype=float)
    lo, hi = _SPACING_RANGE_MM
    where = dxa.path or "DXA"
    if np.any(sp < lo) or np.any(sp > hi):
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp.tolist()} mm is outside the plausible DXA range {lo}-{hi} mm"
        )
    fov = dxa.shape[0] * sp[0]
    if fov < MIN_SPINE_FOV_MM:
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp[0]:g} mm gives a field of view of {fov:.0f} mm, too short for a "
            f"T1-L5 spine (>= {MIN_SPINE_FOV_MM:.0f} mm); check the pixel spacing"
        )
    if max(fov, dxa.shape[1] * sp[1]) > MAX_FOV_MM:
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp.tolist()} mm gives a field of view of "
            f"{dxa.shape[0] * sp[0]:.0f} x {dxa.shape[1] * sp[1]:.0f} mm, larger than any DXA "
            f"(<= {MAX_FOV_MM:.0f} mm); check the pixel spacing"
        )


def check_crop_output(label: str, vec: np.ndarray) -> None:
    """Refuse network outputs ``vec`` ``(6 K + 2,)`` (crop coordinates) that are not finite or
    leave :data:`PLAUSIBLE_CROP_RANGE`; this also keeps the 3D grid, which spans the predicted
    curves, to a sane size.

    Raises
    ------
    InvalidArgumentError
        Naming ``label`` and the range of the outputs.
    """
    lo, hi = PLAUSIBLE_CROP_RANGE
    if not (np.all(np.isfinite(vec)) and vec.min() >= lo and vec.max() <= hi):
        raise InvalidArgumentError(
            f"{label}: the model's prediction lies outside the crop placed on the spine "
            f"(crop coordinates {np.nanmin(vec):.3g}..{np.nanmax(vec):.3g}, plausible {lo}..{hi}); the image "
            "is probably not a spine DXA on the intensity scale the model was trained on (g/cm^2)"
        )
