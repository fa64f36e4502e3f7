"""2D curve accuracy: per-subject and per-level errors of the six curves, paired comparisons.

The error of a curve at a level is ``prediction - target`` in mm (both in the DXA's
coordinates, the same K levels of each subject's own T1-L5 extent); in pixels it is the mm
error divided by the subject's DXA pixel size. A subject's per-curve MAE is the mean of
``|error|`` over its K levels (:func:`spinelib.metrics.curve_errors`); the cohort MAE of a
curve is the mean of the subjects' MAEs, which equals the mean over every level of every
subject because all subjects have K levels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, ShapeError
from ..metrics import curve_errors
from ..spine import CURVE_NAMES
from .cohort import EvalSet, ordered_models
from .stats import paired_bootstrap, summarize

__all__ = ["pixel_sizes", "curve_error_table", "curve_error_summary", "level_error_table",
           "hardest_region", "pick_subjects", "compare_models", "curve_metrics_block"]


def _check_set(es: EvalSet) -> None:
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")


def pixel_sizes(es: EvalSet, geometry: pd.DataFrame) -> np.ndarray:
    """(N,) DXA pixel size (mm, the column spacing) of each subject of ``es``, from the table of
    :func:`spinelib.evaluate.subject_files.dxa_geometry`."""
    _check_set(es)
    if not {"subject_id", "col_mm"} <= set(geometry.columns):
        raise InvalidArgumentError("geometry must have subject_id and col_mm columns (dxa_geometry)")
    by = geometry.assign(subject_id=geometry["subject_id"].astype(str)).set_index("subject_id")
    missing = [s for s in es.subject_id if s not in by.index]
    if missing:
        raise InvalidArgumentError(f"geometry lacks subjects {missing[:5]}")
    px = by.loc[list(es.subject_id), "col_mm"].to_numpy(dtype=float)
    if not np.all(np.isfinite(px)) or np.any(px <= 0):
        raise InvalidArgumentError("pixel sizes must be positive finite mm")
    return px


def _pixels(es: EvalSet, pixel_mm) -> np.ndarray:
    px = np.asarray(pixel_mm, dtype=float)
    if px.shape != (len(es),):
        raise ShapeError(f"pixel_mm must have one value per subject ({len(es)}), got shape {px.shape}")
    if not np.all(np.isfinite(px)) or np.any(px <= 0):
        raise InvalidArgumentError("pixel_mm must be positive finite mm")
    return px


def curve_error_table(es: EvalSet, pixel_mm) -> pd.DataFrame:
    """Per-subject errors of every model and curve.

    Parameters
    ----------
    es : the evaluation subjects.
    pixel_mm : (N,) DXA pixel size of each subject (mm).

    Returns
    -------
    Long DataFrame, one row per (subject, model, curve): ``subject_id, model, curve,
    mae_mm, mae_px, rmse_mm, max_mm`` (``curve`` one of ``spine.CURVE_NAMES``).
    """
    _check_set(es)
    px = _pixels(es, pixel_mm)
    rows = []
    for m in es.models:
        for i, sid in enumerate(es.subject_id):
            err = curve_errors(es.predictions.values[m][i], es.targets.values[i], pixel_mm=float(px[i]))
            for c in CURVE_NAMES:
                rows.append({"subject_id": str(sid), "model": m, "curve": c, **err[c]})
    return pd.DataFrame(rows, columns=["subject_id", "model", "curve", "mae_mm", "mae_px", "rmse_mm", "max_mm"])


def curve_error_summary(es: EvalSet, pixel_mm) -> pd.DataFrame:
    """Distribution of the absolute error over every level of every subject, per model and curve.

    Returns
    -------
    DataFrame ``model, curve, mean_mm, median_mm, p95_mm, mean_px, median_px, p95_px,
    n_points``; ``curve == "all"`` pools the six curves. ``mean_mm`` equals the mean of
    the per-subject MAEs of :func:`curve_error_table`.
    """
    _check_set(es)
    px = _pixels(es, pixel_mm)
    rows = []
    for m in es.models:
        err = np.abs(es.predictions.values[m] - es.targets.values)  # (N, 6, K)
        err_px = err / px[:, None, None]
        for j, c in enumerate([*CURVE_NAMES, "all"]):
            e = err[:, j, :] if c != "all" else err
            ep = err_px[:, j, :] if c != "all" else err_px
            s_mm, s_px = summarize(e.ravel()), summarize(ep.ravel())
            rows.append({"model": m, "curve": c, "mean_mm": s_mm["mean"], "median_mm": s_mm["median"],
                         "p95_mm": s_mm["p95"], "mean_px": s_px["mean"], "median_px": s_px["median"],
                         "p95_px": s_px["p95"], "n_points": int(e.size)})
    return pd.DataFrame(rows)


def level_error_table(es: EvalSet) -> pd.DataFrame:
    """Mean absolute error at each level, over subjects, per model and curve.

    Returns
    -------
    Long DataFrame ``model, curve, level, level_fraction, mae_mm, p95_mm``;
    ``level_fraction = (k + 0.5) / K`` runs from the top of T1 (0) to the bottom of L5 (1).
    """
    _check_set(es)
    k = es.targets.n_levels
    frac = (np.arange(k) + 0.5) / k
    rows = []
    for m in es.models:
        err = np.abs(es.predictions.values[m] - es.targets.values)  # (N, 6, K)
        mae = err.mean(axis=0)
        p95 = np.percentile(err, 95, axis=0)
        for j, c in enumerate(CURVE_NAMES):
            for lev in range(k):
                rows.append({"model": m, "curve": c, "level": lev, "level_fraction": float(frac[lev]),
                             "mae_mm": float(mae[j, lev]), "p95_mm": float(p95[j, lev])})
    return pd.DataFrame(rows)


def hardest_region(level_df: pd.DataFrame, model: str, curves: Sequence[str], *,
                   thoracic_fraction: float = 0.66) -> dict[str, float]:
    """Where along the spine ``model`` errs most on ``curves`` (their mean per-level MAE).

    Returns
    -------
    ``{"level_fraction": position of the worst level (0 top of T1, 1 bottom of L5),
    "mae_mm": its error, "thoracic_mae_mm", "lumbar_mae_mm": mean error above / below
    ``thoracic_fraction`` of the column}``.
    """
    if not {"model", "curve", "level_fraction", "mae_mm"} <= set(level_df.columns):
        raise InvalidArgumentError("level_df must come from level_error_table")
    sel = level_df[(level_df["model"] == model) & level_df["curve"].isin(list(curves))]
    if sel.empty:
        raise InvalidArgumentError(f"no levels for model {model!r} and curves {list(curves)}")
    per = sel.groupby("level_fraction")["mae_mm"].mean()
    worst = float(per.idxmax())
    return {"level_fraction": worst, "mae_mm": float(per.max()),
            "thoracic_mae_mm": float(per[per.index < thoracic_fraction].mean()),
            "lumbar_mae_mm": float(per[per.index >= thoracic_fraction].mean())}


def pick_subjects(table: pd.DataFrame, model: str) -> dict[str, str]:
    """A typical and the worst subject of ``model`` by its MAE over the six curves.

    ``typical`` is the subject whose six-curve MAE is closest to the median of all subjects;
    ``worst`` has the largest. Ties go to the first subject id.
    """
    sel = table[table["model"] == model]
    if sel.empty:
        raise InvalidArgumentError(f"no rows for model {model!r}")
    per = sel.groupby("subject_id")["mae_mm"].mean().sort_index()
    med = float(per.median())
    typical = str((per - med).abs().sort_values(kind="stable").index[0])
    worst = str(per.sort_values(ascending=False, kind="stable").index[0])
    return {"typical": typical, "worst": worst}


def compare_models(table: pd.DataFrame, a: str, b: str, *, n_boot: int, seed: int,
                   level: float = 0.95) -> pd.DataFrame:
    """Paired bootstrap of ``MAE(a) - MAE(b)`` over subjects, per curve and for all six.

    Negative differences mean ``a`` errs less. Returns a DataFrame ``curve, mae_a_mm,
    mae_b_mm, mean_diff, ci_low, ci_high, level, p_two_sided, n, excludes_zero``
    (``curve == "all"``: the subjects' six-curve MAE).
    """
    for m in (a, b):
        if m not in set(table["model"]):
            raise InvalidArgumentError(f"model {m!r} is not in the table")
    rows = []
    for c in [*CURVE_NAMES, "all"]:
        sel = table if c == "all" else table[table["curve"] == c]
        per = sel.groupby(["model", "subject_id"])["mae_mm"].mean()
        xa, xb = per.loc[a].sort_index(), per.loc[b].sort_index()
        if not xa.index.equals(xb.index):
            raise InvalidArgumentError(f"models {a!r} and {b!r} were not evaluated on the same subjects")
        r = paired_bootstrap(xa.to_numpy(), xb.to_numpy(), n_boot=n_boot, seed=seed, level=level)
        rows.append({"curve": c, "mae_a_mm": float(xa.mean()), "mae_b_mm": float(xb.mean()), **r.as_dict()})
    out = pd.DataFrame(rows)
    out["excludes_zero"] = out["excludes_zero"].astype(bool)
    out["n"] = out["n"].astype(int)
    return out


def curve_metrics_block(table: pd.DataFrame) -> dict:
    """The ``models`` block of ``metrics.json`` from :func:`curve_error_table`.

    Returns
    -------
    ``{"models": {name: {"curve_mae_mm": {curve: mean of the subjects' MAE},
    "curve_mae_px": {...}, "curve_mae_mm_mean": mean over the six curves}}}``.
    """
    need = {"subject_id", "model", "curve", "mae_mm", "mae_px"}
    if not need <= set(table.columns):
        raise InvalidArgumentError(f"table must have columns {sorted(need)}")
    out: dict = {}
    for m in ordered_models(sorted(set(table["model"]))):
        sel = table[table["model"] == m]
        mm = sel.groupby("curve")["mae_mm"].mean()
        px = sel.groupby("curve")["mae_px"].mean()
        out[m] = {"curve_mae_mm": {c: float(mm[c]) for c in CURVE_NAMES},
                  "curve_mae_px": {c: float(px[c]) for c in CURVE_NAMES},
                  "curve_mae_mm_mean": float(np.mean([mm[c] for c in CURVE_NAMES]))}
    return {"models": out}
