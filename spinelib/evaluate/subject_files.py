"""What each subject's files say besides targets and predictions: which DXAs load, their
geometry, and the synthetic generator's true angles.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..errors import InvalidArgumentError, SpineLibError
from ..io import read_dxa, read_truth
from .cohort import EvalSet

__all__ = ["TRUTH_ANGLES", "loadable_dxa", "dxa_geometry", "truth_angles"]

#: The angle keys of ``truth.json`` ``"angles"`` used for agreement with the generator.
TRUTH_ANGLES: tuple[str, ...] = ("cobb_deg", "kyphosis_deg", "lordosis_deg")


def loadable_dxa(manifest: pd.DataFrame, subject_ids: Sequence[str], *, allow_pickle: bool = False,
                 progress: bool = True) -> tuple[list[str], pd.DataFrame]:
    """Which of the listed subjects' DXAs load: all a model needs to predict them.

    Returns
    -------
    (subject ids whose DXA loads, in the given order; DataFrame ``subject_id, reason`` of
    the others).
    """
    if "subject_id" not in manifest.columns or "dxa_path" not in manifest.columns:
        raise InvalidArgumentError("manifest needs subject_id and dxa_path columns")
    by = manifest.assign(subject_id=manifest["subject_id"].astype(str)).drop_duplicates("subject_id")
    by = by.set_index("subject_id")
    ok, bad = [], []
    for sid in tqdm([str(s) for s in subject_ids], desc="checking DXAs", unit="scan", disable=None if progress else True,
                    leave=False):
        if sid not in by.index:
            bad.append({"subject_id": sid, "reason": "not in the manifest"})
            continue
        try:
            read_dxa(by.loc[sid, "dxa_path"], allow_pickle=allow_pickle)
        except SpineLibError as exc:
            bad.append({"subject_id": sid, "reason": f"DXA does not load: {type(exc).__name__}: {exc}"})
            continue
        ok.append(sid)
    return ok, pd.DataFrame(bad, columns=["subject_id", "reason"])


def dxa_geometry(es: EvalSet, *, progress: bool = True, allow_pickle: bool = False) -> pd.DataFrame:
    """Shape and pixel spacing of each subject's DXA (``allow_pickle``: the run's opt-in to
    reading DXAs stored as pickles).

    Returns
    -------
    DataFrame with ``subject_id, rows, cols, row_mm, col_mm`` (spacing in mm per pixel).
    """
    out = []
    for sid, path in tqdm(list(zip(es.subject_id, es.manifest["dxa_path"])), desc="DXA geometry",
                          unit="scan", disable=None if progress else True, leave=False):
        d = read_dxa(path, allow_pickle=allow_pickle)
        out.append({"subject_id": str(sid), "rows": int(d.shape[0]), "cols": int(d.shape[1]),
                    "row_mm": float(d.pixel_spacing_mm[0]), "col_mm": float(d.pixel_spacing_mm[1])})
    return pd.DataFrame(out)


def truth_angles(es: EvalSet, *, session: str | None = None) -> pd.DataFrame:
    """The generator's true angles per subject.

    ``session="dxa"`` reads ``truth.json`` ``"angles_dxa_session"`` (the spine the DXA
    shows, after the posture change; ``"angles"`` where a cohort lacks it), ``"mri"``
    reads ``"angles"`` (the MRI session). By default the session of the set's reference:
    DXA for ``"truth"``, MRI for ``"estimated"`` (whose targets come from the MRI spine).

    Returns
    -------
    DataFrame ``subject_id, cobb_deg, kyphosis_deg, lordosis_deg``; NaN where the subject
    has no truth file (real data) or the file lacks the angle.
    """
    if session is None:
        session = "dxa" if es.reference == "truth" else "mri"
    if session not in ("dxa", "mri"):
        raise InvalidArgumentError(f"session must be 'dxa' or 'mri', got {session!r}")
    rows = []
    for sid, tp in zip(es.subject_id, es.manifest.get("truth_path", pd.Series([""] * len(es)))):
        rec = {"subject_id": str(sid), **{k: np.nan for k in TRUTH_ANGLES}}
        if isinstance(tp, str) and tp.strip():
            truth = read_truth(tp)
            angles = (truth.get("angles_dxa_session") if session == "dxa" else None) or truth.get("angles", {}) or {}
            for k in TRUTH_ANGLES:
                v = angles.get(k)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    rec[k] = float(v)
        rows.append(rec)
    return pd.DataFrame(rows, columns=["subject_id", *TRUTH_ANGLES])
