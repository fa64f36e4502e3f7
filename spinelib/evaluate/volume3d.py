"""3D evaluation: every model's reconstructed spine against the true spine column, per subject.

For one subject, all masks live on one grid of the DXA-aligned frame (``reconstruct.Grid3D``,
voxel ``eval_grid_mm``) that covers the target curves and every model's curves with a
margin: the TRUE mask is the MRI spine column resampled into the frame through the
subject's *frame*, the transform and label volume of its evaluation set (``EvalSet.frame``:
the true transform and the DXA-session spine for the headline, the estimated alignment and
the MRI spine as the paper measures), with the table plane of its targets and the DXA's grid
(a :class:`~spinelib.shape.frame.SubjectFrame`,
:func:`spinelib.shape.reconstruct.column_mask_in_frame`); each model's mask is
the ellipse-per-level reconstruction of its predicted curves; the *ceiling* is the same
reconstruction of the TARGET curves, i.e. the best any curve predictor can reach with the
ellipse representation. Each subject is loaded once and every model is scored in that pass
(:func:`evaluate_subject`); :func:`evaluate_3d` maps it over subjects in worker processes.

Centreline: ``centerline_3d_mm`` compares level k of the two curve sets (each over its own
extent, so an error of the extent counts); ``centerline_3d_same_row_mm`` compares the two
centrelines at the same image rows over their common extent (the paper's definition,
:func:`spinelib.metrics.centreline_same_row_mm`); ``extent_top_mm`` and
``extent_bottom_mm`` are the absolute errors of the spine's top and bottom.

Empty masks: a model whose reconstructed mask is empty on the grid scores IoU and Dice 0;
its surface distances are undefined, so the subject is flagged (``empty_mask``), counted
(``n_empty_masks`` in the metrics block) and listed (:func:`empty_mask_table`): a failure,
never silently skipped. HD95 and MSD are means over the non-empty masks.

Regions: voxels above the T12/L1 boundary (the middle between the lowest T12 voxel and
the highest L1 voxel of the segmentation, in the frame) are thoracic, the rest lumbar; a
level is thoracic when its target level position is above that boundary.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..shape.curves import SpineCurves
from ..shape.frame import SubjectFrame, check_frame
from ..errors import EmptySegmentationError, InvalidArgumentError, SpineLibError, SubjectsFailedError
from ..io import read_dxa, read_volume
from ..metrics import (THORACIC_FRACTION, centreline_deviation_mm, centreline_same_row_mm, dice_3d,
                       extent_errors_mm, iou_3d, surface_distances_mm)
from ..paper import PAPER_RESULTS
from ..shape.reconstruct import Grid3D, column_mask_in_frame, ellipse_mask, grid_for
from ..spine import vertebra_label
from ..geometry.transform import PlanarTransform
from ..util.workers import Engine, Failed, fan_out
from .cohort import EvalSet

log = logging.getLogger(__name__)

__all__ = ["CEILING", "MARGIN_MM", "REGIONS", "PAPER_RESULTS", "region_boundary_mm", "mask_scores",
           "subject_job", "evaluate_subject", "evaluate_3d", "reconstruction_metrics_block", "paper_comparison",
           "empty_mask_table", "SCORE_COLUMNS", "CENTRELINE_COLUMNS"]

#: Name of the ellipse reconstruction of the target curves in the tables.
CEILING = "ceiling"
#: Grid margin around the curves' bounding box; wider than any voxel so that no mask
#: touches the grid border (surface distances stay exact).
MARGIN_MM = 10.0
REGIONS: tuple[str, ...] = ("thoracic", "lumbar")
#: Per-subject centreline and extent columns (NaN for the ceiling: it is the target itself).
CENTRELINE_COLUMNS: tuple[str, ...] = ("centerline_3d_mm", "centerline_3d_same_row_mm", "extent_top_mm",
                                       "extent_bottom_mm")
SCORE_COLUMNS: tuple[str, ...] = (
    "centerline_3d_mm", "centerline_3d_same_row_mm", "extent_top_mm", "extent_bottom_mm", "empty_mask", "iou_3d", "dice_3d", "hd95_mm", "msd_mm", "volume_ml", "true_volume_ml",
    "iou_3d_thoracic", "dice_3d_thoracic", "centerline_3d_mm_thoracic",
    "iou_3d_lumbar", "dice_3d_lumbar", "centerline_3d_mm_lumbar",
)


def region_boundary_mm(seg: np.ndarray, affine: np.ndarray, frame: SubjectFrame,
                       extent_mm: Sequence[float]) -> float:
    """Row-mm of the thoracolumbar (T12/L1) boundary in the subject's DXA-aligned ``frame``.

    The middle between the lowest T12-body voxel centre and the highest L1-body voxel centre
    (so the T12/L1 disc straddles it). Without T12 or L1 labels, ``THORACIC_FRACTION`` of
    the ``extent_mm`` (top, bottom) is used, as for kyphosis and lordosis.
    """
    labels = np.asarray(seg)
    m = check_frame(frame).world_to_frame() @ np.asarray(affine, dtype=float)
    rows = {}
    for name in ("T12", "L1"):
        ijk = np.argwhere(labels == vertebra_label(name))
        if ijk.size == 0:
            top, bottom = float(extent_mm[0]), float(extent_mm[1])
            return top + THORACIC_FRACTION * (bottom - top)
        rows[name] = ijk @ m[0, :3] + m[0, 3]
    return float(0.5 * (rows["T12"].max() + rows["L1"].min()))


def _split_scores(truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    union = int(np.count_nonzero(truth | mask))
    if union == 0:
        return float("nan"), float("nan")
    inter = int(np.count_nonzero(truth & mask))
    return inter / union, 2.0 * inter / (int(np.count_nonzero(truth)) + int(np.count_nonzero(mask)))


def mask_scores(truth: np.ndarray, mask: np.ndarray, grid: Grid3D, boundary_mm: float) -> dict[str, float]:
    """Overlap and surface distances of ``mask`` against ``truth`` on ``grid``, whole and by region.

    Returns
    -------
    ``iou_3d, dice_3d`` (fractions), ``empty_mask`` (bool), ``hd95_mm, msd_mm`` (NaN when
    ``mask`` is empty: a failure the caller counts),
    ``volume_ml, true_volume_ml``, and ``iou_3d_<region>, dice_3d_<region>`` for the grid
    rows above (thoracic) and below (lumbar) ``boundary_mm`` (NaN when both are empty there).

    Raises
    ------
    EmptySegmentationError
        ``truth`` is empty.
    """
    if not np.any(truth):
        raise EmptySegmentationError("the true spine-column mask is empty on the evaluation grid")
    out: dict = {"iou_3d": iou_3d(truth, mask), "dice_3d": dice_3d(truth, mask), "empty_mask": not np.any(mask)}
    if np.any(mask):
        d_ab, d_ba = surface_distances_mm(mask, truth, spacing_mm=grid.spacing_mm)
        out["hd95_mm"] = float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
        out["msd_mm"] = float(np.concatenate([d_ab, d_ba]).mean())
    else:
        out["hd95_mm"] = out["msd_mm"] = float("nan")
    vox_ml = grid.voxel_volume_mm3 / 1000.0
    out["volume_ml"] = float(np.count_nonzero(mask)) * vox_ml
    out["true_volume_ml"] = float(np.count_nonzero(truth)) * vox_ml
    upper = grid.axis_mm(0) < boundary_mm
    for region, rows in (("thoracic", upper), ("lumbar", ~upper)):
        out[f"iou_3d_{region}"], out[f"dice_3d_{region}"] = _split_scores(truth[rows], mask[rows])
    return out


def _centreline_scores(pred: SpineCurves, target: SpineCurves, boundary_mm: float) -> dict[str, float]:
    p = np.stack([pred.levels_mm, pred.values[1], pred.values[4]], axis=1)
    t = np.stack([target.levels_mm, target.values[1], target.values[4]], axis=1)
    d = np.linalg.norm(p - t, axis=1)
    upper = target.levels_mm < boundary_mm
    try:
        same_row = centreline_same_row_mm(pred, target)
    except SpineLibError:  # extents without a common row: no same-row distance to speak of
        same_row = float("nan")
    top, bottom = extent_errors_mm(pred, target)
    return {"centerline_3d_mm": centreline_deviation_mm(pred, target), "centerline_3d_same_row_mm": same_row,
            "extent_top_mm": top, "extent_bottom_mm": bottom,
            "centerline_3d_mm_thoracic": float(d[upper].mean()) if upper.any() else float("nan"),
            "centerline_3d_mm_lumbar": float(d[~upper].mean()) if (~upper).any() else float("nan")}


def _cover(c: SpineCurves) -> SpineCurves:
    """Curves whose boundaries enclose ``c``'s ellipses: a predicted centre need not be the
    midpoint of its predicted boundaries, and the ellipse is centred on the centre."""
    v = np.array(c.values)
    for lo, mid, hi in ((0, 1, 2), (3, 4, 5)):
        half = 0.5 * (v[hi] - v[lo])
        v[lo], v[hi] = np.minimum(v[lo], v[mid] - half), np.maximum(v[hi], v[mid] + half)
    return SpineCurves(v, c.extent_mm)


def evaluate_subject(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Score every model of one subject in one pass (load the segmentation and DXA once).

    Parameters
    ----------
    job : plain mapping (picklable, for worker processes) with ``subject_id``, ``seg_path``
        (the label volume of the true column), ``dxa_path``, ``transform`` (theta_deg, tx_mm,
        ty_mm: the frame's DXA->MRI transform), ``table_y_mm`` (with the DXA's grid, they make
        the subject's :class:`~spinelib.shape.frame.SubjectFrame`), ``target``
        ((6, K) values, (2,) extent), ``predictions`` ({model: ((6, K), (2,))}) and
        ``grid_mm`` (voxel size of the evaluation grid).

    Returns
    -------
    One dict per model plus one for :data:`CEILING`: ``subject_id, model, region_boundary_mm,
    grid_mm`` and :data:`SCORE_COLUMNS` (the ceiling's centreline columns are NaN: it is the
    target itself).
    """
    sid = str(job["subject_id"])
    grid_mm = float(job["grid_mm"])
    if not np.isfinite(grid_mm) or grid_mm <= 0:
        raise InvalidArgumentError(f"grid_mm must be positive, got {job['grid_mm']!r}")
    seg = read_volume(job["seg_path"], kind="seg")
    dxa = read_dxa(job["dxa_path"], allow_pickle=bool(job.get("allow_pickle", False)))
    frame = SubjectFrame(PlanarTransform(*(float(v) for v in job["transform"])), tuple(dxa.shape),
                         tuple(float(v) for v in dxa.pixel_spacing_mm), float(job["table_y_mm"]))
    target = SpineCurves(*job["target"])
    preds = {m: SpineCurves(*vc) for m, vc in job["predictions"].items()}
    grid = grid_for([_cover(c) for c in (target, *preds.values())], spacing_mm=grid_mm, margin_mm=MARGIN_MM)
    truth = column_mask_in_frame(seg.data, seg.affine, frame, grid)
    boundary = region_boundary_mm(seg.data, seg.affine, frame, target.extent_mm)
    base = {"subject_id": sid, "region_boundary_mm": boundary, "grid_mm": grid_mm}
    rows = []
    ceiling = mask_scores(truth, ellipse_mask(target, grid), grid, boundary)
    rows.append({**base, "model": CEILING, **{c: float("nan") for c in CENTRELINE_COLUMNS},
                 "centerline_3d_mm_thoracic": float("nan"), "centerline_3d_mm_lumbar": float("nan"), **ceiling})
    for m, c in preds.items():
        rows.append({**base, "model": m, **_centreline_scores(c, target, boundary),
                     **mask_scores(truth, ellipse_mask(c, grid), grid, boundary)})
    return rows


