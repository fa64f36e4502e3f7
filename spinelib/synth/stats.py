"""Cohort statistics of the generator: what the AP image could give away about the sagittal shape.

The generator must not hand the sagittal answer to a model through anything but the
physics of the projection. :func:`cohort_statistics` measures, on the cheap path (the
geometry of :func:`~spinelib.synth.subject.draw_subject_geometry` and the noise-free AP
tissue channel of the DXA session, no volumes), the shortcuts that a body-outline cue
would open:

* held-out R^2 of a linear regression from the AP tissue thickness at the 17 vertebral
  heights (on the spine, where a model looks) to the anterior vertebral surface's depth
  above the table (17 levels) and to the lordosis and kyphosis angles;
* the individual spread (coefficient of variation) of the vertebral body depth/width
  ratio and the correlation of depth with width;
* the correlations of kyphosis and lordosis with age, sex and BMI;
* the fraction of torso knots the containment rule clipped.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 2))
>>> round(held_out_r2(X, 3.0 * X[:, 0] - X[:, 1] + 1.0), 6)
1.0
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError, ShapeError
from ..spine import N_VERTEBRAE
from ..geometry.transform import dxa_pixel_to_mri
from .anatomy import materials_for
from .chain import measure_angles
from .config import SynthConfig
from .dxa import project_ap
from .parts import build_primitives
from .subject import draw_subject_geometry, dxa_shape

__all__ = ["ap_tissue_at_vertebrae", "held_out_r2", "cohort_statistics"]


def ap_tissue_at_vertebrae(geometry: Mapping[str, Any], pixel_mm: float) -> np.ndarray:
    """Noise-free AP tissue channel (g/cm^2) at the 17 vertebral centres of the DXA session.

    Each value is the mean over the 3 x 3 pixels around the vertebra's centre projected
    into the DXA grid through the true transform.

    Parameters
    ----------
    geometry : output of :func:`~spinelib.synth.subject.draw_subject_geometry`.
    pixel_mm : DXA pixel size (mm) of the projection.

    Returns
    -------
    (17,) float array, T1..L5.
    """
    if not np.isfinite(pixel_mm) or pixel_mm <= 0:
        raise InvalidArgumentError(f"pixel_mm must be a positive number, got {pixel_mm!r}")
    for key in ("spine_dxa", "shape", "body", "torso", "demographics", "transform"):
        if key not in geometry:
            raise InvalidArgumentError(f"geometry lacks {key!r}: pass draw_subject_geometry's output")
    px = float(pixel_mm)
    shape = dxa_shape(px)
    sp = geometry["spine_dxa"]
    prims = build_primitives(sp, geometry["shape"], geometry["body"], geometry["torso"])
    mats = materials_for(geometry["demographics"], geometry["body"])
    T = geometry["transform"]
    _, tissue = project_ap(prims, geometry["torso"], mats, T, shape, px)
    Minv = np.linalg.inv(dxa_pixel_to_mri(T, shape, (px, px)))
    c = sp["centres"]
    pix = np.c_[c[:, 0], c[:, 2], np.ones(len(c))] @ Minv.T
    r = np.clip(np.round(pix[:, 0]).astype(int), 1, shape[0] - 2)
    k = np.clip(np.round(pix[:, 1]).astype(int), 1, shape[1] - 2)
    return np.array([tissue[a - 1:a + 2, b - 1:b + 2].mean() for a, b in zip(r, k)])


def held_out_r2(X: np.ndarray, Y: np.ndarray, seed: int = 0) -> float:
    """R^2 on a held-out half of an ordinary least-squares fit (with intercept) on the other half.

    Parameters
    ----------
    X : (n, p) features; Y : (n,) or (n, q) targets (R^2 pooled over the q columns:
        one minus the residual over the total sum of squares, each column about its own
        held-out mean).
    seed : seed of the random split.
    """
    X = np.asarray(X, float)
    Y = np.asarray(Y, float)
    if X.ndim != 2 or Y.ndim not in (1, 2) or len(X) != len(Y):
        raise ShapeError(f"X must be (n, p) and Y (n,) or (n, q) with the same n, got {X.shape} and {Y.shape}")
    if len(X) < 2 * (X.shape[1] + 2):
        raise InvalidArgumentError(f"{len(X)} samples are too few for {X.shape[1]} features")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise InvalidArgumentError("X and Y must be finite")
    idx = np.random.default_rng(seed).permutation(len(X))
    a, b = idx[: len(X) // 2], idx[len(X) // 2:]
    coef = np.linalg.lstsq(np.c_[X[a], np.ones(len(a))], Y[a], rcond=None)[0]
    pred = np.c_[X[b], np.ones(len(b))] @ coef
    ss_tot = float(((Y[b] - Y[b].mean(0)) ** 2).sum())
    return 1.0 - float(((Y[b] - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def _subject_values(g: Mapping[str, Any], px: float) -> dict[str, Any]:
    """What :func:`cohort_statistics` collects of one subject's geometry ``g``."""
    sp, sh, demo = g["spine_dxa"], g["shape"], g["demographics"]
    D = np.asarray(sh["body_depth_mm"])
    angles = measure_angles(sp)
    return {
        "tissue": ap_tissue_at_vertebrae(g, px),  # (17,) g/cm^2
        "ant": sp["centres"][:, 1] + D / 2 - g["table_y"],  # (17,) mm above the table
        "depth": D,
        "width": np.asarray(sh["body_width_mm"]),
        "kyph": angles["kyphosis_deg"],
        "lord": angles["lordosis_deg"],
        "age": demo["age"],
        "female": demo["sex"] == "F",
        "bmi": demo["bmi"],
        "clip": g["torso_clip_fraction"],
    }


