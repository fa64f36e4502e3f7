"""Where a model's 3D error comes from: one part of its prediction replaced by the truth at a time.

A prediction's parts fail for different reasons. The coronal curves are in plain sight in an
AP image; the spine's extent (top of T1, bottom of L5) is a matter of finding two endplates;
but the sagittal centre -- how high the column lies above the table, level by level -- is what
a coronal projection barely carries (the ``visible_summaries`` baseline measures how little,
:mod:`spinelib.learn.summaries`). Scoring the prediction again with one part taken from the
target curves says how much of the gap to the ellipse ceiling that part accounts for:

``coronal``
    the three coronal curves (left, centre, right) from the target;
``sagittal_centre``
    the sagittal centre curve from the target, the predicted posterior and anterior
    boundaries moved with it (the predicted depth of the body is kept);
``extent``
    the top and bottom of the spine from the target.

On a synthetic cohort one more part says how much of the sagittal error no reader of the AP
image can remove: ``sagittal_centre_floor`` (:data:`FLOOR_PART`) takes the sagittal centre
from the target moved by each subject's hidden-depth offset
(:func:`~spinelib.evaluate.subject_files.hidden_depth_offsets`), the best estimate a reader
can make who knows every draw of the generator but those the AP image does not show
(:mod:`spinelib.synth.hidden`). The :data:`AP_READER` rows score that reader itself: the target
curves and extent, its sagittal centre moved the same way.

The swapped predictions are scored by :func:`~spinelib.evaluate.volume3d.evaluate_3d` like any
model; they are diagnostics, never a model of the run.

Examples
--------
>>> import numpy as np
>>> pred, true = np.zeros((1, 6, 3)), np.ones((1, 6, 3))
>>> v, e = with_true_part(pred, np.zeros((1, 2)), true, np.ones((1, 2)), "sagittal_centre")
>>> v[0, :, 0].tolist()
[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from .cohort import EvalSet
from .volume3d import CEILING, evaluate_3d

__all__ = ["PARTS", "AS_PREDICTED", "FLOOR_PART", "AP_READER", "with_true_part", "swapped_name",
           "error_decomposition", "error_parts_block", "hidden_depth_sentence"]

#: The parts of a prediction :func:`with_true_part` can take from the target, in table order.
PARTS: tuple[str, ...] = ("coronal", "sagittal_centre", "extent")
#: The ``part`` label of the prediction as it is.
AS_PREDICTED = "none"
#: The part a hidden-depth offset adds: the sagittal centre as well as the AP image shows it.
FLOOR_PART = "sagittal_centre_floor"
#: The ``model`` label of the reader that gets everything but the hidden depth right.
AP_READER = "AP reader"
#: The 3D scores the table keeps (means over subjects).
_SCORES = ("iou_3d", "centerline_3d_same_row_mm")


def _check_sets(pred_values, pred_extent, true_values, true_extent) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(a, dtype=np.float64) for a in (pred_values, pred_extent, true_values, true_extent)]
    pv, pe, tv, te = arrays
    if pv.ndim != 3 or pv.shape[1] != 6 or tv.shape != pv.shape:
        raise ShapeError(f"pred_values and true_values must both be (N, 6, K), got {pv.shape} and {tv.shape}")
    if pe.shape != (pv.shape[0], 2) or te.shape != pe.shape:
        raise ShapeError(f"pred_extent and true_extent must both be ({pv.shape[0]}, 2), got {pe.shape} and {te.shape}")
    return pv, pe, tv, te


def with_true_part(pred_values: np.ndarray, pred_extent: np.ndarray, true_values: np.ndarray,
                   true_extent: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
    """A prediction with one of its :data:`PARTS` taken from the target curves.

    Parameters
    ----------
    pred_values, true_values : (N, 6, K) float, curves in mm (``SpineCurves.values`` order:
        coronal left, centre, right, sagittal posterior, centre, anterior).
    pred_extent, true_extent : (N, 2) float, (top, bottom) row-mm.
    part : one of :data:`PARTS`.

    Returns
    -------
    (values (N, 6, K), extent (N, 2)): new arrays; the inputs are not changed.

    Raises
    ------
    InvalidArgumentError
        ``part`` is not one of :data:`PARTS`.
    ShapeError
        The arrays' shapes differ from the above.
    """
    if part not in PARTS:
        raise InvalidArgumentError(f"part must be one of {PARTS}, got {part!r}")
    pv, pe, tv, te = _check_sets(pred_values, pred_extent, true_values, true_extent)
    v, e = pv.copy(), pe.copy()
    if part == "coronal":
        v[:, :3] = tv[:, :3]
    elif part == "sagittal_centre":
        v[:, 3:] += (tv[:, 4] - pv[:, 4])[:, None, :]
    else:
        e = te.copy()
    return v, e


def swapped_name(model: str, part: str) -> str:
    """The name the swapped prediction of ``model`` is scored under: ``"<model> + true <part>"``."""
    return f"{model} + true {part}"


def error_decomposition(es: EvalSet, scores: pd.DataFrame, models: Sequence[str], *, grid_mm: float, jobs=1,
                        parts: Sequence[str] = PARTS, hidden_offset_mm: np.ndarray | None = None,
                        progress: bool = True, allow_pickle: bool = False) -> pd.DataFrame:
    """Each model's mean 3D scores as predicted and with each part taken from the targets.

    Parameters
    ----------
    es : the evaluation subjects (their targets are the truth the parts come from).
    scores : :func:`~spinelib.evaluate.volume3d.evaluate_3d`'s table of ``es`` (the models as
        predicted and the ceiling; not computed again).
    models : the models to take apart (each a model of ``es``).
    grid_mm, jobs, progress, allow_pickle : as for :func:`~spinelib.evaluate.volume3d.evaluate_3d`.
    parts : a subset of :data:`PARTS`.
    hidden_offset_mm : optional (N, K) float, mm, subjects in the set's order: each subject's
        hidden-depth offset (:func:`~spinelib.evaluate.subject_files.hidden_depth_offsets`).
        Adds the part :data:`FLOOR_PART` to every model and the :data:`AP_READER` row.

    Returns
    -------
    DataFrame, one row per (model, part) with the part :data:`AS_PREDICTED` first: ``model,
    part, iou_3d, centerline_3d_same_row_mm`` (means over the subjects) and ``gap_closed``,
    the share of the model's IoU gap to the ceiling that the part closes
    (``(IoU_part - IoU_predicted) / (IoU_ceiling - IoU_predicted)``; NaN for the
    :data:`AP_READER` row, which has no prediction of its own).

    Raises
    ------
    InvalidArgumentError
        ``es`` is not an EvalSet, a model is not one of its models or lacks from ``scores``,
        ``scores`` has no ceiling, or a part is unknown.
    ShapeError
        ``hidden_offset_mm`` is not (N, K).
    NonFiniteError
        ``hidden_offset_mm`` holds NaN or infinite values.
    """
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    models, parts = list(models), list(parts)
    if not models:
        raise InvalidArgumentError("models must name at least one model")
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise InvalidArgumentError(f"parts must be a non-empty subset of {PARTS}, got {parts}")
    if not isinstance(scores, pd.DataFrame) or not {"model", *_SCORES} <= set(scores.columns):
        raise InvalidArgumentError(f"scores must be an evaluate_3d table with columns model, {', '.join(_SCORES)}")
    scored = set(scores["model"])
    missing = [m for m in models if m not in es.predictions.values or m not in scored]
    if missing or CEILING not in scored:
        raise InvalidArgumentError(f"models {missing} are not predicted in the set and scored, or the scores lack "
                                   f"the {CEILING!r} rows")
    p, t = es.predictions, es.targets
    values, extent = {}, {}
    for m in models:
        for part in parts:
            name = swapped_name(m, part)
            values[name], extent[name] = with_true_part(p.values[m], p.extent_mm[m], t.values, t.extent_mm, part)
    if hidden_offset_mm is not None:
        floor = _floor_targets(t.values, hidden_offset_mm)
        values[AP_READER], extent[AP_READER] = floor, np.asarray(t.extent_mm, dtype=np.float64)
        for m in models:
            values[swapped_name(m, FLOOR_PART)], extent[swapped_name(m, FLOOR_PART)] = with_true_part(
                p.values[m], p.extent_mm[m], floor, t.extent_mm, "sagittal_centre")
        parts = [*parts, FLOOR_PART]
    swapped = replace(es, name=f"{es.name}, one part true", predictions=replace(p, values=values, extent_mm=extent))
    swapped_scores = evaluate_3d(swapped, grid_mm=grid_mm, jobs=jobs, progress=progress, allow_pickle=allow_pickle)
    means = pd.concat([scores, swapped_scores[swapped_scores["model"] != CEILING]]).groupby("model")[list(_SCORES)].mean()
    ceiling = float(means.loc[CEILING, "iou_3d"])
    rows = []
    for m in models:
        base = float(means.loc[m, "iou_3d"])
        gap = ceiling - base
        for part in (AS_PREDICTED, *parts):
            r = means.loc[m if part == AS_PREDICTED else swapped_name(m, part)]
            rows.append({"model": m, "part": part, **{k: float(r[k]) for k in _SCORES},
                         "gap_closed": (float(r["iou_3d"]) - base) / gap if gap > 0 else float("nan")})
    if hidden_offset_mm is not None:
        r = means.loc[AP_READER]
        rows.append({"model": AP_READER, "part": FLOOR_PART, **{k: float(r[k]) for k in _SCORES},
                     "gap_closed": float("nan")})
    return pd.DataFrame(rows)


def _floor_targets(true_values, hidden_offset_mm) -> np.ndarray:
    """(N, 6, K) target curves with the three sagittal curves moved by the (N, K) offsets."""
    tv = np.asarray(true_values, dtype=np.float64)
    off = np.asarray(hidden_offset_mm, dtype=np.float64)
    if off.shape != (tv.shape[0], tv.shape[2]):
        raise ShapeError(f"hidden_offset_mm must be (N, K) = {(tv.shape[0], tv.shape[2])}, got {off.shape}")
    if not np.all(np.isfinite(off)):
        raise NonFiniteError("hidden_offset_mm holds NaN or infinite values")
    out = tv.copy()
    out[:, 3:] += off[:, None, :]
    return out


def error_parts_block(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`error_decomposition`'s table as the ``metrics.json`` block ``error_parts``:
    ``{model: {part: {"iou_3d", "centerline_3d_same_row_mm", "gap_closed"}}}``, models and
    parts in the table's order; a value that is not finite (``gap_closed`` of the
    :data:`AP_READER`, or of a model already at the ceiling) is left out.

    Raises
    ------
    InvalidArgumentError
        ``table`` lacks one of the columns ``model, part, iou_3d, centerline_3d_same_row_mm, gap_closed``.
    """
    keys = (*_SCORES, "gap_closed")
    if not isinstance(table, pd.DataFrame) or not {"model", "part", *keys} <= set(table.columns):
        raise InvalidArgumentError(f"table must be an error_decomposition table with columns model, part, {keys}")
    return {m: {r["part"]: {k: float(r[k]) for k in keys if np.isfinite(r[k])} for r in g.to_dict("records")}
            for m, g in table.groupby("model", sort=False)}


