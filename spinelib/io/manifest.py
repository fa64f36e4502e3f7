"""The cohort manifest (``manifest.csv``): its columns, validation, reading and writing.

File format, one row per subject, columns :data:`MANIFEST_COLUMNS`::

    subject_id, split, dxa_path, mri_fat_path, mri_water_path, seg_path, truth_path

``split`` is one of :data:`SPLITS`; paths are relative to the manifest's folder (or
absolute); ``truth_path`` is empty for real data. Extra columns are kept after these.

Examples
--------
>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> row = dict(subject_id="s1", split="train", dxa_path="s1/dxa.npz", mri_fat_path="s1/fat.nii.gz",
...            mri_water_path="s1/water.nii.gz", seg_path="s1/seg.nii.gz")
>>> df = read_manifest(write_manifest(d / "manifest.csv", [row]))
>>> df["truth_path"].tolist(), df["dxa_path"][0] == str(d.resolve() / "s1" / "dxa.npz")
([''], True)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import DuplicateIdError, InvalidArgumentError, ManifestError, UnreadableFileError
from ..util.atomic import write_text_atomic
from .checks import existing_file

__all__ = [
    "MANIFEST_COLUMNS",
    "PATH_COLUMNS",
    "SPLITS",
    "check_split_fractions",
    "manifest_row",
    "manifest_cell",
    "validate_manifest",
    "write_manifest",
    "read_manifest",
]

#: Columns of ``manifest.csv``, in file order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "split",
    "dxa_path",
    "mri_fat_path",
    "mri_water_path",
    "seg_path",
    "truth_path",
)
#: Path columns; all but ``truth_path`` are required to be non-empty.
PATH_COLUMNS: tuple[str, ...] = MANIFEST_COLUMNS[2:]
_REQUIRED_PATHS: tuple[str, ...] = PATH_COLUMNS[:-1]
#: The allowed values of ``split``.
SPLITS: tuple[str, ...] = ("train", "val", "test")


def check_split_fractions(fractions: Any) -> tuple[float, float, float]:
    """``fractions`` (train, val, test) as three floats, refused unless they are non-negative
    and sum to 1 (within 1e-6).

    >>> check_split_fractions([0.7, 0.1, 0.2])
    (0.7, 0.1, 0.2)

    Raises
    ------
    InvalidArgumentError
        Not three numbers, a negative or non-finite one, or a sum other than 1.
    """
    try:
        f = [float(v) for v in fractions]
    except (TypeError, ValueError):
        f = []
    if isinstance(fractions, (str, bytes)) or len(f) != len(SPLITS) or not all(math.isfinite(v) and v >= 0 for v in f) \
            or abs(sum(f) - 1.0) > 1e-6:
        raise InvalidArgumentError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    return (f[0], f[1], f[2])


#: Where each path column points in a cohort this package writes (``spinelib synth``,
#: ``spinelib ingest``): a file of that name in the subject's folder ``<subject_id>/``.
_FOLDER_FILES: dict[str, str] = {
    "dxa_path": "dxa.npz",
    "mri_fat_path": "mri_fat.nii.gz",
    "mri_water_path": "mri_water.nii.gz",
    "seg_path": "seg.nii.gz",
    "truth_path": "truth.json",
}


def manifest_row(subject_id: str, split: str, *, truth: bool) -> dict[str, str]:
    """The manifest row of a subject whose files lie in its folder ``<subject_id>/`` beside
    the manifest, as the cohort writers lay them out.

    Parameters
    ----------
    subject_id : the subject, also the name of its folder.
    split : one of :data:`SPLITS` (checked when the manifest is written).
    truth : whether the folder holds a ``truth.json`` (synthetic cohorts); without one,
        ``truth_path`` is empty (real data).

    Returns
    -------
    dict
        ``{column: value}`` for every column of :data:`MANIFEST_COLUMNS`, paths relative to
        the manifest's folder.

    Examples
    --------
    >>> row = manifest_row("s1", "train", truth=False)
    >>> row["dxa_path"], row["seg_path"], row["truth_path"]
    ('s1/dxa.npz', 's1/seg.nii.gz', '')
    """
    row = {"subject_id": subject_id, "split": split}
    row.update({col: f"{subject_id}/{name}" for col, name in _FOLDER_FILES.items()})
    if not truth:
        row["truth_path"] = ""
    return row


def manifest_cell(value: Any) -> str:
    """A manifest cell as a stripped string; ``None`` and NaN (pandas' missing) give ``""``."""
    return "" if (value is None or (isinstance(value, float) and math.isnan(value))) else str(value).strip()


def _mname(path: str | Path | None) -> str:
    """How error messages name the manifest."""
    return f"manifest {path}" if path is not None else "manifest"


def _text_columns(df, path: str | Path | None):
    """A copy of ``df`` with every contract column present and its cells as stripped strings."""
    df = df.copy()
    if "truth_path" not in df.columns:
        df["truth_path"] = ""
    if len(df) == 0:
        raise ManifestError(f"{_mname(path)} lists no subjects")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{_mname(path)} lacks columns {missing}; expected {list(MANIFEST_COLUMNS)}"
        )
    for col in MANIFEST_COLUMNS:
        df[col] = [manifest_cell(v) for v in df[col]]
    return df


