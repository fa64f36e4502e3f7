"""What a synthetic AP image carries of the sagittal angles, and which body part carries it.

The paper's task is possible only because an AP projection carries some of the sagittal
shape: tilted vertebrae project foreshortened, their endplates as ellipses, their posterior
elements shifted against their bodies, and the ribs hung from them repeat their heights across
the chest. The generator must give that
information through physics only (:mod:`spinelib.synth.subject`). This module measures how
much of the kyphosis and lordosis a linear model of the image's plain summaries
(:func:`spinelib.learn.summaries.visible_summaries`, the ``visible_summaries`` baseline's
features) reads, with the anatomy around the column drawn or left out
(:data:`spinelib.synth.parts.PART_GROUPS`). A number that rises when a part is left out
says that part hides the column; one that falls says the part shows something of the
angles itself. The summaries are not linear in the image (bone width counts the pixels over
half of each row's brightest bone, which an overlapping scapula can move), so parts can also
interact; :func:`height_r2` is the reference that does not depend on them.

:func:`angle_r2` is the cross-validated R2 over ``n_subjects`` of a profile's cohort
(DXA-session truth; only the AP image is rendered, no volume), :func:`angle_r2_by_part`
the same for several sets of parts left out, and :func:`height_r2` the R2 of a reader given the
vertebrae's true heights along the body (the column's foreshortening, read perfectly). The
held-out R2 grows with the subjects the ridge is fitted on, so compare numbers at the same
``n_subjects`` and ``folds``.

Examples
--------
>>> from spinelib.profiles import get_profile
>>> angle_r2_by_part(get_profile("default"), n_subjects=2000, jobs=2)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, ShapeError, SubjectsFailedError
from ..io import DXAImage
from ..io.checks import check_integer
from ..learn.data import PreparedScan, prepare_scan
from ..learn.ridge import ALPHA_GRID, choose_alpha, fit_ridge
from ..learn.summaries import visible_summaries
from ..metrics import r2_score
from ..synth.anatomy import materials_for
from ..synth.chain import measure_angles
from ..synth.config import SynthConfig
from ..synth.dxa import finish_dxa, project_ap
from ..synth.parts import PART_GROUPS, build_primitives, check_parts
from ..synth.subject import draw_subject_geometry, dxa_shape
from ..util.workers import Engine, Failed, fan_out

__all__ = ["ANGLES", "PART_VARIANTS", "ap_scan", "vertebral_heights", "cross_validated_ridge", "angle_r2",
           "angle_r2_by_part", "height_r2"]

#: The angles scored, in the column order of the targets (DXA-session truth, deg).
ANGLES: tuple[str, ...] = ("kyphosis", "lordosis")
#: The sets of parts :func:`angle_r2_by_part` leaves out by default: none, each alone, the rib
#: cage with the chest wall, and everything but the spinal column.
PART_VARIANTS: tuple[tuple[str, ...], ...] = ((), *((p,) for p in PART_GROUPS), ("ribs", "chest_wall"), PART_GROUPS)


def ap_scan(index: int, params: Mapping[str, Any], *,
            leave_out: Collection[str] = ()) -> tuple[PreparedScan, tuple[float, float]]:
    """Subject ``index`` of a profile's synthetic cohort: its AP DXA (DXA session) prepared as
    the networks see it, and its true DXA-session (kyphosis, lordosis) in deg. The anatomy is
    the cohort's; the detector noise is the cohort's model seeded by ``(seed, index)``, not the
    cohort file's own draw. The MRI and the lateral view are not rendered.

    Parameters
    ----------
    index : the subject's index in the cohort (>= 0).
    params : a run profile (:func:`spinelib.profiles.get_profile`): its synthetic-cohort keys,
        ``dxa_pixel_mm``, ``crop_pixel_mm``, ``image_size`` and ``seed``.
    leave_out : parts of :data:`spinelib.synth.parts.PART_GROUPS` not drawn.
    """
    i = check_integer(index, "index", 0)
    g = draw_subject_geometry(i, SynthConfig.from_profile(params))
    prims = build_primitives(g["spine_dxa"], g["shape"], g["body"], g["torso"], leave_out=leave_out)
    px = float(params["dxa_pixel_mm"])
    bone, tissue = project_ap(prims, g["torso"], materials_for(g["demographics"], g["body"]), g["transform"],
                              dxa_shape(px), px)
    bone, tissue = finish_dxa(bone, tissue, np.random.default_rng([int(params["seed"]), i]), px)
    scan = prepare_scan(DXAImage(bone, tissue, np.array([px, px])), pixel_mm=float(params["crop_pixel_mm"]),
                        image_size=params["image_size"])
    angles = measure_angles(g["spine_dxa"], g["shape"])
    return scan, (float(angles["kyphosis_deg"]), float(angles["lordosis_deg"]))


def cross_validated_ridge(x: np.ndarray, y: np.ndarray, *, folds: int = 5,
                          alphas: Sequence[float] = ALPHA_GRID) -> np.ndarray:
    """Out-of-fold ridge predictions: each row predicted by a ridge fitted without its fold.

    Row ``i`` lies in fold ``i % folds``. For each fold, the penalty is chosen
    (:func:`~spinelib.learn.ridge.choose_alpha`) by fitting on the first three quarters of
    the other rows and scoring on their last quarter; the ridge is then refitted on all of
    the other rows with that penalty.

    Parameters
    ----------
    x : (N, F) float features; y : (N, D) float targets; N >= 4 * folds.
    folds : an integer >= 2.

    Returns
    -------
    (N, D) float64, the out-of-fold predictions.
    """
    k = check_integer(folds, "folds", 2)
    xm, ym = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xm.ndim != 2 or ym.ndim != 2 or xm.shape[0] != ym.shape[0]:
        raise ShapeError(f"x (N, F) and y (N, D) must have the same rows, got {xm.shape} and {ym.shape}")
    if xm.shape[0] < 4 * k:
        raise ShapeError(f"{xm.shape[0]} rows are too few for {k} folds (needs >= {4 * k})")
    fold = np.arange(xm.shape[0]) % k
    out = np.empty_like(ym)
    for f in range(k):
        rest = np.flatnonzero(fold != f)
        fit, val = rest[: 3 * rest.size // 4], rest[3 * rest.size // 4:]
        best, _ = choose_alpha(xm[fit], ym[fit], xm[val], ym[val], alphas)
        held = fold == f
        out[held] = fit_ridge(xm[rest], ym[rest], best.alpha).predict(xm[held])
    return out


def vertebral_heights(index: int, params: Mapping[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """What a perfect reader of the column's foreshortening would know of subject ``index``: the
    heights of its 17 vertebral centres (DXA session, along the body's long axis, mm below T1's
    centre, so T1 is 0) and its true DXA-session (kyphosis, lordosis) in deg. Nothing is rendered.
    """
    i = check_integer(index, "index", 0)
    g = draw_subject_geometry(i, SynthConfig.from_profile(params))
    z = np.asarray(g["spine_dxa"]["centres"], dtype=np.float64)[:, 2]
    angles = measure_angles(g["spine_dxa"], g["shape"])
    return z[0] - z, (float(angles["kyphosis_deg"]), float(angles["lordosis_deg"]))


def _summaries_and_angles(item: tuple[int, Mapping[str, Any], tuple[str, ...]]) -> tuple[np.ndarray, tuple]:
    index, params, leave_out = item
    scan, angles = ap_scan(index, params, leave_out=leave_out)
    return visible_summaries(scan), angles


def _heights_and_angles(item: tuple[int, Mapping[str, Any]]) -> tuple[np.ndarray, tuple]:
    return vertebral_heights(*item)


def _cross_validated_angles(fn, items: list, *, folds: int, jobs: int | Engine, desc: str,
                            progress: bool) -> dict[str, float]:
    """``{angle: R2}`` of :func:`cross_validated_ridge` on the ``(features, angles)`` that ``fn``
    gives for each item (one subject each, through the fan-out)."""
    results = fan_out(fn, items, keys=[str(i) for i in range(len(items))], engine=Engine.of(jobs), desc=desc,
                      progress=progress)
    failed = [r for r in results if isinstance(r, Failed)]
    if failed:  # a subject left out would change the sample every variant is compared on
        raise SubjectsFailedError(f"{desc} failed for {len(failed)} of {len(items)} subjects: "
                                  + "; ".join(f"{f.key}: {f.reason}" for f in failed[:10]))
    x = np.stack([r[0] for r in results])
    y = np.array([r[1] for r in results], dtype=np.float64)
    pred = cross_validated_ridge(x, y, folds=folds)
    return {a: r2_score(y[:, j], pred[:, j]) for j, a in enumerate(ANGLES)}


def angle_r2(params: Mapping[str, Any], *, n_subjects: int, leave_out: Collection[str] = (), folds: int = 5,
             jobs: int | Engine = 1, progress: bool = True) -> dict[str, Any]:
    """Cross-validated R2 of the visible-summaries ridge for the true kyphosis and lordosis.

    The first ``n_subjects`` of the profile's cohort are rendered (:func:`ap_scan`) without
    the parts in ``leave_out``; :func:`cross_validated_ridge` predicts both angles from the
    visible summaries, and each angle's R2 is taken over all the out-of-fold predictions.

    Returns
    -------
    ``{"left_out": [parts], "kyphosis": R2, "lordosis": R2, "n_subjects": n, "folds": folds}``.

    Raises
    ------
    InvalidArgumentError
        ``n_subjects`` not an integer >= 4 * folds, a bad ``folds`` or ``leave_out``.
    SubjectsFailedError
        A subject could not be rendered (each named).
    """
    k = check_integer(folds, "folds", 2)
    n = check_integer(n_subjects, "n_subjects", 4 * k)
    parts = check_parts(leave_out)
    r2 = _cross_validated_angles(_summaries_and_angles, [(i, dict(params), parts) for i in range(n)], folds=k,
                                 jobs=jobs, desc=f"AP summaries without {'+'.join(parts) or 'nothing'}",
                                 progress=progress)
    return {"left_out": list(parts), **r2, "n_subjects": n, "folds": k}


def height_r2(params: Mapping[str, Any], *, n_subjects: int, folds: int = 5, jobs: int | Engine = 1,
              progress: bool = True) -> dict[str, Any]:
    """Cross-validated R2 for the true kyphosis and lordosis of a ridge on the vertebrae's true
    heights (:func:`vertebral_heights`): how much of the angles the column's foreshortening
    alone carries, read perfectly. Compare it with :func:`angle_r2` at the same ``n_subjects``
    and ``folds``.

    Returns
    -------
    ``{"kyphosis": R2, "lordosis": R2, "n_subjects": n, "folds": folds}``.

    Raises
    ------
    InvalidArgumentError
        ``n_subjects`` not an integer >= 4 * folds, or a bad ``folds``.
    SubjectsFailedError
        A subject's geometry could not be drawn (each named).
    """
    k = check_integer(folds, "folds", 2)
    n = check_integer(n_subjects, "n_subjects", 4 * k)
    r2 = _cross_validated_angles(_heights_and_angles, [(i, dict(params)) for i in range(n)], folds=k, jobs=jobs,
                                 desc="vertebral heights", progress=progress)
    return {**r2, "n_subjects": n, "folds": k}


def angle_r2_by_part(params: Mapping[str, Any], *, n_subjects: int,
                     variants: Sequence[Collection[str]] = PART_VARIANTS, folds: int = 5,
                     jobs: int | Engine = 1, progress: bool = True) -> pd.DataFrame:
    """:func:`angle_r2` for each set of parts left out, as a table.

    Returns
    -------
    DataFrame ``left_out`` ("+"-joined part names, "" for the whole anatomy), ``kyphosis_r2``,
    ``lordosis_r2``, ``n_subjects``, ``folds``; one row per variant, in order.
    """
    if isinstance(variants, (str, bytes)) or not isinstance(variants, Sequence) or not variants:
        raise InvalidArgumentError(f"variants must be a non-empty sequence of part collections, got {variants!r}")
    rows = []
    for v in variants:
        r = angle_r2(params, n_subjects=n_subjects, leave_out=v, folds=folds, jobs=jobs, progress=progress)
        rows.append({"left_out": "+".join(r["left_out"]), "kyphosis_r2": r["kyphosis"], "lordosis_r2": r["lordosis"],
                     "n_subjects": r["n_subjects"], "folds": r["folds"]})
    return pd.DataFrame(rows)
