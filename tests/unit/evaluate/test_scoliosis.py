"""Scoliotic or straight (spinelib.evaluate.scoliosis): confusion-matrix scores, the two decision
rules (the clinical one and the validation operating point by Youden's J), the ROC AUC, and their
metrics.json keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from spinelib import evaluate as ev
from spinelib.errors import InvalidArgumentError


def _angles(reference, predicted: dict[str, list[float]]) -> pd.DataFrame:
    """An angle_table-like frame: Cobb rows only, one per (subject, model)."""
    rows = []
    for m, pred in predicted.items():
        for i, (r, p) in enumerate(zip(reference, pred)):
            rows.append({"subject_id": f"s{i}", "model": m, "angle": "cobb", "predicted_deg": p, "target_deg": r,
                         "truth_deg": r, "reference_cobb_deg": r})
    return pd.DataFrame(rows)


def _one_model_table() -> pd.DataFrame:
    return pd.DataFrame({"subject_id": ["s0"], "model": ["resnet_bot"], "iou_3d": [0.5], "dice_3d": [2 / 3],
                         "centerline_3d_mm": [1.0], "hd95_mm": [2.0], "msd_mm": [1.0]})


def _youden(pos: np.ndarray, score: np.ndarray, t: float) -> float:
    called = score >= t
    return called[pos].mean() + (~called[~pos]).mean() - 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), min_size=2, max_size=30)
       .filter(lambda xs: 0 < sum(p for p, _ in xs) < len(xs)))
def test_operating_threshold_reaches_the_largest_youden_j(pairs):
    pos = np.array([p for p, _ in pairs])
    score = np.array([float(s) for _, s in pairs])
    t = ev.operating_threshold(pos, score, prefer=10.0)
    # brute force: every way of cutting the sorted scores
    best = max(_youden(pos, score, c) for c in np.concatenate([np.unique(score), [score.max() + 1.0]]))
    assert _youden(pos, score, t) == pytest.approx(best)


def test_operating_threshold_known_answers_and_ties():
    # separable: J = 1 anywhere between the classes' scores; the tie goes to the candidate nearest 10
    assert ev.operating_threshold(np.array([False, False, True, True]), np.array([1.0, 3.0, 20.0, 30.0]),
                                  prefer=10.0) == 11.5
    # a network that shrinks angles: scoliotic spines predicted 6-9 deg, straight ones 1-4
    pos = np.array([False] * 4 + [True] * 4)
    score = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    assert ev.operating_threshold(pos, score, prefer=10.0) == 5.0
    # the clinical rule would find none of them
    assert ev.classification_scores(pos, score >= 10.0)["sensitivity"] == 0.0


@pytest.mark.parametrize("pos, score, prefer, match", [
    (np.array([True, False]), np.array([1.0]), 10.0, "one length"),
    (np.array([1, 0]), np.array([1.0, 2.0]), 10.0, "boolean"),
    (np.array([True, False]), np.array([1.0, np.nan]), 10.0, "NaN"),
    (np.array([True, True]), np.array([1.0, 2.0]), 10.0, "both classes"),
    (np.array([True, False]), np.array([1.0, 2.0]), np.inf, "prefer"),
])
def test_operating_threshold_bad_inputs(pos, score, prefer, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ev.operating_threshold(pos, score, prefer=prefer)


def test_decision_thresholds_per_model_and_undefined_split():
    ref = [2.0, 5.0, 8.0, 12.0, 15.0, 25.0]
    a = _angles(ref, {"resnet_bot": [1.0, 3.0, 4.0, 7.0, 8.0, 16.0], "resnet": [1.0, 2.0, 12.0, 11.0, 13.0, 20.0]})
    d = ev.decision_thresholds(a).set_index("model")
    assert list(d.index) == ["resnet", "resnet_bot"]  # the library's model order
    assert d.loc["resnet_bot", "decision_deg"] == 5.5  # between 4 and 7: perfect on this split
    assert (d.loc["resnet_bot", "sensitivity"], d.loc["resnet_bot", "specificity"]) == (1.0, 1.0)
    assert (d.loc["resnet", "n"], d.loc["resnet", "n_scoliotic"]) == (6, 3)
    assert d.loc["resnet", "sensitivity"] + d.loc["resnet", "specificity"] == pytest.approx(1 + 2 / 3)
    straight = ev.decision_thresholds(_angles([1.0, 2.0], {"resnet_bot": [5.0, 12.0]}))
    assert straight.empty and "decision_deg" in straight.columns
    with pytest.raises(InvalidArgumentError, match="angle_table"):
        ev.decision_thresholds(a.drop(columns="reference_cobb_deg"))
    with pytest.raises(InvalidArgumentError, match="threshold_deg"):
        ev.decision_thresholds(a, threshold_deg=0.0)


def test_classification_under_both_rules_and_auc():
    ref = [2.0, 5.0, 8.0, 12.0, 15.0, 25.0]
    test = _angles(ref, {"resnet_bot": [1.0, 6.0, 4.0, 7.0, 8.0, 16.0], "mean_shape": [3.0] * 6})
    decision = pd.DataFrame({"model": ["resnet_bot"], "decision_deg": [5.5], "n": [6], "n_scoliotic": [3]})
    c = ev.scoliosis_classification(test, decision=decision)
    assert list(zip(c["model"], c["rule"])) == [("mean_shape", "clinical"), ("resnet_bot", "clinical"),
                                                (ev.TARGET_CURVES, "clinical"), ("resnet_bot", "validation")]
    clin = c[c["rule"] == "clinical"].set_index("model")
    val = c[c["rule"] == "validation"].set_index("model")
    assert clin.loc["resnet_bot", "sensitivity"] == pytest.approx(1 / 3)  # only 16 deg reaches 10
    assert (val.loc["resnet_bot", "tp"], val.loc["resnet_bot", "fp"]) == (3, 1)  # 6 deg of a straight spine
    assert val.loc["resnet_bot", "decision_deg"] == 5.5
    # the AUC is the rank statistic: Mann-Whitney U / (n_pos n_neg)
    pos = np.array(ref) >= 10.0
    score = np.array([1.0, 6.0, 4.0, 7.0, 8.0, 16.0])
    u = mannwhitneyu(score[pos], score[~pos]).statistic
    assert clin.loc["resnet_bot", "auc"] == pytest.approx(u / (pos.sum() * (~pos).sum()))
    assert clin.loc["mean_shape", "auc"] == 0.5  # a constant ranks nothing
    assert np.isnan(ev.scoliosis_classification(_angles([1.0, 2.0], {"resnet_bot": [3.0, 4.0]}))["auc"]).all()
    with pytest.raises(InvalidArgumentError, match="decision_thresholds"):
        ev.scoliosis_classification(test, decision=decision.drop(columns="decision_deg"))
    with pytest.raises(InvalidArgumentError, match="not finite"):
        ev.scoliosis_classification(test, decision=decision.assign(decision_deg=np.nan))


def test_both_rules_reach_metrics_json_and_the_scoliosis_block():
    test = _angles([2.0, 12.0, 25.0], {"resnet_bot": [1.0, 7.0, 16.0]})
    decision = pd.DataFrame({"model": ["resnet_bot"], "decision_deg": [5.0], "n": [40], "n_scoliotic": [9]})
    c = ev.scoliosis_classification(test, decision=decision)
    bot = ev.reconstruction_metrics_block(_one_model_table(), classification=c)["models"]["resnet_bot"]
    assert bot["scoliosis_sensitivity"] == 0.5 and bot["scoliosis_sensitivity_at_val_threshold"] == 1.0
    assert bot["scoliosis_val_threshold_deg"] == 5.0 and bot["scoliosis_auc"] == 1.0
    assert bot["scoliosis_specificity_at_val_threshold"] == 1.0
    block = ev.scoliosis_block(c, reference="truth", decision=decision)
    assert block["n"] == 3 and block["validation_rule"]["n_val"] == 40
    assert block["validation_rule"]["n_val_scoliotic"] == 9
    none = ev.scoliosis_block(c, reference="truth", decision=decision.iloc[:0])
    assert "undefined" in none["validation_rule"]
    with pytest.raises(InvalidArgumentError, match="decision_thresholds"):
        ev.scoliosis_block(c, reference="truth", decision=decision[["model"]])


def test_classification_scores_hand_computed_confusion():
    ref = np.array([True, True, True, False, False, False, False, False])
    pred = np.array([True, False, False, False, False, True, False, False])
    s = ev.classification_scores(ref, pred)
    # tp 1, fn 2, tn 4, fp 1
    assert (s["tp"], s["fn"], s["tn"], s["fp"]) == (1, 2, 4, 1)
    assert s["sensitivity"] == pytest.approx(1 / 3) and s["specificity"] == pytest.approx(4 / 5)
    assert s["balanced_accuracy"] == pytest.approx(0.5 * (1 / 3 + 4 / 5))
    assert s["accuracy"] == pytest.approx(5 / 8) and s["n_positive"] == 3
    never = ev.classification_scores(ref, np.zeros(8, bool))  # "never scoliotic"
    assert never["sensitivity"] == 0.0 and never["specificity"] == 1.0 and never["balanced_accuracy"] == 0.5
    for bad in ((ref, pred[:3]), (ref.astype(int), pred), (np.array([], bool), np.array([], bool))):
        with pytest.raises(InvalidArgumentError):
            ev.classification_scores(*bad)


def test_scoliosis_scores_in_block_and_undefined_cases_left_out():
    c = ev.scoliosis_classification(_angles([5.0, 15.0, 30.0, 8.0], {"resnet_bot": [12.0, 14.0, 5.0, 3.0]}))
    bot = c.set_index("model").loc["resnet_bot"]
    assert bot["balanced_accuracy"] == pytest.approx(0.5) and bot["prevalence"] == pytest.approx(0.5)
    block = ev.reconstruction_metrics_block(_one_model_table(), classification=c)["models"]["resnet_bot"]
    assert block["scoliosis_sensitivity"] == 0.5 and block["scoliosis_specificity"] == 0.5
    assert block["scoliosis_balanced_accuracy"] == 0.5
    sb = ev.scoliosis_block(c, reference="truth")
    assert sb == {"threshold_deg": 10.0, "reference": "truth", "n": 4, "n_scoliotic": 2, "prevalence": 0.5}
    # no scoliotic subject: sensitivity and balanced accuracy undefined -> left out, reason given
    none = ev.scoliosis_classification(_angles([1.0, 2.0, 3.0], {"resnet_bot": [12.0, 2.0, 3.0]}))
    b = ev.reconstruction_metrics_block(_one_model_table(), classification=none)["models"]["resnet_bot"]
    assert "scoliosis_sensitivity" not in b and "scoliosis_balanced_accuracy" not in b
    assert b["scoliosis_specificity"] == pytest.approx(2 / 3)
    assert "sensitivity" in ev.scoliosis_block(none, reference="truth")["undefined"]
    every = ev.scoliosis_classification(_angles([11.0, 20.0], {"resnet_bot": [12.0, 2.0]}))
    b = ev.reconstruction_metrics_block(_one_model_table(), classification=every)["models"]["resnet_bot"]
    assert "scoliosis_specificity" not in b and b["scoliosis_sensitivity"] == 0.5
    assert "specificity" in ev.scoliosis_block(every, reference="truth")["undefined"]
    with pytest.raises(InvalidArgumentError):
        ev.scoliosis_block(every.iloc[:0], reference="truth")


def test_operating_points_are_stored_beside_the_networks_checkpoints(tmp_path):
    """A network with a validation operating point gets its operating_point.json (read back as
    stored), one without loses a stale file, a model without a checkpoint gets nothing."""
    from spinelib.learn.operating_point import operating_point_path, read_operating_point
    from spinelib.study.experiment import checkpoint_path

    for name in ("resnet", "resnet_bot", "biplanar"):
        path = checkpoint_path(tmp_path, name)
        path.parent.mkdir(parents=True)
        path.write_bytes(name.encode())
    stale = operating_point_path(checkpoint_path(tmp_path, "biplanar"))
    stale.write_text("{}")
    ref = [2.0, 5.0, 12.0, 25.0, 8.0, 15.0]
    decision = ev.decision_thresholds(_angles(ref, {"resnet_bot": [1.0, 4.0, 9.0, 20.0, 6.0, 12.0],
                                                    "resnet": [2.0, 3.0, 7.0, 11.0, 8.0, 6.0],
                                                    "visible_summaries": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}))
    written = ev.record_operating_points(tmp_path, decision, chosen_on="the validation split")
    assert written == [operating_point_path(checkpoint_path(tmp_path, n)) for n in ("resnet", "resnet_bot")]
    assert not stale.exists()
    for r in decision[decision["model"].isin(["resnet", "resnet_bot"])].itertuples():
        point = read_operating_point(checkpoint_path(tmp_path, r.model))
        assert (point.decision_deg, point.n, point.n_scoliotic, point.sensitivity, point.specificity) == (
            r.decision_deg, r.n, r.n_scoliotic, r.sensitivity, r.specificity)
        assert point.chosen_on == "the validation split"
    # an undefined operating point (a split without scoliotic spines) leaves no file behind
    assert ev.record_operating_points(tmp_path, decision.iloc[:0], chosen_on="val") == []
    assert not any(operating_point_path(checkpoint_path(tmp_path, n)).exists() for n in ("resnet", "resnet_bot"))
    with pytest.raises(InvalidArgumentError, match="decision_thresholds"):
        ev.record_operating_points(tmp_path, decision.drop(columns="n"), chosen_on="val")