def _check_rows(df, path: str | Path | None, on_duplicate: str) -> None:
    """Raise on empty ids, unknown splits, repeated ids (when raising) or empty required paths."""
    empty_ids = [i for i, v in enumerate(df["subject_id"]) if not v]
    if empty_ids:
        raise ManifestError(f"{_mname(path)} has empty subject_id in rows {empty_ids[:10]}")
    bad_split = sorted({s for s in df["subject_id"][~df["split"].isin(SPLITS)]})
    if bad_split:
        splits = sorted(set(df["split"][~df["split"].isin(SPLITS)]))
        raise ManifestError(
            f"{_mname(path)} has split values {splits} (subjects {bad_split[:10]}); "
            f"allowed: {list(SPLITS)}"
        )
    dup = df["subject_id"][df["subject_id"].duplicated()].unique().tolist()
    if dup and on_duplicate == "raise":
        raise DuplicateIdError(f"{_mname(path)} lists subject ids more than once: {dup[:10]}")
    for col in _REQUIRED_PATHS:
        empty = df["subject_id"][df[col] == ""].tolist()
        if empty:
            raise ManifestError(f"{_mname(path)} has empty {col} for subjects {empty[:10]}")


def validate_manifest(df, *, path: str | Path | None = None, on_duplicate: str = "raise"):
    """Check a manifest table; returns a cleaned copy with columns in file order.

    Adds an empty ``truth_path`` when absent, turns every cell of the contract's
    columns into a stripped string (empty for missing) and keeps extra columns
    after them.

    Parameters
    ----------
    on_duplicate : {"raise", "report"}
        ``"raise"`` (strict, the default): an id listed twice is an error.
        ``"report"``: every row is kept, ids may repeat; the caller reports them
        (the pipeline uses :func:`spinelib.io.quality.split_duplicates`).

    Raises
    ------
    ManifestError
        Missing columns, no rows, empty ids or required paths, a split not in
        ``SPLITS``.
    DuplicateIdError
        The same ``subject_id`` twice (``on_duplicate="raise"``).
    InvalidArgumentError
        An unknown ``on_duplicate``.
    """
    import pandas as pd

    if on_duplicate not in ("raise", "report"):
        raise InvalidArgumentError(f"on_duplicate must be 'raise' or 'report', got {on_duplicate!r}")
    df = _text_columns(df, path)
    _check_rows(df, path, on_duplicate)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return pd.DataFrame(df[list(MANIFEST_COLUMNS) + extra]).reset_index(drop=True)


def _manifest_frame(rows: Any, where: str | Path | None):
    """``rows`` (a DataFrame or an iterable of mappings) as a new DataFrame."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    else:
        try:
            rows = list(rows)
        except TypeError:
            raise ManifestError(f"manifest rows for {where} must be a list of dicts or a DataFrame") from None
        if rows and not all(isinstance(r, Mapping) for r in rows):
            raise ManifestError(f"manifest rows for {where} must be dicts (mappings)")
        df = pd.DataFrame([dict(r) for r in rows])
    return df


def write_manifest(path: str | Path, rows: Any) -> Path:
    """Validate and write ``manifest.csv`` atomically; returns ``path``.

    ``rows`` is a list of dicts or a DataFrame with the columns of
    ``MANIFEST_COLUMNS`` (``truth_path`` may be absent: written empty); extra
    columns are kept after them. Paths are written as given: relative paths are
    relative to the manifest's folder.

    Raises
    ------
    ManifestError, DuplicateIdError
    """
    dest = Path(path)
    df = validate_manifest(_manifest_frame(rows, dest), path=dest)
    text = df.to_csv(index=False, lineterminator="\n")
    return write_text_atomic(dest, text)


def _resolve(value: str | Path, base: Path) -> Path:
    """``value`` with ``~`` expanded, made absolute against ``base`` and normalised."""
    q = Path(os.path.expanduser(str(value)))
    return Path(os.path.normpath(q if q.is_absolute() else base / q))


def read_manifest(path: str | Path, *, on_duplicate: str = "raise"):
    """Read and validate ``manifest.csv``; paths come back absolute.

    Relative paths are resolved against the manifest's folder; an empty
    ``truth_path`` stays ``""`` (real data). Files are not opened here: use
    :func:`spinelib.io.load_subject` or :func:`spinelib.io.check_subject` per subject.

    ``on_duplicate="report"`` keeps rows whose ``subject_id`` repeats instead of
    raising :class:`DuplicateIdError` (see :func:`validate_manifest`); the pipeline
    reads its cohort that way and reports them (:mod:`spinelib.io.quality`).

    Returns
    -------
    pandas.DataFrame
        Columns ``MANIFEST_COLUMNS`` (all str), then any extra columns.

    Raises
    ------
    MissingFileError, UnreadableFileError, ManifestError, DuplicateIdError
    """
    import pandas as pd

    p = existing_file(path, "manifest")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"cannot read manifest {p}: {type(exc).__name__}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    df = validate_manifest(df, path=p, on_duplicate=on_duplicate)
    base = p.resolve().parent
    for col in PATH_COLUMNS:
        df[col] = [str(_resolve(v, base)) if v else "" for v in df[col]]
    return df