def subject_job(subject_id: str, seg_path: str, dxa_path: str, transform: PlanarTransform, table_y_mm: float,
                target: tuple[np.ndarray, np.ndarray], predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                grid_mm: float, allow_pickle: bool = False) -> dict[str, Any]:
    """The plain, picklable job of :func:`evaluate_subject` for one subject.

    Parameters
    ----------
    subject_id, seg_path, dxa_path : the subject and its label volume and DXA files.
    transform, table_y_mm : its frame's DXA->MRI transform and table plane (mm).
    target : ``((6, K) values, (2,) extent)`` in mm.
    predictions : ``{model: ((6, K) values, (2,) extent)}`` in mm. The curves stay plain
        arrays here: a model's bad curves fail its subject in :func:`evaluate_subject`, where
        the failure is reported, not the whole cohort's job list.
    grid_mm : voxel size of the evaluation grid (mm).
    allow_pickle : read a DXA pickle.
    """
    return {
        "subject_id": str(subject_id),
        "seg_path": seg_path,
        "dxa_path": dxa_path,
        "transform": (float(transform.theta_deg), float(transform.tx_mm), float(transform.ty_mm)),
        "table_y_mm": float(table_y_mm),
        "target": (np.asarray(target[0]), np.asarray(target[1])),
        "predictions": {m: (np.asarray(v), np.asarray(e)) for m, (v, e) in predictions.items()},
        "grid_mm": float(grid_mm),
        "allow_pickle": bool(allow_pickle),
    }


