"""The alignment's settings as one typed, frozen value: :class:`AlignConfig`.

A run profile names them ``align_pixel_mm``, ``align_angle_range_deg``, ``align_min_score``
and ``align_min_stage1_score``; :meth:`AlignConfig.from_profile` reads those four keys, the
only place that does, and every function of :mod:`spinelib.align` takes the object.

Examples
--------
>>> from spinelib.profiles import get_profile
>>> AlignConfig.from_profile(get_profile("smoke")).pixel_mm
6.6
>>> AlignConfig(angle_range_deg=50.0)
Traceback (most recent call last):
...
spinelib.errors.InvalidArgumentError: angle_range_deg must be in [0, 45] degrees, got 50.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError
from ..io.checks import check_positive
from ..profiles import PROFILES

__all__ = ["AlignConfig", "PROFILE_KEYS"]

#: Profile key of each :class:`AlignConfig` field.
PROFILE_KEYS: dict[str, str] = {
    "pixel_mm": "align_pixel_mm",
    "angle_range_deg": "align_angle_range_deg",
    "min_score": "align_min_score",
    "min_stage1_score": "align_min_stage1_score",
}

_DEFAULT = PROFILES["default"]


def _check_ncc(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not np.isfinite(v) or not -1 <= v <= 1:
        raise InvalidArgumentError(f"{name} must be an NCC value in [-1, 1], got {value!r}")
    return v


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the two-stage alignment (:func:`spinelib.align.pair.align_pair`).

    Parameters
    ----------
    pixel_mm : float
        Working grid of the planar search (mm per pixel, > 0).
    angle_range_deg : float
        Stage 1 searches rotations in +/- this (degrees, in [0, 45]).
    min_score : float
        A stage-2 (spine) NCC below this flags the pair untrustworthy (in [-1, 1]).
    min_stage1_score : float
        A stage-1 (body thickness) NCC below this flags it too (in [-1, 1]). The two scores
        fail in different ways: two people with alike spines still differ in body shape
        (stage 1), two alike bodies in their spines (stage 2).

    The defaults are the ``default`` profile's.
    """

    pixel_mm: float = _DEFAULT["align_pixel_mm"]
    angle_range_deg: float = _DEFAULT["align_angle_range_deg"]
    min_score: float = _DEFAULT["align_min_score"]
    min_stage1_score: float = _DEFAULT["align_min_stage1_score"]

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("pixel_mm", check_positive(self.pixel_mm, "pixel_mm"))
        try:
            rng = float(self.angle_range_deg)
        except (TypeError, ValueError):
            rng = float("nan")
        if not np.isfinite(rng) or not 0 <= rng <= 45:
            raise InvalidArgumentError(f"angle_range_deg must be in [0, 45] degrees, got {self.angle_range_deg!r}")
        set_("angle_range_deg", rng)
        set_("min_score", _check_ncc("min_score", self.min_score))
        set_("min_stage1_score", _check_ncc("min_stage1_score", self.min_stage1_score))

    @classmethod
    def from_profile(cls, params: Mapping[str, Any]) -> "AlignConfig":
        """The alignment settings of a run profile (:func:`spinelib.profiles.get_profile`).

        Raises
        ------
        InvalidArgumentError
            ``params`` lacks one of the four ``align_*`` keys, or a value is out of range.
        """
        missing = [k for k in PROFILE_KEYS.values() if k not in params]
        if missing:
            raise InvalidArgumentError(f"profile parameters lack {', '.join(missing)} (the alignment's settings)")
        return cls(**{field: params[key] for field, key in PROFILE_KEYS.items()})

    def to_dict(self) -> dict[str, float]:
        """The settings under their profile keys (``align_pixel_mm``, ...), as plain floats."""
        return {PROFILE_KEYS[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}
