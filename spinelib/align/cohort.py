"""Align every subject of a cohort: one row per subject, failures reported, never dropped."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError, SpineLibError
from ..spine import LEVELS
from ..geometry.transform import PlanarTransform, transform_error_mm
from .config import AlignConfig
from .pair import align_pair

if TYPE_CHECKING:
    from ..util.workers import Engine

__all__ = ["ALIGNMENT_COLUMNS", "align_loaded", "align_subject", "align_cohort", "summarize_alignment"]

#: Columns of :func:`align_cohort`'s table (``alignment.csv``), in order.
ALIGNMENT_COLUMNS: tuple[str, ...] = (
    "subject_id", "split",
    "theta_deg", "tx_mm", "ty_mm",
    "stage1_theta_deg", "stage1_tx_mm", "stage1_ty_mm",
    "score", "stage1_score", "trusted", "reason",
    "true_theta_deg", "true_tx_mm", "true_ty_mm",
    "error_mm_mean", "error_mm_max", "stage1_error_mm_mean", "stage1_error_mm_max",
    "frame_error_mm_mean", "frame_error_mm_max", "stage1_frame_error_mm_mean", "stage1_frame_error_mm_max",
    "seconds",
)


def _centres_xz(truth: Mapping[str, Any], key: str = "vertebra_centres_mm") -> np.ndarray:
    """(N, 2) vertebral centres (x, z) of a truth record, T1..L5 order."""
    centres = truth.get(key) or {}
    names = [n for n in LEVELS if n in centres] or sorted(centres)
    if not names:
        raise InvalidArgumentError(f"truth record has no {key}")
    pts = np.array([centres[n] for n in names], dtype=float)
    return pts[:, [0, 2]]


def _errors(result, truth: Mapping[str, Any]) -> dict[str, float]:
    """Errors of both stages against a synthetic subject's truth.

    ``error_mm_*`` (the alignment error of the paper's pipeline): for each vertebral
    centre T1-L5, the distance in the DXA frame between where the estimated transform
    puts the MRI vertebra and where that vertebra truly is in the DXA image. The subject
    changes posture a little between the two sessions, so the truth for the spine is the
    DXA-session position of each vertebra (the true rigid transform of the MRI-session
    centres when the truth has no DXA-session centres). This is the error the curve
    targets inherit, and the one stage 2 (spine level) is built to reduce.

    ``frame_error_mm_*``: :func:`spinelib.geometry.transform.transform_error_mm` between the
    estimated and the true rigid transform of the scanner frames (table and body), over
    the MRI-session vertebral centres; the posture change does not count here.
    """
    true = PlanarTransform.from_dict(truth["transform"])
    pts = _centres_xz(truth)
    out = {f"true_{k}": v for k, v in true.to_dict().items()}
    seen = true.inverse().apply(pts)
    if truth.get("vertebra_centres_dxa_session_mm"):
        dxa_session = true.inverse().apply(_centres_xz(truth, "vertebra_centres_dxa_session_mm"))
        if dxa_session.shape == pts.shape:
            seen = dxa_session
    for prefix, est in (("", result.transform), ("stage1_", result.stage1)):
        d = np.linalg.norm(est.inverse().apply(pts) - seen, axis=1)
        out[f"{prefix}error_mm_mean"], out[f"{prefix}error_mm_max"] = float(d.mean()), float(d.max())
        e = transform_error_mm(est, true, pts)
        out[f"{prefix}frame_error_mm_mean"], out[f"{prefix}frame_error_mm_max"] = float(e.mean()), float(e.max())
    return out


def align_loaded(subject: Any, row: Mapping[str, Any], config: AlignConfig) -> dict[str, Any]:
    """Align an already loaded :class:`spinelib.io.Subject`; a record of :data:`ALIGNMENT_COLUMNS`.

    ``row`` gives ``subject_id`` and ``split``. With ``subject=None`` (it failed to
    load) the record is the empty, untrusted one, for the caller to fill ``reason``.
    A subject that cannot be aligned comes back ``trusted=False`` with the error.
    """
    rec: dict[str, Any] = {c: np.nan for c in ALIGNMENT_COLUMNS}
    rec.update(subject_id=str(row["subject_id"]), split=str(row["split"]), trusted=False, reason="")
    if subject is None:
        return rec
    t0 = time.perf_counter()
    try:
        res = align_pair(subject.dxa, subject.fat.data, subject.water.data, subject.seg.data, subject.fat.affine,
                         config)
    except SpineLibError as exc:
        rec["reason"] = f"alignment failed: {type(exc).__name__}: {exc}"
        return rec
    rec["seconds"] = time.perf_counter() - t0
    rec.update(res.to_dict())
    if subject.truth is not None and "transform" in subject.truth:
        try:
            rec.update(_errors(res, subject.truth))
        except (SpineLibError, KeyError, TypeError, ValueError, IndexError) as exc:
            rec["reason"] = "; ".join(filter(None, [rec["reason"], f"truth unusable: {exc}"]))
    return rec


def align_subject(row: Mapping[str, Any], config: AlignConfig, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load and align one manifest row (:func:`align_loaded`); a subject whose files
    fail to load comes back ``trusted=False`` with the error as ``reason``.
    ``allow_pickle``: read a DXA pickle (:func:`spinelib.io.read_dxa`)."""
    from ..io import load_subject

    try:
        subject = load_subject(dict(row), allow_pickle=allow_pickle)
    except SpineLibError as exc:
        rec = align_loaded(None, row, config)
        rec["reason"] = f"load failed: {type(exc).__name__}: {exc}"
        return rec
    return align_loaded(subject, row, config)


def _one(args: tuple[dict, AlignConfig, bool]) -> dict[str, Any]:
    row, config, allow_pickle = args
    return align_subject(row, config, allow_pickle=allow_pickle)


def align_cohort(manifest_df: Any, config: AlignConfig, *, allow_pickle: bool = False, jobs: "int | Engine" = 1,
                 progress: bool = True):
    """Align every subject of a manifest.

    Parameters
    ----------
    manifest_df : a manifest DataFrame (:func:`spinelib.io.read_manifest`: absolute paths).
    config : the alignment's settings (:class:`~spinelib.align.config.AlignConfig`).
    allow_pickle : read DXA pickles (:func:`spinelib.io.read_dxa`).
    jobs : worker processes (1: in this process), or an :class:`~spinelib.util.workers.Engine`.
    progress : show a progress bar over subjects.

    Returns
    -------
    pandas.DataFrame with one row per manifest row, columns :data:`ALIGNMENT_COLUMNS`;
    error columns are NaN without truth; rows that failed to load are ``trusted=False``
    with the reason.
    """
    import pandas as pd

    from ..util.workers import Engine, Failed, fan_out

    engine = Engine.of(jobs)
    if not isinstance(config, AlignConfig):
        raise InvalidArgumentError(f"config must be an AlignConfig, got {type(config).__name__}")
    rows = [dict(r) for r in manifest_df.to_dict(orient="records")]
    res = fan_out(_one, [(r, config, bool(allow_pickle)) for r in rows], keys=[str(r["subject_id"]) for r in rows], engine=engine,
                  desc="align", unit="subject", progress=progress)
    recs = []
    for row, r in zip(rows, res):
        if isinstance(r, Failed):
            rec = align_loaded(None, row, config)
            rec["reason"] = f"failed: {r.reason}"
            r = rec
        recs.append(r)
    df = pd.DataFrame.from_records(recs, columns=list(ALIGNMENT_COLUMNS))
    df["trusted"] = df["trusted"].astype(bool)
    return df


def summarize_alignment(df) -> dict[str, Any]:
    """The ``alignment`` block of ``metrics.json`` from an :func:`align_cohort` table.

    Errors are over trusted subjects with truth (``*_all`` over every aligned subject
    with truth); counts cover every row. Values without data are left out (metrics
    hold finite floats only).
    """
    out: dict[str, Any] = {
        "n_subjects": int(len(df)),
        "n_trusted": int(df["trusted"].sum()),
        "n_rejected": int((~df["trusted"]).sum()),
    }
    has = df["error_mm_mean"].notna()
    for suffix, sel in (("", has & df["trusted"]), ("_all", has)):
        for col in ("error_mm", "stage1_error_mm", "frame_error_mm", "stage1_frame_error_mm"):
            vals = df.loc[sel, f"{col}_mean"].dropna()
            if len(vals):
                out[f"{col}_mean{suffix}"] = float(vals.mean())
                out[f"{col}_p95{suffix}"] = float(np.percentile(vals, 95))
    secs = df["seconds"].dropna()
    if len(secs):
        out["seconds_median"] = float(secs.median())
    return out