def _shortcuts(v: dict[str, np.ndarray]) -> dict[str, float]:
    """The statistics of :func:`cohort_statistics` from the stacked per-subject values ``v``."""
    ratio = v["depth"] / v["width"]
    corr = lambda x, y: float(np.corrcoef(x, y)[0, 1])  # noqa: E731
    return {
        "r2_tissue_to_anterior_depth": held_out_r2(v["tissue"], v["ant"]),
        "r2_tissue_to_lordosis": held_out_r2(v["tissue"], v["lord"]),
        "r2_tissue_to_kyphosis": held_out_r2(v["tissue"], v["kyph"]),
        "depth_width_ratio_cv": float(np.mean(ratio.std(0) / ratio.mean(0))),
        "depth_width_ratio_subject_cv": float(ratio.mean(1).std() / ratio.mean(1).mean()),
        "depth_width_corr": float(np.mean([corr(v["depth"][:, k], v["width"][:, k]) for k in range(N_VERTEBRAE)])),
        "kyphosis_age_r": corr(v["kyph"], v["age"]),
        "lordosis_age_r": corr(v["lord"], v["age"]),
        "lordosis_female_r": corr(v["lord"], v["female"]),
        "lordosis_bmi_r": corr(v["lord"], v["bmi"]),
        "clip_fraction_mean": float(v["clip"].mean()),
        "clip_fraction_max": float(v["clip"].max()),
    }


def cohort_statistics(config: SynthConfig, n: int, *, pixel_mm: float | None = None,
                      progress: bool = True) -> dict[str, float]:
    """Shortcut statistics of the first ``n`` subjects of the cohort ``config`` describes.

    Parameters
    ----------
    config : the cohort's settings (:class:`~spinelib.synth.config.SynthConfig`).
    n : number of subjects (at least 38: two halves of 19 for 17 features and an intercept).
    pixel_mm : AP pixel size (mm) for the tissue channel; default the cohort's ``dxa_pixel_mm``.
    progress : show a tqdm progress bar.

    Returns
    -------
    dict of floats: ``r2_tissue_to_anterior_depth``, ``r2_tissue_to_lordosis``,
    ``r2_tissue_to_kyphosis`` (held-out R^2), ``depth_width_ratio_cv`` (per level across
    subjects, mean over levels), ``depth_width_ratio_subject_cv`` (of each subject's mean
    ratio), ``depth_width_corr`` (mean over levels), ``kyphosis_age_r``,
    ``lordosis_age_r``, ``lordosis_female_r``, ``lordosis_bmi_r``, ``clip_fraction_mean``,
    ``clip_fraction_max``, ``seconds_per_subject``, ``n``.
    """
    from tqdm import tqdm  # console bars: no notebook-widget detection

    n = int(n)
    if n < 2 * (N_VERTEBRAE + 2):
        raise InvalidArgumentError(f"n must be at least {2 * (N_VERTEBRAE + 2)} for held-out regressions "
                                   f"on {N_VERTEBRAE} features, got {n}")
    px = float(config.dxa_pixel_mm if pixel_mm is None else pixel_mm)
    t0 = time.perf_counter()
    rows = [_subject_values(draw_subject_geometry(i, config), px)
            for i in tqdm(range(n), desc="cohort statistics", unit="subj", disable=None if progress else True)]
    seconds = time.perf_counter() - t0
    stacked = {k: np.asarray([r[k] for r in rows], float) for k in rows[0]}
    return {"n": float(n), **_shortcuts(stacked), "seconds_per_subject": seconds / n}
