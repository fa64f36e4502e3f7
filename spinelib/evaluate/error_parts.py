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

from ..errors import InvalidArgumentError, ShapeError
from .cohort import EvalSet
from .volume3d import CEILING, evaluate_3d

__all__ = ["PARTS", "AS_PREDICTED", "with_true_part", "swapped_name", "error_decomposition", "error_parts_block"]

#: The parts of a prediction :func:`with_true_part` can take from the target, in table order.
PARTS: tuple[str, ...] = ("coronal", "sagittal_centre", "extent")
#: The ``part`` label of the prediction as it is.
AS_PREDICTED = "none"
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
                parts: Sequence[str] = PARTS, progress: bool = True, allow_pickle: bool = False) -> pd.DataFrame:
    """Each model's mean 3D scores as predicted and with each part taken from the targets.

    Parameters
    ----------
    es : the evaluation subjects (their targets are the truth the parts come from).
    scores : :func:`~spinelib.evaluate.volume3d.evaluate_3d`'s table of ``es`` (the models as
        predicted and the ceiling; not computed again).
    models : the models to take apart (each a model of ``es``).
    grid_mm, jobs, progress, allow_pickle : as for :func:`~spinelib.evaluate.volume3d.evaluate_3d`.
    parts : a subset of :data:`PARTS`.

    Returns
    -------
    DataFrame, one row per (model, part) with the part :data:`AS_PREDICTED` first: ``model,
    part, iou_3d, centerline_3d_same_row_mm`` (means over the subjects) and ``gap_closed``,
    the share of the model's IoU gap to the ceiling that the part closes
    (``(IoU_part - IoU_predicted) / (IoU_ceiling - IoU_predicted)``).

    Raises
    ------
    InvalidArgumentError
        ``es`` is not an EvalSet, a model is not one of its models or lacks from ``scores``,
        ``scores`` has no ceiling, or a part is unknown.
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
    return pd.DataFrame(rows)


def error_parts_block(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`error_decomposition`'s table as the ``metrics.json`` block ``error_parts``:
    ``{model: {part: {"iou_3d", "centerline_3d_same_row_mm", "gap_closed"}}}``, models and
    parts in the table's order.

    Raises
    ------
    InvalidArgumentError
        ``table`` lacks one of the columns ``model, part, iou_3d, centerline_3d_same_row_mm, gap_closed``.
    """
    keys = (*_SCORES, "gap_closed")
    if not isinstance(table, pd.DataFrame) or not {"model", "part", *keys} <= set(table.columns):
        raise InvalidArgumentError(f"table must be an error_decomposition table with columns model, part, {keys}")
    return {m: {r["part"]: {k: float(r[k]) for k in keys} for r in g.to_dict("records")}
            for m, g in table.groupby("model", sort=False)}
