"""The curve targets of N subjects (:class:`TargetSet`) and their file, ``targets.npz``.

A :class:`TargetSet` holds, per subject, the six curves and the extent read off the
aligned MRI spine (paper, Figure 3), the table plane, the same curves through the TRUE
transform where a synthetic cohort knows it, and which session's anatomy they were read
off. :mod:`spinelib.study.subject_targets` makes one subject's targets and
:mod:`spinelib.study.cohort_targets` a cohort's; the alignment section writes the
estimated set as ``targets.npz`` and the truth set as :data:`TRUTH_TARGETS_FILE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, UnreadableFileError
from ..io import read_arrays, write_arrays
from ..shape.curves import SpineCurves

__all__ = ["TargetSet", "ANATOMY_DXA", "ANATOMY_MRI", "TRUTH_TARGETS_FILE", "write_targets", "read_targets",
           "read_run_targets"]

#: ``TargetSet.anatomy`` of curves read off the DXA-session spine (``seg_dxa.nii.gz``).
ANATOMY_DXA = "dxa_session"
#: ``TargetSet.anatomy`` of curves read off the MRI-session spine (``seg.nii.gz``).
ANATOMY_MRI = "mri_session"
#: File name (in the run folder) of the truth targets written by the alignment section.
TRUTH_TARGETS_FILE = "truth_targets.npz"


@dataclass(frozen=True)
class TargetSet:
    """Targets of N subjects with K levels.

    Attributes
    ----------
    subject_id : (N,) str.
    split : (N,) str.
    values : (N, 6, K) float, curves in mm (``SpineCurves.values``).
    extent_mm : (N, 2) float, (top, bottom) row-mm.
    table_y_mm : (N,) float, the table plane measured on each MRI.
    values_true, extent_true_mm : the same through the TRUE transform (synthetic cohorts),
        NaN where unknown.
    anatomy : (N,) str, which session's spine the curves were read off: :data:`ANATOMY_MRI`
        (``seg.nii.gz``; the default) or :data:`ANATOMY_DXA` (``seg_dxa.nii.gz``).
    """

    subject_id: np.ndarray
    split: np.ndarray
    values: np.ndarray
    extent_mm: np.ndarray
    table_y_mm: np.ndarray
    values_true: np.ndarray
    extent_true_mm: np.ndarray
    anatomy: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.subject_id)
        if self.anatomy is None:
            object.__setattr__(self, "anatomy", np.full(n, ANATOMY_MRI, dtype="<U16"))
        anatomy = np.asarray(self.anatomy, dtype=str)
        if anatomy.shape != (n,):
            raise ShapeError(f"anatomy must have {n} entries, got shape {anatomy.shape}")
        bad = sorted(set(anatomy.tolist()) - {ANATOMY_MRI, ANATOMY_DXA})
        if bad:
            raise InvalidArgumentError(f"anatomy must be {ANATOMY_MRI!r} or {ANATOMY_DXA!r}, got {bad}")
        object.__setattr__(self, "anatomy", anatomy)
        if self.values.ndim != 3 or self.values.shape[:2] != (n, 6):
            raise ShapeError(f"values must be (N, 6, K) with N={n}, got {self.values.shape}")
        for name in ("split", "table_y_mm"):
            if len(getattr(self, name)) != n:
                raise ShapeError(f"{name} must have {n} entries")
        if self.extent_mm.shape != (n, 2) or self.values_true.shape != self.values.shape:
            raise ShapeError("extent_mm / values_true shapes do not match values")

    @property
    def n_levels(self) -> int:
        return int(self.values.shape[2])

    def __len__(self) -> int:
        return len(self.subject_id)

    def curves(self, i: int, *, true: bool = False) -> SpineCurves:
        """The i-th subject's targets as :class:`SpineCurves` (``true``: through the true transform)."""
        if true:
            return SpineCurves(self.values_true[i], self.extent_true_mm[i])
        return SpineCurves(self.values[i], self.extent_mm[i])

    def index(self, subject_id: str) -> int:
        hits = np.nonzero(self.subject_id == subject_id)[0]
        if hits.size == 0:
            raise InvalidArgumentError(f"no targets for subject {subject_id!r}")
        return int(hits[0])

    def select(self, split: str | Sequence[str]) -> "TargetSet":
        """The subjects of one split (or of several)."""
        splits = [split] if isinstance(split, str) else list(split)
        return self.take(np.nonzero(np.isin(self.split, splits))[0])

    def take(self, index: Sequence[int] | np.ndarray) -> "TargetSet":
        """The subjects at positions ``index`` (in that order)."""
        idx = np.asarray(index, dtype=int).reshape(-1)
        return TargetSet(*(np.asarray(getattr(self, f))[idx] for f in _FIELDS + ("anatomy",)))

    def subset(self, subject_ids: Sequence[str]) -> "TargetSet":
        """The listed subjects, in that order.

        Raises
        ------
        InvalidArgumentError
            A listed subject has no targets.
        """
        return self.take([self.index(str(s)) for s in subject_ids])


_FIELDS = ("subject_id", "split", "values", "extent_mm", "table_y_mm", "values_true", "extent_true_mm")


def write_targets(path: str | Path, targets: TargetSet) -> Path:
    """Write a :class:`TargetSet` as ``targets.npz`` atomically (no pickles inside)."""
    return write_arrays(path, {f: getattr(targets, f) for f in _FIELDS + ("anatomy",)})


def read_targets(path: str | Path) -> TargetSet:
    """Read a targets file written by :func:`write_targets` (a file without ``anatomy``,
    written before it existed, reads as MRI-session anatomy)."""
    arrays = read_arrays(path, what="targets file (written by the alignment section)")
    missing = [f for f in _FIELDS if f not in arrays]
    if missing:
        raise UnreadableFileError(f"{path} is not a targets file: it lacks {missing}")
    return TargetSet(*(arrays[f] for f in _FIELDS), anatomy=arrays.get("anatomy"))


def read_run_targets(run_dir: str | Path, n_levels: int) -> TargetSet:
    """A run folder's ``targets.npz``, checked against the profile's number of levels K.

    Raises
    ------
    MissingFileError, UnreadableFileError
        The run has no readable targets file (run the alignment section first).
    InvalidArgumentError
        The targets have another K than ``n_levels``.
    """
    from ..io.runfolder import run_paths

    path = run_paths(run_dir)["targets"]
    targets = read_targets(path)
    if targets.n_levels != int(n_levels):
        raise InvalidArgumentError(
            f"{path} holds curves with K = {targets.n_levels} levels but the profile's "
            f"n_levels is {n_levels}; pass --profile or -p n_levels {targets.n_levels}"
        )
    return targets
