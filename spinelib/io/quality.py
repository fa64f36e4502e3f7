"""Bad subjects of a cohort: which were left out, at which stage, and why.

The pipeline never stops for one bad subject and never drops one silently. A subject is
left out at the first stage that fails, and listed in ``<run>/tables/bad_subjects.csv``
(columns :data:`BAD_SUBJECT_COLUMNS`) with the reason:

``manifest``
    its ``subject_id`` is listed more than once. *Every* row of a duplicated id is left
    out, not only the later ones: the manifest is ambiguous about which files belong to
    that participant, and keeping the first row would silently train on what may be the
    wrong person's scans.
``load``
    a file is missing, corrupt, truncated, of the wrong shape, holds NaN/inf, or the
    segmentation has no spine-column label (:func:`spinelib.io.load_subject`).
``alignment``
    the DXA/MRI pair cannot be aligned, or its alignment is not trusted (low NCC scores,
    angle at the search bound): misoriented images and pairs of two different people end
    here (:func:`spinelib.align.align_pair`).
``targets``
    the curves cannot be read off the aligned spine.

When too few subjects remain, :func:`require_subjects` stops the run with an
:class:`~spinelib.errors.InsufficientDataError` that says how many remain and why the
others were dropped.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"subject_id": ["a", "b", "a"], "split": ["train"] * 3})
>>> kept, bad = split_duplicates(df)
>>> kept["subject_id"].tolist(), bad["subject_id"].tolist(), bad["stage"].unique().tolist()
(['b'], ['a', 'a'], ['manifest'])
>>> stage_and_reason("load failed: NonFiniteError: bone in x.npz holds 3 NaN or infinite values")
('load', 'NonFiniteError: bone in x.npz holds 3 NaN or infinite values')
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InsufficientDataError, InvalidArgumentError
from .manifest import SPLITS, read_manifest

log = logging.getLogger(__name__)

__all__ = [
    "BAD_SUBJECT_COLUMNS",
    "STAGES",
    "read_cohort_manifest",
    "split_duplicates",
    "stage_and_reason",
    "bad_subjects",
    "quality_block",
    "require_subjects",
]

#: Columns of ``tables/bad_subjects.csv``, in order.
BAD_SUBJECT_COLUMNS: tuple[str, ...] = ("subject_id", "stage", "reason")
#: Stages at which a subject can be left out, in pipeline order.
STAGES: tuple[str, ...] = ("manifest", "load", "alignment", "targets")
# prefixes that spinelib.study.subject_targets / spinelib.align.cohort put in front of a failure reason
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("load failed:", "load"),
    ("alignment failed:", "alignment"),
    ("targets failed:", "targets"),
)


def _frame(rows: Iterable[Mapping[str, Any]]):
    import pandas as pd

    return pd.DataFrame.from_records(list(rows), columns=list(BAD_SUBJECT_COLUMNS))


def read_cohort_manifest(path: str | Path):
    """Read a cohort manifest the pipeline's way: duplicated ids reported, not fatal.

    Every other problem of the manifest itself (missing columns, bad split names, no
    rows) still raises, as in :func:`spinelib.io.read_manifest`.

    Returns
    -------
    (manifest, bad) : the manifest without the rows of duplicated ids (paths absolute),
        and those rows as a :data:`BAD_SUBJECT_COLUMNS` table at stage ``manifest``.

    Raises
    ------
    MissingFileError, UnreadableFileError, ManifestError
    """
    return split_duplicates(read_manifest(path, on_duplicate="report"))


def split_duplicates(manifest):
    """Separate the rows whose ``subject_id`` repeats; every occurrence is rejected.

    Parameters
    ----------
    manifest : pandas.DataFrame with a ``subject_id`` column (ids may repeat).

    Returns
    -------
    (kept, bad) : ``kept`` the rows of ids listed once (index reset); ``bad`` one row per
        rejected manifest row, stage ``manifest``, the reason naming how often and on which
        data rows (1-based, as in the CSV below its header) the id appears.

    Raises
    ------
    InvalidArgumentError
        If ``manifest`` has no ``subject_id`` column.
    """
    if "subject_id" not in getattr(manifest, "columns", ()):
        raise InvalidArgumentError("manifest must be a DataFrame with a subject_id column")
    ids = manifest["subject_id"].astype(str)
    counts = ids.value_counts()
    dup = ids.map(counts).to_numpy() > 1
    rows = []
    for sid in ids[dup].unique():
        where = [int(i) + 1 for i in np.flatnonzero(ids.to_numpy() == sid)]
        reason = (f"DuplicateIdError: subject id listed {len(where)} times in the manifest (rows "
                  f"{', '.join(map(str, where))}); every row of it is left out because the "
                  "manifest does not say which files are this participant's")
        rows += [{"subject_id": sid, "stage": "manifest", "reason": reason}] * len(where)
    if rows:
        log.warning("%d manifest rows left out: %d subject ids listed more than once",
                    len(rows), int((counts > 1).sum()))
    return manifest.loc[~dup].reset_index(drop=True), _frame(rows)


def stage_and_reason(reason: str) -> tuple[str, str]:
    """The stage (:data:`STAGES`) at which a subject failed, from an alignment-table reason.

    ``"load failed: ..."``, ``"alignment failed: ..."`` and ``"targets failed: ..."`` (written
    by :mod:`spinelib.study.cohort_targets` and :mod:`spinelib.align.cohort`) name their stage; any other
    non-empty reason is an alignment the pair got but that is not trusted.
    """
    text = str(reason).strip()
    for prefix, stage in _PREFIXES:
        if text.startswith(prefix):
            return stage, text[len(prefix):].strip()
    return "alignment", f"alignment not trusted: {text}" if text else "alignment not trusted"


def bad_subjects(alignment_table, *earlier) -> Any:
    """Every subject left out of a run, one row each: ``subject_id, stage, reason``.

    Parameters
    ----------
    alignment_table : the table of :func:`spinelib.study.cohort_targets.prepare_cohort` (one row per
        manifest row it was given; ``trusted`` False for the subjects without targets).
    *earlier : tables of :data:`BAD_SUBJECT_COLUMNS` from before the alignment (e.g. the
        duplicated ids of :func:`read_cohort_manifest`); listed first.

    Returns
    -------
    pandas.DataFrame with columns :data:`BAD_SUBJECT_COLUMNS`, stages in pipeline order,
    subjects in manifest order within a stage.
    """
    import pandas as pd

    for col in ("subject_id", "trusted", "reason"):
        if col not in getattr(alignment_table, "columns", ()):
            raise InvalidArgumentError(f"alignment_table lacks column {col!r}")
    rows = []
    untrusted = alignment_table.loc[~alignment_table["trusted"].astype(bool)]
    for sid, reason in zip(untrusted["subject_id"], untrusted["reason"]):
        stage, why = stage_and_reason("" if reason is None or reason != reason else reason)
        rows.append({"subject_id": str(sid), "stage": stage, "reason": why})
    parts = [e.loc[:, list(BAD_SUBJECT_COLUMNS)] for e in earlier if e is not None and len(e)]
    out = pd.concat([*parts, _frame(rows)], ignore_index=True) if parts else _frame(rows)
    order = {s: i for i, s in enumerate(STAGES)}
    out = out.assign(_o=out["stage"].map(order)).sort_values("_o", kind="stable").drop(columns="_o")
    return out.reset_index(drop=True)


def _by_stage(bad) -> dict[str, int]:
    c = Counter(bad["stage"]) if bad is not None and len(bad) else Counter()
    return {s: int(c[s]) for s in STAGES if c[s]}


def quality_block(bad, n_rows: int) -> dict[str, Any]:
    """The ``data_quality`` block of ``metrics.json``.

    ``n_rows`` is the number of manifest rows read; the block holds it, the number left
    out (``n_bad``) and the number left out at each stage (``bad_by_stage``).
    """
    if int(n_rows) < 0:
        raise InvalidArgumentError(f"n_rows must be >= 0, got {n_rows}")
    return {"n_rows": int(n_rows), "n_bad": int(len(bad)), "bad_by_stage": _by_stage(bad)}


def _why(bad) -> str:
    if bad is None or not len(bad):
        return "no subject was left out"
    parts = []
    for stage in STAGES:
        sel = bad[bad["stage"] == stage]
        if not len(sel):
            continue
        # the error class (first word of the reason) says what kind of problem it was
        kinds = Counter(str(r).split(":", 1)[0] if ":" in str(r) else str(r)[:40] for r in sel["reason"])
        top = ", ".join(f"{k} x{n}" for k, n in kinds.most_common(3))
        parts.append(f"{len(sel)} at {stage} ({top})")
    return f"{len(bad)} left out: " + "; ".join(parts)


def require_subjects(splits: Sequence[str], *, min_subjects: int, bad=None,
                     where: str = "tables/bad_subjects.csv") -> dict[str, int]:
    """Check that enough usable subjects remain; their count per split.

    Parameters
    ----------
    splits : (N,) the split of each usable subject (e.g. ``targets.split``).
    min_subjects : the profile's ``min_subjects``; at least this many must remain, and at
        least one in each of train, val and test.
    bad : the :func:`bad_subjects` table, to say why the others were dropped.
    where : where the full list was written (named in the message).

    Raises
    ------
    InsufficientDataError
        Naming how many remain (per split), the minimum, and how many were dropped at
        which stage, for which kinds of error.
    InvalidArgumentError
        For a negative ``min_subjects``.
    """
    if int(min_subjects) < 0:
        raise InvalidArgumentError(f"min_subjects must be >= 0, got {min_subjects}")
    s = [str(x) for x in np.asarray(splits).reshape(-1)]
    counts = {k: s.count(k) for k in SPLITS}
    empty = [k for k in SPLITS if counts[k] == 0]
    if len(s) < int(min_subjects) or empty:
        per = ", ".join(f"{k} {counts[k]}" for k in SPLITS)
        need = f"at least min_subjects = {int(min_subjects)} and one per split"
        if empty:
            need += f" (none in {', '.join(empty)})"
        raise InsufficientDataError(
            f"only {len(s)} usable subjects remain ({per}); the run needs {need}. "
            f"{_why(bad)}; every one is listed with its reason in {where}"
        )
    return counts
