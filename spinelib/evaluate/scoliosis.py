"""Scoliotic or straight: each model's predicted Cobb angle as a classifier.

Scoliosis is a reference Cobb angle (:func:`spinelib.evaluate.clinical.angle_table`'s
``reference_cobb_deg``) of :data:`SCOLIOSIS_DEG` or more. Two decision rules turn a model's
predicted Cobb angle into "scoliotic": the clinical one (predicted Cobb >= 10 degrees) and an
operating point chosen on the validation split (:func:`decision_thresholds`: the threshold on
the predicted angle with the largest Youden's J there). A network trained to the mean shrinks
large curves towards it, so its predicted angles run low and the clinical rule misses
scoliotic spines it ranks correctly; the ROC AUC (rule-free) says how well it ranks them, the
validation operating point what that ranking is worth as a classifier without looking at the
test split. :func:`record_operating_points` stores each network's point beside its checkpoint,
where ``spinelib predict`` finds it (:mod:`spinelib.learn.operating_point`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ..errors import InvalidArgumentError
from ..metrics.clinical import SCOLIOSIS_DEG
from .clinical import TARGET_CURVES
from .cohort import ordered_models

__all__ = ["SCOLIOSIS_DEG", "DECISION_RULES", "classification_scores", "operating_threshold", "decision_thresholds",
           "record_operating_points",
           "scoliosis_classification", "scoliosis_block"]

#: The decision rules of :func:`scoliosis_classification`, in words.
DECISION_RULES: dict[str, str] = {
    "clinical": "predicted Cobb >= the scoliosis threshold",
    "validation": "predicted Cobb >= the model's threshold of largest Youden's J on the validation split",
}


def classification_scores(reference, predicted) -> dict[str, float]:
    """Confusion-matrix scores of a binary classification (True = positive).

    Parameters
    ----------
    reference, predicted : (N,) booleans of the same length (N >= 1).

    Returns
    -------
    ``{"n", "n_positive", "tp", "fp", "tn", "fn", "accuracy", "sensitivity" (tp / (tp + fn)),
    "specificity" (tn / (tn + fp)), "balanced_accuracy" (their mean)}``; sensitivity is NaN
    when no reference is positive, specificity when none is negative, and the balanced
    accuracy then NaN too (it needs both classes).

    Examples
    --------
    >>> s = classification_scores([True, True, False, False, False], [True, False, False, False, True])
    >>> s["sensitivity"], s["specificity"], round(s["balanced_accuracy"], 4)
    (0.5, 0.6666666666666666, 0.5833)
    """
    r = np.asarray(reference)
    p = np.asarray(predicted)
    if r.ndim != 1 or p.shape != r.shape:
        raise InvalidArgumentError(f"reference and predicted must be 1D of one length, got {r.shape} and {p.shape}")
    if r.size == 0:
        raise InvalidArgumentError("no subject to classify")
    if r.dtype != bool or p.dtype != bool:
        raise InvalidArgumentError(f"reference and predicted must be boolean, got {r.dtype} and {p.dtype}")
    tp, fn = int(np.sum(r & p)), int(np.sum(r & ~p))
    tn, fp = int(np.sum(~r & ~p)), int(np.sum(~r & p))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return {"n": int(r.size), "n_positive": tp + fn, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "accuracy": (tp + tn) / r.size, "sensitivity": float(sens), "specificity": float(spec),
            "balanced_accuracy": float(0.5 * (sens + spec))}


def operating_threshold(positive, score, *, prefer: float) -> float:
    """The threshold on ``score`` with the largest Youden's J (sensitivity + specificity - 1).

    A subject is called positive when its score is at or above the threshold. The candidates
    are the midpoints between consecutive distinct scores and the two ends (everyone
    positive, no one positive); of the candidates with the largest J, the one nearest
    ``prefer`` wins, so a flat stretch of J resolves towards the clinical rule.

    Parameters
    ----------
    positive : (N,) booleans, the reference class (both classes present).
    score : (N,) finite scores, larger meaning more likely positive (here predicted Cobb, deg).
    prefer : the threshold ties break towards (same unit as ``score``).

    Returns
    -------
    The threshold (unit of ``score``).

    Examples
    --------
    >>> operating_threshold([False, False, True, True], [2.0, 6.0, 8.0, 30.0], prefer=10.0)
    7.0
    """
    pos = np.asarray(positive)
    sc = np.asarray(score, dtype=float)
    if pos.ndim != 1 or sc.shape != pos.shape:
        raise InvalidArgumentError(f"positive and score must be 1D of one length, got {pos.shape} and {sc.shape}")
    if pos.dtype != bool:
        raise InvalidArgumentError(f"positive must be boolean, got {pos.dtype}")
    if not np.all(np.isfinite(sc)):
        raise InvalidArgumentError("score holds NaN or infinite values")
    if pos.all() or not pos.any():
        raise InvalidArgumentError("an operating threshold needs both classes among the subjects")
    if not np.isfinite(prefer):
        raise InvalidArgumentError(f"prefer must be finite, got {prefer!r}")
    u = np.unique(sc)
    cand = np.concatenate([[u[0]], 0.5 * (u[1:] + u[:-1]), [u[-1] + 1.0]])
    called = sc[None, :] >= cand[:, None]  # (C, N)
    j = called[:, pos].mean(axis=1) + (~called[:, ~pos]).mean(axis=1) - 1.0
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(cand[best[np.argmin(np.abs(cand[best] - prefer))]])


def decision_thresholds(angles: pd.DataFrame, *, threshold_deg: float = SCOLIOSIS_DEG) -> pd.DataFrame:
    """Each model's scoliosis decision threshold on its predicted Cobb angle, from a split's angles.

    Meant for the validation split: the threshold (:func:`operating_threshold`, ties towards
    ``threshold_deg``) is then applied to the test split by :func:`scoliosis_classification`.
    The reference class is ``reference_cobb_deg >= threshold_deg`` (:func:`angle_table`).

    Returns
    -------
    DataFrame ``model, decision_deg, n, n_scoliotic, sensitivity, specificity`` (the scores
    on the split itself). Empty when the split lacks scoliotic or straight spines: the
    operating point is then undefined.
    """
    need = {"subject_id", "model", "angle", "predicted_deg", "reference_cobb_deg"}
    if not need <= set(angles.columns):
        raise InvalidArgumentError(f"angles must have columns {sorted(need)} (angle_table)")
    _check_threshold(threshold_deg)
    cols = ["model", "decision_deg", "n", "n_scoliotic", "sensitivity", "specificity"]
    cobb = angles[angles["angle"] == "cobb"]
    scoliotic = cobb.drop_duplicates("subject_id")["reference_cobb_deg"].to_numpy(float) >= threshold_deg
    if scoliotic.all() or not scoliotic.any():
        return pd.DataFrame(columns=cols)
    rows = []
    for m in ordered_models(sorted(set(cobb["model"]))):
        sel = cobb[cobb["model"] == m]
        ref = sel["reference_cobb_deg"].to_numpy(float) >= threshold_deg
        pred = sel["predicted_deg"].to_numpy(float)
        t = operating_threshold(ref, pred, prefer=threshold_deg)
        sc = classification_scores(ref, pred >= t)
        rows.append({"model": m, "decision_deg": t, "n": sc["n"], "n_scoliotic": sc["n_positive"],
                     "sensitivity": sc["sensitivity"], "specificity": sc["specificity"]})
    return pd.DataFrame(rows, columns=cols)


def record_operating_points(run_dir: str | Path, decision: pd.DataFrame, *, chosen_on: str) -> list[Path]:
    """Store each network's operating point beside its checkpoint, for ``spinelib predict``.

    Every network of the run (:data:`spinelib.learn.config.NETWORK_NAMES` with a checkpoint)
    with a row in ``decision`` gets its ``operating_point.json``
    (:func:`spinelib.learn.operating_point.write_operating_point`); one without (the split
    lacked a class, so the point is undefined) loses the file an earlier run may have left.

    Parameters
    ----------
    run_dir : the run folder.
    decision : :func:`decision_thresholds`' table.
    chosen_on : what the thresholds were chosen on, in words (stored with them).

    Returns
    -------
    The files written, in :data:`~spinelib.learn.config.NETWORK_NAMES` order.

    Raises
    ------
    InvalidArgumentError
        ``decision`` is not a :func:`decision_thresholds` table.
    """
    from ..learn.config import NETWORK_NAMES
    from ..learn.operating_point import OperatingPoint, operating_point_path, write_operating_point
    from ..study.experiment import checkpoint_path

    cols = {"model", "decision_deg", "n", "n_scoliotic", "sensitivity", "specificity"}
    if not isinstance(decision, pd.DataFrame) or not cols <= set(decision.columns):
        raise InvalidArgumentError(f"decision must be a decision_thresholds table with columns {sorted(cols)}")
    rows = {r["model"]: r for r in decision.to_dict("records")}
    written = []
    for name in NETWORK_NAMES:
        ckpt = checkpoint_path(run_dir, name)
        if not ckpt.is_file():
            continue
        if name not in rows:
            operating_point_path(ckpt).unlink(missing_ok=True)
            continue
        r = rows[name]
        point = OperatingPoint(decision_deg=float(r["decision_deg"]), chosen_on=chosen_on, n=int(r["n"]),
                               n_scoliotic=int(r["n_scoliotic"]), sensitivity=float(r["sensitivity"]),
                               specificity=float(r["specificity"]))
        written.append(write_operating_point(ckpt, point))
    return written


def _check_threshold(threshold_deg: float) -> None:
    if not np.isfinite(threshold_deg) or threshold_deg <= 0:
        raise InvalidArgumentError(f"threshold_deg must be positive, got {threshold_deg!r}")


def scoliosis_classification(angles: pd.DataFrame, *, threshold_deg: float = SCOLIOSIS_DEG,
                             decision: pd.DataFrame | None = None) -> pd.DataFrame:
    """How well each model tells scoliotic (Cobb >= ``threshold_deg``) from straight spines.

    The reference class comes from ``reference_cobb_deg`` (the generator's Cobb where known,
    else the target curves'). Under rule ``"clinical"`` the predicted class is predicted Cobb
    >= ``threshold_deg``, for every model and for the target curves themselves (model
    :data:`TARGET_CURVES`). Given ``decision`` (:func:`decision_thresholds` of the validation
    split), the table also holds rule ``"validation"``: predicted Cobb >= the model's
    ``decision_deg``, for the models it lists. Accuracy alone says little when most spines
    are straight (a model that never says "scoliotic" scores the prevalence of straight
    spines), hence sensitivity, specificity and their mean, the balanced accuracy
    (:func:`classification_scores`), and the rule-free ROC AUC of the predicted angle.

    Returns
    -------
    DataFrame ``model, rule, decision_deg, n, n_scoliotic, prevalence, tp, fp, tn, fn,
    accuracy, sensitivity, specificity, balanced_accuracy, auc`` (fractions; sensitivity NaN
    when the cohort has no scoliotic spine, specificity when it has no straight one, balanced
    accuracy and AUC then NaN), the clinical rows first.
    """
    if not {"subject_id", "model", "angle", "predicted_deg", "target_deg", "reference_cobb_deg"} <= set(angles.columns):
        raise InvalidArgumentError("angles must come from angle_table")
    _check_threshold(threshold_deg)
    cuts: dict[str, float] = {}
    if decision is not None:
        if not {"model", "decision_deg"} <= set(decision.columns):
            raise InvalidArgumentError("decision must come from decision_thresholds (model, decision_deg)")
        cuts = {str(m): float(t) for m, t in zip(decision["model"], decision["decision_deg"])}
        if not all(np.isfinite(t) for t in cuts.values()):
            raise InvalidArgumentError("decision holds a threshold that is not finite")
    cobb = angles[angles["angle"] == "cobb"]
    cols = ["model", "rule", "decision_deg", "n", "n_scoliotic", "prevalence", "tp", "fp", "tn", "fn", "accuracy",
            "sensitivity", "specificity", "balanced_accuracy", "auc"]
    rows = []

    def score(name: str, rule: str, ref_deg: np.ndarray, pred_deg: np.ndarray, cut: float) -> None:
        if ref_deg.size == 0:
            return
        ref = ref_deg >= threshold_deg
        sc = classification_scores(ref, pred_deg >= cut)
        auc = float(roc_auc_score(ref, pred_deg)) if 0 < ref.sum() < ref.size else float("nan")
        rows.append({"model": name, "rule": rule, "decision_deg": cut, "n_scoliotic": sc["n_positive"],
                     "prevalence": sc["n_positive"] / sc["n"], "auc": auc,
                     **{k: sc[k] for k in ("n", "tp", "fp", "tn", "fn", "accuracy", "sensitivity", "specificity",
                                           "balanced_accuracy")}})

    models = ordered_models(sorted(set(cobb["model"])))
    per_model = {m: (cobb.loc[cobb["model"] == m, "reference_cobb_deg"].to_numpy(float),
                     cobb.loc[cobb["model"] == m, "predicted_deg"].to_numpy(float)) for m in models}
    for m in models:
        score(m, "clinical", *per_model[m], threshold_deg)
    one = cobb.drop_duplicates("subject_id")
    score(TARGET_CURVES, "clinical", one["reference_cobb_deg"].to_numpy(float), one["target_deg"].to_numpy(float),
          threshold_deg)
    for m in (m for m in models if m in cuts):
        score(m, "validation", *per_model[m], cuts[m])
    return pd.DataFrame(rows, columns=cols)


def scoliosis_block(classification: pd.DataFrame, *, reference: str,
                    threshold_deg: float = SCOLIOSIS_DEG, decision: pd.DataFrame | None = None) -> dict:
    """The ``scoliosis`` block of ``metrics.json``: what the per-model scores are measured on.

    Parameters
    ----------
    classification : :func:`scoliosis_classification`'s table.
    reference : where the reference Cobb angles come from, in words.
    decision : :func:`decision_thresholds` of the validation split, if it was used.

    Returns
    -------
    ``{"threshold_deg", "reference", "n", "n_scoliotic", "prevalence"}`` plus, when the
    reference holds only one class, ``"undefined"``: why the per-model sensitivity (no
    scoliotic spine) or specificity (no straight spine) and the balanced accuracy are
    left out of the models block (``metrics.json`` holds finite numbers only); with
    ``decision``, ``"validation_rule"``: the rule in words and the validation subjects
    (``n_val``, ``n_val_scoliotic``) it was chosen on, or why it is undefined.
    """
    if not {"model", "n", "n_scoliotic"} <= set(classification.columns) or classification.empty:
        raise InvalidArgumentError("classification must be a non-empty scoliosis_classification table")
    r = classification.iloc[0]
    n, pos = int(r["n"]), int(r["n_scoliotic"])
    out = {"threshold_deg": float(threshold_deg), "reference": str(reference), "n": n, "n_scoliotic": pos,
           "prevalence": pos / n if n else 0.0}
    if pos == 0:
        out["undefined"] = ("no test subject is scoliotic: sensitivity and balanced accuracy are undefined "
                            "and left out")
    elif pos == n:
        out["undefined"] = ("every test subject is scoliotic: specificity and balanced accuracy are undefined "
                            "and left out")
    if decision is not None:
        if not {"model", "decision_deg", "n", "n_scoliotic"} <= set(decision.columns):
            raise InvalidArgumentError("decision must come from decision_thresholds")
        rule = {"rule": DECISION_RULES["validation"]}
        if decision.empty:
            rule["undefined"] = "the validation split lacks scoliotic or straight spines: no operating point"
        else:
            rule.update(n_val=int(decision["n"].iloc[0]), n_val_scoliotic=int(decision["n_scoliotic"].iloc[0]))
        out["validation_rule"] = rule
    return out
