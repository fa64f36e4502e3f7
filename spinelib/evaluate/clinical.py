"""Clinical angles of the evaluation: Cobb, kyphosis and lordosis from predicted and true curves.

Each angle is measured by :func:`spinelib.metrics.clinical_measures` on the predicted curves
and on the target curves (the reference every model is trained to reproduce); on synthetic
cohorts the generator's true angles (``truth.json``) are a second reference, which also
shows the error of the measurement itself (target curves against the generator).
Severity bins follow the usual clinical classes; the scoliotic / straight classification
built on these angles is :mod:`spinelib.evaluate.scoliosis`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, NonFiniteError
from ..metrics import check_bootstrap, clinical_measures, percentile_interval, resample_indices
from ..metrics.clinical import SEVERITY_EDGES_DEG
from .cohort import EvalSet, ordered_models
from .stats import bland_altman

__all__ = ["ANGLES", "SEVERITY_EDGES_DEG", "SEVERITY_LABELS", "TARGET_CURVES", "LARGE_CURVE_DEG", "severity_bins",
           "angle_table", "cobb_errors", "reference_cobb", "angle_error_summary", "large_curve_cobb", "group_summary",
           "region_table"]

ANGLES: tuple[str, ...] = ("cobb", "kyphosis", "lordosis")
SEVERITY_LABELS: tuple[str, ...] = ("<10 (none)", "10-20", "20-30", ">=30")
#: Name of the target curves in the error tables (measured against the generator's truth).
TARGET_CURVES = "target curves"
#: Reference Cobb angle (deg) from which a curve counts as large in :func:`large_curve_cobb`
#: (the second severity edge: the curves a brace or surgery is weighed for).
LARGE_CURVE_DEG: float = float(SEVERITY_EDGES_DEG[1])


def severity_bins(cobb_deg) -> np.ndarray:
    """(N,) severity label of each Cobb angle (``SEVERITY_LABELS``; edges ``SEVERITY_EDGES_DEG``,
    a value on an edge goes to the upper class)."""
    c = np.asarray(cobb_deg, dtype=float)
    if c.ndim != 1:
        raise InvalidArgumentError(f"cobb_deg must be 1D, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise InvalidArgumentError("cobb_deg holds NaN or infinite values")
    idx = np.searchsorted(np.asarray(SEVERITY_EDGES_DEG), c, side="right")
    return np.asarray(SEVERITY_LABELS, dtype=object)[idx]


def _measures(curves) -> dict[str, float]:
    m = clinical_measures(curves)
    return {"cobb": m["cobb_deg"], "kyphosis": m["kyphosis_deg"], "lordosis": m["lordosis_deg"]}


def angle_table(es: EvalSet, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Angles of every subject, from every model's curves and from the target curves.

    Parameters
    ----------
    es : the evaluation subjects.
    truth : optional :func:`spinelib.evaluate.subject_files.truth_angles` table (the generator's
        ``cobb_deg, kyphosis_deg, lordosis_deg``; NaN where unknown).

    Returns
    -------
    Long DataFrame, one row per (subject, model, angle): ``subject_id, model, angle,
    predicted_deg, target_deg, truth_deg``, plus ``reference_cobb_deg`` (the generator's
    Cobb where known, else the target curves') and its ``severity`` class.
    """
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    tr = {}
    if truth is not None:
        need = {"subject_id", *(f"{a}_deg" for a in ANGLES)}
        if not need <= set(truth.columns):
            raise InvalidArgumentError(f"truth must have columns {sorted(need)} (truth_angles)")
        tr = truth.assign(subject_id=truth["subject_id"].astype(str)).set_index("subject_id").to_dict("index")
    rows = []
    for i, sid in enumerate(es.subject_id):
        sid = str(sid)
        tgt = _measures(es.targets.curves(i))
        t = tr.get(sid, {})
        true = {a: float(t.get(f"{a}_deg", np.nan)) for a in ANGLES}
        ref_cobb = true["cobb"] if np.isfinite(true["cobb"]) else tgt["cobb"]
        sev = str(severity_bins(np.array([ref_cobb]))[0])
        for m in es.models:
            pred = _measures(es.predictions.curves(m, i))
            for a in ANGLES:
                rows.append({"subject_id": sid, "model": m, "angle": a, "predicted_deg": pred[a],
                             "target_deg": tgt[a], "truth_deg": true[a], "reference_cobb_deg": ref_cobb,
                             "severity": sev})
    return pd.DataFrame(rows, columns=["subject_id", "model", "angle", "predicted_deg", "target_deg",
                                       "truth_deg", "reference_cobb_deg", "severity"])