def _jobs(es: EvalSet, grid_mm: float, allow_pickle: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, sid in enumerate(es.subject_id):
        r = es.frame.iloc[i]
        out.append(subject_job(
            sid, r["seg_path"], es.manifest.iloc[i]["dxa_path"],
            PlanarTransform(float(r["theta_deg"]), float(r["tx_mm"]), float(r["ty_mm"])),
            es.targets.table_y_mm[i], (es.targets.values[i], es.targets.extent_mm[i]),
            {m: (es.predictions.values[m][i], es.predictions.extent_mm[m][i]) for m in es.models},
            grid_mm=grid_mm, allow_pickle=allow_pickle))
    return out


def evaluate_3d(es: EvalSet, *, grid_mm: float, jobs: "int | Engine" = 1, progress: bool = True,
                allow_pickle: bool = False) -> pd.DataFrame:
    """3D scores of every model and the ceiling for every subject of ``es``.

    Parameters
    ----------
    es : the evaluation subjects.
    grid_mm : voxel size (mm) of each subject's evaluation grid (``eval_grid_mm``).
    jobs : worker processes (1: in this process), or an :class:`~spinelib.util.workers.Engine`.
    allow_pickle : read DXAs stored as pickles (the run's ``allow_pickle``; unpickling runs code).

    Returns
    -------
    Long DataFrame, one row per (subject, model), models in ``es.models`` order then
    ``"ceiling"``; columns ``subject_id, model, region_boundary_mm, grid_mm`` and
    :data:`SCORE_COLUMNS`. Deterministic: the same inputs give the same table whatever ``jobs``.
    """
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    engine = Engine.of(jobs)
    if not np.isfinite(grid_mm) or grid_mm <= 0:
        raise InvalidArgumentError(f"grid_mm must be positive, got {grid_mm!r}")
    work = _jobs(es, grid_mm, allow_pickle)
    results = fan_out(evaluate_subject, work, keys=[j["subject_id"] for j in work], engine=engine,
                      desc=f"3D evaluation ({es.name})", unit="subject", progress=progress)
    failed = [r for r in results if isinstance(r, Failed)]
    if failed:  # every test subject is evaluated, or the numbers would silently cover fewer
        raise SubjectsFailedError(f"3D evaluation failed for {len(failed)} of {len(work)} subjects: "
                                  + "; ".join(f"{f.key}: {f.reason}" for f in failed[:10]))
    cols = ["subject_id", "model", "region_boundary_mm", "grid_mm", *SCORE_COLUMNS]
    df = pd.DataFrame([r for rows in results for r in rows], columns=cols)
    df["empty_mask"] = df["empty_mask"].astype(bool)
    order = {m: k for k, m in enumerate([*es.models, CEILING])}
    df["_o"] = df["model"].map(order)
    df = df.sort_values(["_o", "subject_id"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return df


def _finite_mean(s: pd.Series) -> float | None:
    v = s.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def empty_mask_table(table: pd.DataFrame) -> pd.DataFrame:
    """The (model, subject) pairs whose reconstructed mask was empty (failures), from
    :func:`evaluate_3d`'s table: DataFrame ``model, subject_id``."""
    if not {"model", "subject_id", "empty_mask"} <= set(table.columns):
        raise InvalidArgumentError("table must come from evaluate_3d (model, subject_id, empty_mask)")
    sel = table[table["empty_mask"].astype(bool)]
    return sel[["model", "subject_id"]].reset_index(drop=True)


# (scoliosis_classification column, metrics.json key) under each decision rule
_CLINICAL_KEYS = (("accuracy", "scoliosis_class_accuracy"), ("sensitivity", "scoliosis_sensitivity"),
                  ("specificity", "scoliosis_specificity"), ("balanced_accuracy", "scoliosis_balanced_accuracy"),
                  ("auc", "scoliosis_auc"))
_VALIDATION_KEYS = (("decision_deg", "scoliosis_val_threshold_deg"),
                    ("sensitivity", "scoliosis_sensitivity_at_val_threshold"),
                    ("specificity", "scoliosis_specificity_at_val_threshold"),
                    ("balanced_accuracy", "scoliosis_balanced_accuracy_at_val_threshold"))


def reconstruction_metrics_block(table: pd.DataFrame, angle_errors: pd.DataFrame | None = None,
                                 classification: pd.DataFrame | None = None) -> dict:
    """The ``models`` and ``ceiling`` blocks of ``metrics.json`` from :func:`evaluate_3d`'s table.

    Per model: ``centerline_3d_mm, centerline_3d_same_row_mm, extent_top_mm,
    extent_bottom_mm, iou_3d, dice_3d, hd95_mm, msd_mm`` (means over subjects; HD95 and MSD
    over the subjects with a non-empty mask) and ``n_empty_masks`` (subjects whose mask was
    empty: failures, IoU 0), and, from ``angle_errors``
    (:func:`spinelib.evaluate.clinical.angle_error_summary`), ``cobb_mae_deg,
    kyphosis_mae_deg, lordosis_mae_deg`` against the target curves, and from
    ``classification`` (:func:`spinelib.evaluate.scoliosis.scoliosis_classification`, one
    or both rules) ``scoliosis_class_accuracy``, ``scoliosis_sensitivity``,
    ``scoliosis_specificity``, ``scoliosis_balanced_accuracy`` and ``scoliosis_auc`` under
    the clinical rule and ``scoliosis_val_threshold_deg``,
    ``scoliosis_sensitivity_at_val_threshold``, ``scoliosis_specificity_at_val_threshold``,
    ``scoliosis_balanced_accuracy_at_val_threshold`` at the validation operating point. The ceiling gets ``iou_3d, dice_3d, hd95_mm, msd_mm,
    n_empty_masks``. Keys whose value would not be finite are left out (a sensitivity
    when no subject is scoliotic, a specificity when all are: see the ``scoliosis``
    block of :func:`spinelib.evaluate.scoliosis.scoliosis_block` for the reason).
    """
    need = {"model", "iou_3d", "dice_3d", "centerline_3d_mm", "hd95_mm", "msd_mm"}
    if not need <= set(table.columns):
        raise InvalidArgumentError(f"table must have columns {sorted(need)} (evaluate_3d)")
    models: dict = {}
    ceiling: dict = {}
    for m, sel in table.groupby("model", sort=False):
        keys = ("iou_3d", "dice_3d", "hd95_mm", "msd_mm") if m == CEILING else (
            *(c for c in CENTRELINE_COLUMNS if c in sel.columns), "iou_3d", "dice_3d", "hd95_mm", "msd_mm")
        block = {k: v for k in keys if (v := _finite_mean(sel[k])) is not None}
        if "empty_mask" in sel.columns:
            block["n_empty_masks"] = int(sel["empty_mask"].astype(bool).sum())
        if m == CEILING:
            ceiling = block
        else:
            models[str(m)] = block
    if angle_errors is not None:
        ref = angle_errors[angle_errors["reference"] == "target"]
        for _, r in ref.iterrows():
            if r["model"] in models and np.isfinite(r["mae_deg"]):
                models[r["model"]][f"{r['angle']}_mae_deg"] = float(r["mae_deg"])
    if classification is not None:
        for _, r in classification.iterrows():
            if r["model"] not in models:
                continue
            keys = _VALIDATION_KEYS if r.get("rule", "clinical") == "validation" else _CLINICAL_KEYS
            for col, key in keys:
                if col in r and np.isfinite(r[col]):
                    models[r["model"]][key] = float(r[col])
    return {"models": models, "ceiling": ceiling}



def paper_comparison(block: Mapping[str, Any]) -> pd.DataFrame:
    """One table of this run's 3D results beside the paper's.

    Parameters
    ----------
    block : the output of :func:`reconstruction_metrics_block` (``models``, ``ceiling``).

    Returns
    -------
    DataFrame ``source, model, centerline_3d_same_row_mm, centerline_3d_mm, extent_top_mm,
    extent_bottom_mm, iou_3d_pct, dice_3d_pct, hd95_mm, msd_mm``: one row per model of this
    run, the ceiling, and the paper's reported numbers (its model on UK Biobank,
    :data:`spinelib.paper.PAPER_RESULTS`; NaN where the paper reports nothing). The paper's
    3D curve deviation compares the centrelines at the same image rows, so it sits in the
    ``centerline_3d_same_row_mm`` column. The data differ: the paper's numbers are on real
    DXA/MRI pairs, this run's on its own cohort.
    """
    if "models" not in block:
        raise InvalidArgumentError("block must come from reconstruction_metrics_block")
    rows = []

    def row(source: str, model: str, b: Mapping[str, float]) -> dict:
        return {"source": source, "model": model,
                "centerline_3d_same_row_mm": b.get("centerline_3d_same_row_mm", np.nan),
                "centerline_3d_mm": b.get("centerline_3d_mm", np.nan),
                "extent_top_mm": b.get("extent_top_mm", np.nan), "extent_bottom_mm": b.get("extent_bottom_mm", np.nan),
                "iou_3d_pct": 100.0 * b.get("iou_3d", np.nan), "dice_3d_pct": 100.0 * b.get("dice_3d", np.nan),
                "hd95_mm": b.get("hd95_mm", np.nan), "msd_mm": b.get("msd_mm", np.nan)}

    for m, b in block["models"].items():
        rows.append(row("this run", m, b))
    if block.get("ceiling"):
        rows.append(row("this run", CEILING + " (target curves)", block["ceiling"]))
    paper = {"centerline_3d_same_row_mm": PAPER_RESULTS["centerline_3d_mm"], "iou_3d": PAPER_RESULTS["iou_3d"],
             "dice_3d": PAPER_RESULTS["dice_3d"]}
    rows.append(row("paper (UK Biobank)", "resnet_bot", paper))
    return pd.DataFrame(rows)