def hidden_depth_sentence(table: pd.DataFrame, hidden_offset_mm: np.ndarray | None, *,
                          model: str = "resnet_bot") -> str:
    """The book's sentence on what no reader of the AP image removes, from :func:`error_decomposition`'s
    table made with ``hidden_offset_mm`` (or why there is none: ``hidden_offset_mm`` None).

    Raises
    ------
    InvalidArgumentError
        ``hidden_offset_mm`` is given but ``table`` lacks the :data:`AP_READER` row or
        ``model``'s :data:`FLOOR_PART` row.
    """
    if hidden_offset_mm is None:
        return ("The cohort has no generator truth, so there is no floor of what its AP images cannot show "
                "(`spinelib.synth.hidden`, synthetic cohorts only).")
    rows = table.set_index(["model", "part"]) if isinstance(table, pd.DataFrame) else None
    need = [(AP_READER, FLOOR_PART), (model, FLOOR_PART)]
    if rows is None or any(k not in rows.index for k in need):
        raise InvalidArgumentError(f"table must be an error_decomposition table with the rows {need}")
    reader, mine = rows.loc[need[0]], rows.loc[need[1]]
    return (f"How much of that could any reader of the AP image take back? On this synthetic cohort the spine's "
            f"height above the table also rests on draws an AP projection does not show (the lumbar and gluteal "
            f"tissue under the spine, the length of each posterior arch and the droop of its spinous process: "
            f"`spinelib.synth.hidden`). A reader that knew every other draw of each test subject exactly, and so "
            f"read the coronal curves, the extent and the vertebral sizes without error, would still miss the "
            f"sagittal centre by {float(np.abs(hidden_offset_mm).mean()):.2f} mm on average; its spines reach "
            f"{100 * reader['iou_3d']:.1f} % IoU and {reader['centerline_3d_same_row_mm']:.2f} mm at the same "
            f"rows (row `{AP_READER}`). The paper's model with that reader's sagittal centre in place of its own "
            f"would reach {100 * mine['iou_3d']:.1f} % and {mine['centerline_3d_same_row_mm']:.2f} mm "
            f"(part `{FLOOR_PART}`). The floor counts only these draws, not noise, resolution or the learner.")
