"""The synthetic cohort's settings as one typed, frozen value: :class:`SynthConfig`.

A run profile names them ``seed``, ``n_subjects``, ``split_fractions``, ``mri_voxel_mm``,
``dxa_pixel_mm``, ``scoliosis_severity`` and ``posture_change_mm``;
:meth:`SynthConfig.from_profile` reads those keys, the only place that does, and the generator
(:func:`spinelib.synth.subject.make_subject`, :func:`spinelib.synth.cohort.generate_cohort`)
takes the object.

Examples
--------
>>> from spinelib.profiles import get_profile
>>> cfg = SynthConfig.from_profile(get_profile("smoke"))
>>> cfg.n_subjects, cfg.mri_voxel_mm, cfg.profile
(40, (6.0, 6.0, 6.0), 'smoke')
>>> cfg.with_subjects(7).n_subjects
7
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError
from ..io.checks import check_integer, check_non_negative, check_positive
from ..io.manifest import check_split_fractions
from ..profiles import PROFILES

__all__ = ["SynthConfig"]

_DEFAULT = PROFILES["default"]

#: The fields of :class:`SynthConfig` that decide what a subject looks like (its
#: ``truth.json`` signature): a subject written under other values is made again.
SIGNATURE_FIELDS: tuple[str, ...] = ("seed", "mri_voxel_mm", "dxa_pixel_mm", "scoliosis_severity",
                                     "posture_change_mm")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic cohort.

    Parameters
    ----------
    seed : int
        Cohort seed (>= 0): subject ``i`` is a pure function of ``(seed, i)``.
    n_subjects : int
        Subjects in the cohort (>= 1).
    split_fractions : (float, float, float)
        Train, validation and test fractions (non-negative, summing to 1).
    mri_voxel_mm : (float, float, float)
        MRI voxel size (x, y, z), mm.
    dxa_pixel_mm : float
        DXA pixel size, mm.
    scoliosis_severity : float
        Multiplies the drawn coronal curve magnitudes (>= 0; shifted cohorts).
    posture_change_mm : float
        Size of the posture change between the DXA and MRI sessions (>= 0), mm.
    profile : str or None
        The profile's name, recorded in each subject's ``truth.json`` (a label only).

    The defaults are the ``default`` profile's.
    """

    seed: int = _DEFAULT["seed"]
    n_subjects: int = _DEFAULT["n_subjects"]
    split_fractions: tuple[float, float, float] = tuple(_DEFAULT["split_fractions"])
    mri_voxel_mm: tuple[float, float, float] = tuple(_DEFAULT["mri_voxel_mm"])
    dxa_pixel_mm: float = _DEFAULT["dxa_pixel_mm"]
    scoliosis_severity: float = _DEFAULT["scoliosis_severity"]
    posture_change_mm: float = _DEFAULT["posture_change_mm"]
    profile: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("seed", check_integer(self.seed, "seed", 0))
        set_("n_subjects", check_integer(self.n_subjects, "n_subjects", 1))
        set_("split_fractions", check_split_fractions(self.split_fractions))
        voxel = self.mri_voxel_mm
        if isinstance(voxel, (str, bytes)) or np.ndim(voxel) != 1 or len(voxel) != 3:
            raise InvalidArgumentError(f"mri_voxel_mm must be three sizes (x, y, z) in mm, got {voxel!r}")
        set_("mri_voxel_mm", tuple(check_positive(v, "mri_voxel_mm") for v in voxel))
        set_("dxa_pixel_mm", check_positive(self.dxa_pixel_mm, "dxa_pixel_mm"))
        set_("scoliosis_severity", check_non_negative(self.scoliosis_severity, "scoliosis_severity"))
        set_("posture_change_mm", check_non_negative(self.posture_change_mm, "posture_change_mm"))
        if self.profile is not None and not isinstance(self.profile, str):
            raise InvalidArgumentError(f"profile must be a name or None, got {self.profile!r}")

    @classmethod
    def from_profile(cls, params: Mapping[str, Any]) -> "SynthConfig":
        """The cohort settings of a run profile (:func:`spinelib.profiles.get_profile`).

        Raises
        ------
        InvalidArgumentError
            ``params`` is not a mapping, lacks a key, or a value is out of range.
        """
        if not isinstance(params, Mapping):
            raise InvalidArgumentError(f"params must be a profile mapping, got {type(params).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "profile"]
        missing = [k for k in names if k not in params]
        if missing:
            raise InvalidArgumentError(f"profile parameters lack {', '.join(missing)} (the synthetic cohort's settings)")
        return cls(**{k: params[k] for k in names}, profile=params.get("profile"))

    def with_subjects(self, n_subjects: int) -> "SynthConfig":
        """The same cohort with ``n_subjects`` subjects (its first subjects are the same)."""
        return dataclasses.replace(self, n_subjects=n_subjects)

    def signature(self) -> dict[str, Any]:
        """What decides a subject's content (:data:`SIGNATURE_FIELDS`), as plain JSON values."""
        out = {k: getattr(self, k) for k in SIGNATURE_FIELDS}
        out["mri_voxel_mm"] = list(self.mri_voxel_mm)
        return out
