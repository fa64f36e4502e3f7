"""What a subject's targets depend on besides its files, as one typed, frozen value.

:class:`TargetConfig` is built once from the run profile (:meth:`TargetConfig.from_profile`)
by the alignment section and passed down: to each subject's target construction
(:func:`spinelib.study.subject_targets.subject_targets`), to the cohort's
(:mod:`spinelib.study.cohort_targets`), and as the name of the run's store of per-subject
results (:meth:`TargetConfig.key`), so that a changed setting never reads a stale result.

Examples
--------
>>> from spinelib.profiles import get_profile
>>> cfg = TargetConfig.from_profile(get_profile("smoke"))
>>> cfg.n_levels, cfg.align.pixel_mm, cfg.allow_pickle
(32, 6.6, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..align.config import AlignConfig
from ..errors import InvalidArgumentError
from ..shape.curves import check_levels

__all__ = ["TargetConfig"]


@dataclass(frozen=True)
class TargetConfig:
    """Settings of the target construction.

    Parameters
    ----------
    align : AlignConfig
        The two-stage alignment's settings.
    n_levels : int
        K, levels per curve (>= 3).
    allow_pickle : bool
        Read DXA pickles (UK Biobank preprocessing); unpickling runs code, so only on the
        run's explicit opt-in.
    """

    align: AlignConfig
    n_levels: int
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.align, AlignConfig):
            raise InvalidArgumentError(f"align must be an AlignConfig, got {type(self.align).__name__}")
        object.__setattr__(self, "n_levels", check_levels(self.n_levels))
        if not isinstance(self.allow_pickle, bool):
            raise InvalidArgumentError(f"allow_pickle must be True or False, got {self.allow_pickle!r}")

    @classmethod
    def from_profile(cls, params: Mapping[str, Any]) -> "TargetConfig":
        """The target settings of a run profile: its ``align_*`` keys, ``n_levels`` and
        ``allow_pickle`` (False when absent).

        Raises
        ------
        InvalidArgumentError
            A key is missing or a value is out of range.
        """
        if not isinstance(params, Mapping):
            raise InvalidArgumentError(f"params must be a profile mapping, got {type(params).__name__}")
        if "n_levels" not in params:
            raise InvalidArgumentError("profile parameters lack n_levels (K, levels per curve)")
        return cls(AlignConfig.from_profile(params), params["n_levels"], bool(params.get("allow_pickle", False)))

    def key(self) -> dict[str, Any]:
        """Every setting as a flat dict under its profile key (a store's name, a cache key)."""
        return {**self.align.to_dict(), "n_levels": self.n_levels, "allow_pickle": self.allow_pickle}
