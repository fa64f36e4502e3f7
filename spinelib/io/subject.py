"""One subject's files together: its truth record, loading and validating it, report-and-skip checks.

A subject is one manifest row (:mod:`spinelib.io.manifest`): a DXA scan, fat and water
MRI and a segmentation on one voxel grid, and for synthetic cohorts ``<id>/truth.json``,
the generator's record (its ``dxa_session_seg`` names the DXA session's segmentation,
``seg_dxa.nii.gz``, on the grid of ``seg``). :func:`load_subject` reads and cross-checks
them; :func:`check_subject` and :func:`check_cohort` turn a failure into a reason, for the
pipeline's "report and skip" of bad subjects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import (
    DuplicateIdError,
    InvalidArgumentError,
    ManifestError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
    UnreadableFileError,
)
from ..util.atomic import write_json_atomic
from .checks import existing_file
from .dxa import DXAImage, read_dxa
from .manifest import MANIFEST_COLUMNS, SPLITS, manifest_cell, read_manifest
from .nifti import Volume, read_volume

__all__ = ["Subject", "write_truth", "read_truth", "load_subject", "check_subject", "check_cohort"]


@dataclass(frozen=True, eq=False)
class Subject:
    """Everything on disk about one subject, loaded and validated."""

    id: str
    split: str
    dxa: DXAImage
    fat: Volume
    water: Volume
    seg: Volume
    truth: dict | None = None

    @property
    def subject_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Subject({self.id!r}, {self.split}, {self.dxa!r}, seg {self.seg.shape}, truth={self.truth is not None})"


# --------------------------------------------------------------------------- truth record


def write_truth(path: str | Path, truth: Mapping[str, Any]) -> Path:
    """Write a subject's generator record as JSON (numpy values converted); returns ``path``.

    Raises
    ------
    InvalidArgumentError
        If ``truth`` is not a mapping with string keys or holds non-JSON values.
    NonFiniteError
        If it holds NaN or infinity (JSON cannot).
    """
    dest = Path(path)
    if not isinstance(truth, Mapping):
        raise InvalidArgumentError(f"truth for {dest} must be a dict, got {type(truth).__name__}")
    bad = [k for k in truth if not isinstance(k, str)]
    if bad:
        raise InvalidArgumentError(f"truth for {dest} has non-string keys {bad!r}")
    try:
        return write_json_atomic(dest, dict(truth))
    except ValueError as exc:
        if isinstance(exc, SpineLibError):
            raise
        raise NonFiniteError(f"truth for {dest} holds NaN or infinite values: {exc}") from exc
    except TypeError as exc:
        raise InvalidArgumentError(f"truth for {dest} holds a value JSON cannot store: {exc}") from exc


def read_truth(path: str | Path) -> dict:
    """Read a subject's ``truth.json``.

    Raises
    ------
    MissingFileError, UnreadableFileError (invalid JSON or not an object)
    """
    p = existing_file(path, "truth file")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(f"cannot read truth file {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise UnreadableFileError(f"truth file {p} holds a {type(obj).__name__}, expected a JSON object")
    return obj


# --------------------------------------------------------------------------- loading


def _row_dict(row_or_manifest: Any, subject_id: str | None) -> dict[str, Any]:
    """The manifest row of ``subject_id`` (or the one row given) as a dict."""
    import pandas as pd

    obj = row_or_manifest
    if isinstance(obj, (str, Path)):
        obj = read_manifest(obj)
    if isinstance(obj, pd.DataFrame):
        if subject_id is None:
            raise InvalidArgumentError("load_subject(manifest, subject_id): subject_id is required with a manifest")
        match = obj[obj["subject_id"].astype(str) == str(subject_id)]
        if len(match) == 0:
            raise ManifestError(f"subject {subject_id!r} is not in the manifest")
        if len(match) > 1:
            raise DuplicateIdError(f"subject {subject_id!r} appears {len(match)} times in the manifest")
        return match.iloc[0].to_dict()
    if isinstance(obj, pd.Series):
        obj = obj.to_dict()
    if not isinstance(obj, Mapping):
        raise InvalidArgumentError(
            f"load_subject needs a manifest row (dict/Series), a DataFrame or a manifest path, "
            f"got {type(obj).__name__}"
        )
    row = dict(obj)
    if subject_id is not None and str(row.get("subject_id")) != str(subject_id):
        raise InvalidArgumentError(f"row is subject {row.get('subject_id')!r}, not {subject_id!r}")
    missing = [c for c in MANIFEST_COLUMNS[:-1] if c not in row]
    if missing:
        raise ManifestError(f"manifest row {row.get('subject_id', '?')!r} lacks {missing}")
    return row


def _check_same_grid(ref: Volume, others: Iterable[Volume]) -> None:
    """Raise ShapeError unless every volume has ``ref``'s shape and (to 1e-3 mm) affine."""
    for other in others:
        if other.shape != ref.shape:
            raise ShapeError(f"volume {other.path} has shape {other.shape} but {ref.path} has {ref.shape}")
        if not np.allclose(other.affine, ref.affine, atol=1e-3, rtol=0):
            raise ShapeError(
                f"volume {other.path} has another affine than {ref.path}: "
                f"{other.affine.round(4).tolist()} vs {ref.affine.round(4).tolist()}"
            )


