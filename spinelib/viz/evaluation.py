"""Figures of the evaluation sections: curve errors along the spine, predicted vs true curves,
paired model comparisons, 3D score distributions and Bland-Altman plots of the clinical angles.

Every function takes the tables of :mod:`spinelib.evaluate` (or curve sets) and returns a
matplotlib Figure; :func:`spinelib.viz.png.save_png` writes one atomically.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..shape.curves import SpineCurves
from ..errors import InvalidArgumentError
from ..spine import CURVE_NAMES

__all__ = ["plot_level_errors", "plot_curves_comparison", "plot_paired", "plot_metric_boxes",
           "plot_bland_altman"]

_COLORS = {"mean_shape": "tab:gray", "resnet": "tab:blue", "resnet_bot": "tab:red", "biplanar": "tab:green",
           "ceiling": "black", "target": "black"}


def _color(name: str) -> str:
    return _COLORS.get(name, "tab:purple")


def _need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InvalidArgumentError(f"{what} lacks columns {missing}")


def plot_level_errors(level_df: pd.DataFrame, *, models: Sequence[str] | None = None, title: str = ""):
    """Mean absolute error (mm) along the spine, one panel per curve, one line per model.

    ``level_df`` comes from :func:`spinelib.evaluate.level_error_table`; the x axis runs from
    the top of T1 (0) to the bottom of L5 (1).
    """
    import matplotlib.pyplot as plt

    _need(level_df, ("model", "curve", "level_fraction", "mae_mm"), "level_df")
    models = list(models) if models is not None else list(dict.fromkeys(level_df["model"]))
    fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharex=True)
    for ax, c in zip(axes.ravel(), CURVE_NAMES):
        for m in models:
            sel = level_df[(level_df["model"] == m) & (level_df["curve"] == c)]
            ax.plot(sel["level_fraction"], sel["mae_mm"], color=_color(m), label=m, lw=1.5)
        ax.set_title(c.replace("_", " "))
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("position along the spine (0 = top of T1, 1 = bottom of L5)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean |error| (mm)")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves_comparison(target: SpineCurves, predictions: Mapping[str, SpineCurves], *, title: str = ""):
    """Predicted against target curves of one subject: coronal (column-mm) and sagittal
    (depth above the table) against DXA row-mm, the spine drawn head up."""
    import matplotlib.pyplot as plt

    if not isinstance(target, SpineCurves) or not all(isinstance(c, SpineCurves) for c in predictions.values()):
        raise InvalidArgumentError("target and predictions must be SpineCurves")
    fig, axes = plt.subplots(1, 2, figsize=(9, 6.5), sharey=True)
    for name, c, style in [("target", target, "-"), *((m, p, "--") for m, p in predictions.items())]:
        for ax, rows in ((axes[0], (0, 1, 2)), (axes[1], (3, 4, 5))):
            for j, r in enumerate(rows):
                ax.plot(c.values[r], c.levels_mm, style, color=_color(name), lw=2.0 if j == 1 else 1.0,
                        label=name if j == 1 else None)
    axes[0].set_xlabel("coronal: DXA column (mm)")
    axes[1].set_xlabel("sagittal: depth above the table (mm)")
    axes[0].set_ylabel("DXA row (mm)")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_paired(table: pd.DataFrame, a: str, b: str, *, ci: tuple[float, float, float] | None = None,
                title: str = ""):
    """Per-subject six-curve MAE of model ``a`` against model ``b`` (points below the diagonal:
    ``a`` errs less), with the bootstrap interval ``ci = (mean_diff, low, high)`` in the title."""
    import matplotlib.pyplot as plt

    _need(table, ("subject_id", "model", "mae_mm"), "table")
    per = table.groupby(["model", "subject_id"])["mae_mm"].mean()
    if a not in per.index.get_level_values(0) or b not in per.index.get_level_values(0):
        raise InvalidArgumentError(f"table lacks model {a!r} or {b!r}")
    xa, xb = per.loc[a].sort_index(), per.loc[b].sort_index()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(xb, xa, color=_color(a), s=18)
    lim = [0.0, float(max(xa.max(), xb.max())) * 1.05 + 1e-9]
    ax.plot(lim, lim, color="black", lw=1)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel(f"{b}: MAE over the six curves (mm)")
    ax.set_ylabel(f"{a}: MAE over the six curves (mm)")
    text = title
    if ci is not None:
        text = (text + "\n" if text else "") + f"{a} - {b}: {ci[0]:+.2f} mm [{ci[1]:+.2f}, {ci[2]:+.2f}]"
    ax.set_title(text, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_metric_boxes(table: pd.DataFrame, metrics: Sequence[str], *, models: Sequence[str] | None = None,
                      labels: Mapping[str, str] | None = None, reference: Mapping[str, float] | None = None):
    """Distribution over subjects of each metric (one panel each), one box per model;
    ``reference`` draws a horizontal line per metric (e.g. the paper's value)."""
    import matplotlib.pyplot as plt

    _need(table, ("model", *metrics), "table")
    models = list(models) if models is not None else list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, met in zip(axes[0], metrics):
        data = [table.loc[table["model"] == m, met].dropna().to_numpy(float) for m in models]
        keep = [k for k, d in enumerate(data) if d.size]
        bp = ax.boxplot([data[k] for k in keep], patch_artist=True)
        ax.set_xticks(range(1, len(keep) + 1), [models[k] for k in keep], rotation=30, fontsize=8)
        for patch, k in zip(bp["boxes"], keep):
            patch.set_facecolor(_color(models[k]))
            patch.set_alpha(0.5)
        if reference and met in reference:
            ax.axhline(reference[met], color="black", ls=":", lw=1, label="paper")
            ax.legend(fontsize=8)
        ax.set_title((labels or {}).get(met, met))
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_bland_altman(angles: pd.DataFrame, *, angle: str, models: Sequence[str] | None = None,
                      reference: str = "target"):
    """Bland-Altman plots of one clinical angle, one panel per model: difference
    (predicted - reference) against the mean of the two, with the bias and the 95 % limits
    of agreement. ``reference``: ``"target"`` (target curves) or ``"truth"`` (generator)."""
    import matplotlib.pyplot as plt

    _need(angles, ("model", "angle", "predicted_deg", "target_deg", "truth_deg"), "angles")
    if reference not in ("target", "truth"):
        raise InvalidArgumentError(f"reference must be 'target' or 'truth', got {reference!r}")
    models = list(models) if models is not None else list(dict.fromkeys(angles["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], models):
        sel = angles[(angles["model"] == m) & (angles["angle"] == angle)]
        r = sel[f"{reference}_deg"].to_numpy(float)
        p = sel["predicted_deg"].to_numpy(float)
        ok = np.isfinite(r) & np.isfinite(p)
        r, p = r[ok], p[ok]
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        if r.size == 0:
            continue
        d = p - r
        ax.scatter(0.5 * (p + r), d, s=14, color=_color(m))
        bias = float(d.mean())
        sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
        ax.axhline(bias, color="black", lw=1)
        for v in (bias - 1.96 * sd, bias + 1.96 * sd):
            ax.axhline(v, color="black", lw=1, ls="--")
        ax.set_xlabel(f"mean of the two {angle} (deg)")
    axes[0, 0].set_ylabel(f"{angle}: predicted - {reference} (deg)")
    fig.tight_layout()
    return fig
