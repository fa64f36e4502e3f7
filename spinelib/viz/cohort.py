"""Figures of the synthetic cohort: one subject side by side, and the cohort's angle distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["show_subject", "plot_cohort_distributions", "TARGETS"]

#: the issue's target ranges, drawn on the histograms
TARGETS = {
    "cobb_deg": {"bands": [(0, 6, "~65 %"), (6, 20, "~25 %"), (20, 50, "~10 %")]},
    "kyphosis_deg": {"range": (20, 55)},
    "lordosis_deg": {"mean_sd": (37, 13)},
}


def _load(subject: Any) -> dict:
    if isinstance(subject, dict):
        return subject
    if hasattr(subject, "bone") and hasattr(subject, "seg"):  # synth Subject in memory
        return {"bone": subject.bone, "tissue": subject.tissue, "fat": subject.fat, "water": subject.water,
                "seg": subject.seg, "affine": subject.affine, "truth": subject.truth,
                "lateral_bone": getattr(subject, "lateral_bone", None)}
    from ..io import read_dxa, read_truth, read_volume

    d = Path(subject)
    dxa = read_dxa(d / "dxa.npz")
    fat = read_volume(d / "mri_fat.nii.gz")
    water = read_volume(d / "mri_water.nii.gz")
    seg = read_volume(d / "seg.nii.gz", kind="seg")
    truth = read_truth(d / "truth.json") if (d / "truth.json").exists() else None
    return {"bone": dxa.bone, "tissue": dxa.tissue, "fat": np.asarray(fat.data), "water": np.asarray(water.data),
            "seg": np.asarray(seg.data), "affine": fat.affine, "truth": truth, "lateral_bone": dxa.lateral_bone}


def show_subject(subject: Any, *, figsize=(16, 6.5), overlay_alpha: float = 0.45):
    """DXA bone and tissue, MRI coronal and sagittal slices through the spine (fat and water)
    with the label volume overlaid, side by side.

    Parameters
    ----------
    subject : a subject folder, a :class:`spinelib.synth.subject.Subject`, or a dict with
        ``bone, tissue, fat, water, seg, affine`` (and optional ``truth``, ``lateral_bone``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    s = _load(subject)
    seg = np.asarray(s["seg"])
    aff = np.asarray(s["affine"])
    vx, vy, vz = np.diag(aff)[:3]
    col = np.isin(seg, list(range(1, 18)) + [20])
    idx = np.argwhere(col) if col.any() else np.argwhere(seg > 0)
    ci, cj, _ = (idx.mean(0).round().astype(int) if len(idx) else np.array(seg.shape) // 2)
    cmap = plt.get_cmap("tab20", 23)
    lab_cmap = ListedColormap(cmap(np.arange(23)))
    panels = [("DXA bone", s["bone"], "gray", None, 1.0), ("DXA tissue", s["tissue"], "gray", None, 1.0)]
    if s.get("lateral_bone") is not None:
        panels.append(("lateral bone", s["lateral_bone"], "gray", None, 1.0))
    fat, water = np.asarray(s["fat"], float), np.asarray(s["water"], float)
    cor = lambda v: np.flipud(v[:, cj, :].T)  # noqa: E731 - rows superior first, cols x ascending
    sag = lambda v: np.flipud(v[ci, :, :].T)  # noqa: E731
    panels += [
        ("MRI fat, coronal", cor(fat), "gray", cor(seg), vz / vx),
        ("MRI water, coronal", cor(water), "gray", None, vz / vx),
        ("MRI water, sagittal", sag(water), "gray", sag(seg), vz / vy),
        ("MRI fat, sagittal", sag(fat), "gray", None, vz / vy),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=figsize)
    for ax, (title, img, cm, lab, aspect) in zip(axes, panels):
        ax.imshow(img, cmap=cm, aspect=aspect, interpolation="nearest")
        if lab is not None:
            m = np.ma.masked_where(lab == 0, lab)
            ax.imshow(m, cmap=lab_cmap, vmin=0, vmax=22, alpha=overlay_alpha, aspect=aspect, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    # the DXA is shown as stored (column 0, the patient's right, on the left, as a radiograph);
    # the MRI coronal slices have x (patient's right) increasing to the right, so they are
    # mirrored to read the same way
    for ax in axes[len(panels) - 4:len(panels) - 2]:
        ax.invert_xaxis()
    t = s.get("truth")
    if t:
        a = t.get("angles", {})
        d = t.get("demographics", {})
        fig.suptitle(
            f"{t.get('subject_id', '')}: {d.get('sex', '')} {d.get('age', 0):.0f} y, BMI {d.get('bmi', 0):.1f}; "
            f"Cobb {a.get('cobb_deg', 0):.1f} deg ({a.get('curve_type', '')}, apex {a.get('apex_level', '')}), "
            f"kyphosis {a.get('kyphosis_deg', 0):.1f}, lordosis {a.get('lordosis_deg', 0):.1f}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_cohort_distributions(truths: Sequence[dict], *, figsize=(13, 3.8)):
    """Histograms of the true Cobb, kyphosis and lordosis angles with the issue's targets."""
    import matplotlib.pyplot as plt

    cobb = np.array([t["angles"]["cobb_deg"] for t in truths], float)
    kyph = np.array([t["angles"]["kyphosis_deg"] for t in truths], float)
    lord = np.array([t["angles"]["lordosis_deg"] for t in truths], float)
    fig, axes = plt.subplots(1, 3, figsize=figsize)
    ax = axes[0]
    ax.hist(cobb, bins=np.arange(0, max(52, cobb.max() + 2), 2), color="C0")
    top = ax.get_ylim()[1]
    for k, (lo, hi, lab) in enumerate(TARGETS["cobb_deg"]["bands"]):
        frac = np.mean((cobb >= lo) & (cobb < hi)) if len(cobb) else 0.0
        ax.axvspan(lo, hi, alpha=0.08 + 0.06 * (lo > 0), color="C1")
        ax.text(max((lo + hi) / 2, 8.0 * k + 3), top * (0.92 - 0.16 * k), f"{lo}-{hi}: {100 * frac:.0f} %\n(target {lab})",
                ha="left" if k == 0 else "center", fontsize=7)
    ax.set_xlabel("Cobb angle (deg)")
    ax.set_title("coronal: Cobb")
    ax = axes[1]
    ax.hist(kyph, bins=30, color="C2")
    ax.axvspan(*TARGETS["kyphosis_deg"]["range"], alpha=0.12, color="C1", label="target 20-55")
    ax.set_xlabel("thoracic kyphosis T1-T12 (deg)")
    ax.set_title(f"kyphosis {kyph.mean():.1f} +/- {kyph.std():.1f}")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.hist(lord, bins=30, color="C3")
    m, sd = TARGETS["lordosis_deg"]["mean_sd"]
    ax.axvline(m, color="k", label=f"target {m} +/- {sd}")
    ax.axvspan(m - sd, m + sd, alpha=0.12, color="C1")
    ax.set_xlabel("lumbar lordosis L1-L5 (deg)")
    ax.set_title(f"lordosis {lord.mean():.1f} +/- {lord.std():.1f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
