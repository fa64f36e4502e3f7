"""What each subject's files say besides targets and predictions: which DXAs load, their
geometry, the synthetic generator's true angles, and how much of each synthetic spine's
height above the table its AP image cannot show.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..errors import InvalidArgumentError, SpineLibError, SubjectsFailedError
from ..io import read_dxa, read_truth
from ..io.checks import check_integer
from ..synth.hidden import hidden_depth_offset
from ..util.workers import Engine, Failed, fan_out
from .cohort import EvalSet

__all__ = ["TRUTH_ANGLES", "loadable_dxa", "dxa_geometry", "truth_angles", "hidden_depth_offsets"]

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


def _hidden_offset(job: dict) -> np.ndarray:
    """One subject's :func:`~spinelib.synth.hidden.hidden_depth_offset` (a fan-out item)."""
    return hidden_depth_offset(read_truth(job["truth_path"]), job["n_levels"], n_draws=job["n_draws"],
                               seed=job["seed"])


def hidden_depth_offsets(es: EvalSet, *, n_draws: int, seed: int = 0, jobs=1, progress: bool = True) -> np.ndarray:
    """(N, K) offset (mm) of the best estimate of each subject's sagittal centre that its AP image
    allows from the true one (:func:`spinelib.synth.hidden.hidden_depth_offset`), at the set's
    ``K`` levels, subjects in the set's order.

    Only for synthetic subjects against the DXA-session truth (``es.reference == "truth"``): the
    offsets are those of the spine the DXA shows. ``jobs``: local processes or an
    :class:`~spinelib.util.workers.Engine`; the offsets do not depend on it.

    Raises
    ------
    InvalidArgumentError
        ``es`` is not an EvalSet, its reference is not ``"truth"``, a subject has no truth file
        (named), ``n_draws`` < 1 or ``seed`` < 0.
    SubjectsFailedError
        A subject's truth file does not load or is not the generator's (each named, with why).
    """
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    if es.reference != "truth":
        raise InvalidArgumentError(f"hidden depth offsets are those of the DXA-session truth; the set {es.name!r} "
                                   f"is against the {es.reference!r} reference")
    n_draws, seed = check_integer(n_draws, "n_draws", 1), check_integer(seed, "seed", 0)
    paths = list(es.manifest["truth_path"]) if "truth_path" in es.manifest else [""] * len(es)
    missing = [str(s) for s, p in zip(es.subject_id, paths) if not (isinstance(p, str) and p.strip())]
    if missing:
        raise InvalidArgumentError(f"subjects {missing[:5]} have no truth file: hidden depth offsets need the "
                                   "generator's")
    n_levels = int(np.asarray(es.targets.values).shape[2])
    work = [{"truth_path": p, "n_levels": n_levels, "n_draws": n_draws, "seed": seed} for p in paths]
    results = fan_out(_hidden_offset, work, keys=[str(s) for s in es.subject_id], engine=Engine.of(jobs),
                      desc="hidden depth", progress=progress)
    failed = [r for r in results if isinstance(r, Failed)]
    if failed:  # the floor covers every subject the models are scored on, or it is no floor of theirs
        raise SubjectsFailedError(f"hidden depth failed for {len(failed)} of {len(work)} subjects: "
                                  + "; ".join(f"{f.key}: {f.reason}" for f in failed[:10]))
    return np.stack(results)