def _truth_of(row: Mapping[str, Any], sid: str) -> dict | None:
    """The row's truth record (None without one), checked to be subject ``sid``'s."""
    tp = row.get("truth_path")
    if not manifest_cell(tp):
        return None
    truth = read_truth(tp)
    if "subject_id" in truth and str(truth["subject_id"]) != sid:
        raise ManifestError(f"truth file {tp} is for subject {truth['subject_id']!r}, not {sid!r}")
    return truth


def load_subject(
    row_or_manifest: Any,
    subject_id: str | None = None,
    *,
    allow_pickle: bool = False,
    dxa_pixel_spacing_mm: Any = None,
) -> Subject:
    """Load and validate one subject: DXA, fat and water MRI, segmentation, truth.

    Parameters
    ----------
    row_or_manifest : dict or pandas.Series (one manifest row, as from
        :func:`~spinelib.io.read_manifest`), or a manifest DataFrame or path with ``subject_id``.
        Relative paths in a bare row are taken relative to the working directory.
    allow_pickle, dxa_pixel_spacing_mm :
        Passed to :func:`~spinelib.io.read_dxa`.

    Checks, besides each file's own: the three volumes have the same shape and
    (to 1e-3 mm) the same affine; the truth record, when present, names the
    same subject.

    Raises
    ------
    Any error of the readers, ShapeError on mismatched volumes, ManifestError on
    a truth record of another subject.
    """
    row = _row_dict(row_or_manifest, subject_id)
    sid = str(row["subject_id"])
    split = str(row["split"])
    if split not in SPLITS:
        raise ManifestError(f"subject {sid!r} has split {split!r}; allowed: {list(SPLITS)}")
    dxa = read_dxa(row["dxa_path"], allow_pickle=allow_pickle, pixel_spacing_mm=dxa_pixel_spacing_mm)
    fat = read_volume(row["mri_fat_path"], kind="mri")
    water = read_volume(row["mri_water_path"], kind="mri")
    seg = read_volume(row["seg_path"], kind="seg")
    _check_same_grid(fat, (water, seg))
    truth = _truth_of(row, sid)
    return Subject(id=sid, split=split, dxa=dxa, fat=fat, water=water, seg=seg, truth=truth)


# --------------------------------------------------------------------------- report and skip


def check_subject(row: Any, *, allow_pickle: bool = False, dxa_pixel_spacing_mm: Any = None) -> str | None:
    """``None`` if :func:`load_subject` accepts ``row``, else the reason, as a string.

    For the pipeline's "report and skip" of bad subjects: the reason starts with
    the error class name and names the file. Only :class:`SpineLibError` is
    turned into a reason; anything else is a bug and propagates.
    """
    try:
        load_subject(row, allow_pickle=allow_pickle, dxa_pixel_spacing_mm=dxa_pixel_spacing_mm)
    except SpineLibError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_cohort(manifest: Any, **kwargs: Any) -> dict[str, str]:
    """Reasons of every bad subject of a manifest (DataFrame or path), ``{id: reason}``.

    Good subjects are absent from the result; ``kwargs`` go to :func:`check_subject`.
    """
    df = read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
    bad: dict[str, str] = {}
    rows: Iterable[Mapping[str, Any]] = df.to_dict(orient="records")
    for row in rows:
        reason = check_subject(row, **kwargs)
        if reason is not None:
            bad[str(row["subject_id"])] = reason
    return bad