def cobb_errors(angles: pd.DataFrame) -> pd.DataFrame:
    """Absolute Cobb angle error of every (subject, model) against the reference Cobb angle.

    The reference is :func:`angle_table`'s ``reference_cobb_deg`` (the generator's angle
    where known, else the target curves'), the one the severity classes are drawn from.

    Returns
    -------
    DataFrame ``subject_id, model, cobb_abs_error_deg`` (deg).
    """
    need = {"subject_id", "model", "angle", "predicted_deg", "reference_cobb_deg"}
    if not need <= set(angles.columns):
        raise InvalidArgumentError(f"angles must have columns {sorted(need)} (angle_table)")
    c = angles[angles["angle"] == "cobb"]
    return pd.DataFrame({"subject_id": c["subject_id"].to_numpy(), "model": c["model"].to_numpy(),
                         "cobb_abs_error_deg": np.abs(c["predicted_deg"].to_numpy(float)
                                                      - c["reference_cobb_deg"].to_numpy(float))})


def reference_cobb(angles: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: ``subject_id, reference_cobb_deg, severity`` (from :func:`angle_table`)."""
    if not {"subject_id", "reference_cobb_deg", "severity"} <= set(angles.columns):
        raise InvalidArgumentError("angles must come from angle_table")
    return (angles.drop_duplicates("subject_id")[["subject_id", "reference_cobb_deg", "severity"]]
            .reset_index(drop=True))


def angle_error_summary(angles: pd.DataFrame) -> pd.DataFrame:
    """Error of each angle per model against the target curves and against the generator.

    Returns
    -------
    DataFrame ``model, angle, reference, n, mae_deg, bias_deg, sd_deg, loa_low_deg,
    loa_high_deg`` (Bland-Altman bias and 95 % limits of agreement of ``measured -
    reference``). ``reference`` is ``"target"`` (the angle of the target curves) or
    ``"truth"`` (the generator's, only where known); the rows of model
    :data:`TARGET_CURVES` measure the target curves themselves against the truth.
    """
    need = {"subject_id", "model", "angle", "predicted_deg", "target_deg", "truth_deg"}
    if not need <= set(angles.columns):
        raise InvalidArgumentError(f"angles must have columns {sorted(need)} (angle_table)")
    rows = []

    def add(model: str, angle: str, ref: str, r: np.ndarray, m: np.ndarray) -> None:
        ok = np.isfinite(r) & np.isfinite(m)
        if not ok.any():
            return
        ba = bland_altman(r[ok], m[ok])
        rows.append({"model": model, "angle": angle, "reference": ref, "n": int(ok.sum()),
                     "mae_deg": ba["mae"], "bias_deg": ba["bias"], "sd_deg": ba["sd"],
                     "loa_low_deg": ba["loa_low"], "loa_high_deg": ba["loa_high"]})

    models = ordered_models(sorted(set(angles["model"])))
    for a in ANGLES:
        for m in models:
            sel = angles[(angles["model"] == m) & (angles["angle"] == a)]
            p = sel["predicted_deg"].to_numpy(float)
            add(m, a, "target", sel["target_deg"].to_numpy(float), p)
            add(m, a, "truth", sel["truth_deg"].to_numpy(float), p)
        one = angles[(angles["angle"] == a)].drop_duplicates("subject_id")
        add(TARGET_CURVES, a, "truth", one["truth_deg"].to_numpy(float), one["target_deg"].to_numpy(float))
    return pd.DataFrame(rows, columns=["model", "angle", "reference", "n", "mae_deg", "bias_deg", "sd_deg",
                                       "loa_low_deg", "loa_high_deg"])


def large_curve_cobb(angles: pd.DataFrame, *, n_boot: int, seed: int = 0, level: float = 0.95,
                     from_deg: float = LARGE_CURVE_DEG) -> pd.DataFrame:
    """Cobb angle error of each model over the subjects whose reference Cobb angle is at least
    ``from_deg``, with a percentile bootstrap interval of its mean absolute value.

    The reference is :func:`angle_table`'s ``reference_cobb_deg`` (the generator's angle where
    known), as for the severity classes; the :data:`TARGET_CURVES` row measures the target
    curves against it (the part of a model's error its training targets already carry). Few
    subjects have large curves, so the interval, over resamples of those subjects
    (:func:`spinelib.metrics.resample_indices`, the same resamples for every model), says how
    far the mean can be trusted.

    Parameters
    ----------
    angles : :func:`angle_table`'s table.
    n_boot : bootstrap resamples (>= ``spinelib.metrics.MIN_RESAMPLES``).
    seed : seed of the resamples.
    level : the interval's coverage, in (0, 1).
    from_deg : the smallest reference Cobb angle counted (deg, finite).

    Returns
    -------
    DataFrame ``model, n, mae_deg, mae_low_deg, mae_high_deg, level, bias_deg`` (deg; bias:
    mean of ``predicted - reference``), models in :func:`angle_table` order then
    :data:`TARGET_CURVES`; no rows when no subject reaches ``from_deg``.

    Raises
    ------
    InvalidArgumentError
        ``angles`` lacks a column of :func:`angle_table`, a model lacks one of the large
        curves, a bad ``n_boot`` or ``level``, or a ``from_deg`` that is not a finite number.
    NonFiniteError
        A counted subject's predicted or target Cobb angle is NaN or infinite (model and
        subject named).
    """
    need = {"subject_id", "model", "angle", "predicted_deg", "target_deg", "reference_cobb_deg"}
    if not isinstance(angles, pd.DataFrame) or not need <= set(angles.columns):
        raise InvalidArgumentError(f"angles must have columns {sorted(need)} (angle_table)")
    n_boot, level = check_bootstrap(n_boot, level)
    if isinstance(from_deg, bool) or not isinstance(from_deg, (int, float)) or not np.isfinite(from_deg):
        raise InvalidArgumentError(f"from_deg must be a finite angle in deg, got {from_deg!r}")
    cobb = angles[(angles["angle"] == "cobb") & (angles["reference_cobb_deg"] >= from_deg)]
    cols = ["model", "n", "mae_deg", "mae_low_deg", "mae_high_deg", "level", "bias_deg"]
    subjects = list(dict.fromkeys(cobb["subject_id"]))
    if not subjects:
        return pd.DataFrame(columns=cols)
    bad = cobb.loc[~np.isfinite(cobb[["predicted_deg", "target_deg"]].to_numpy(float)).all(axis=1),
                   ["model", "subject_id"]]
    if len(bad):
        raise NonFiniteError("large_curve_cobb: NaN or infinite Cobb angles for (model, subject) "
                             f"{list(bad.itertuples(index=False, name=None))[:5]}")
    draws = resample_indices(len(subjects), n_boot, seed)
    one = cobb.drop_duplicates("subject_id").set_index("subject_id").loc[subjects]
    errors = {}
    for m, g in cobb.groupby("model", sort=False):
        missing = sorted(set(subjects) - set(g["subject_id"]))
        if missing:  # a model scored on fewer subjects would be compared on another sample
            raise InvalidArgumentError(f"large_curve_cobb: model {m!r} has no Cobb angle for {missing[:5]}")
        errors[m] = g.set_index("subject_id").loc[subjects, "predicted_deg"].to_numpy(float) \
            - one["reference_cobb_deg"].to_numpy(float)
    errors[TARGET_CURVES] = one["target_deg"].to_numpy(float) - one["reference_cobb_deg"].to_numpy(float)
    rows = []
    for m, e in errors.items():
        low, high = percentile_interval(np.abs(e)[draws].mean(axis=1), level)
        rows.append({"model": m, "n": int(e.size), "mae_deg": float(np.abs(e).mean()), "mae_low_deg": low,
                     "mae_high_deg": high, "level": level, "bias_deg": float(e.mean())})
    return pd.DataFrame(rows, columns=cols)


def group_summary(table: pd.DataFrame, groups: pd.DataFrame, *, by: str, metrics: Sequence[str],
                  order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of ``metrics`` per model and per group of subjects.

    Parameters
    ----------
    table : per-subject table with ``subject_id``, ``model`` and the metric columns.
    groups : ``subject_id`` and the grouping column ``by`` (e.g. :func:`reference_cobb`'s
        ``severity``).
    order : the group labels in display order (others follow); empty groups are left out.

    Returns
    -------
    DataFrame ``model, <by>, n_subjects, <metric> ...`` (NaN-skipping means).
    """
    for col in ("subject_id", "model", *metrics):
        if col not in table.columns:
            raise InvalidArgumentError(f"table lacks column {col!r}")
    if not {"subject_id", by} <= set(groups.columns):
        raise InvalidArgumentError(f"groups must have columns subject_id and {by!r}")
    g = groups[["subject_id", by]].drop_duplicates("subject_id")
    merged = table.merge(g, on="subject_id", how="inner")
    out = (merged.groupby(["model", by], sort=False)
           .agg(n_subjects=("subject_id", "nunique"), **{m: (m, "mean") for m in metrics})
           .reset_index())
    labels = list(order or []) + sorted(set(out[by]) - set(order or []))
    models = list(dict.fromkeys(table["model"]))
    out["_m"] = out["model"].map({m: k for k, m in enumerate(models)})
    out["_g"] = out[by].map({b: k for k, b in enumerate(labels)})
    return out.sort_values(["_m", "_g"], kind="stable").drop(columns=["_m", "_g"]).reset_index(drop=True)


def region_table(table: pd.DataFrame) -> pd.DataFrame:
    """Thoracic vs lumbar scores per model from :func:`spinelib.evaluate.volume3d.evaluate_3d`.

    Returns
    -------
    DataFrame ``model, region, iou_3d, dice_3d, centerline_3d_mm`` (means over subjects).
    """
    rows = []
    for m in dict.fromkeys(table["model"]):
        sel = table[table["model"] == m]
        for region in ("thoracic", "lumbar"):
            cols = {k: f"{k}_{region}" for k in ("iou_3d", "dice_3d", "centerline_3d_mm")}
            for c in cols.values():
                if c not in sel.columns:
                    raise InvalidArgumentError(f"table lacks column {c!r} (evaluate_3d)")
            rows.append({"model": m, "region": region,
                         **{k: float(np.nanmean(sel[c].to_numpy(float))) if np.isfinite(sel[c].to_numpy(float)).any()
                            else float("nan") for k, c in cols.items()}})
    return pd.DataFrame(rows, columns=["model", "region", "iou_3d", "dice_3d", "centerline_3d_mm"])
