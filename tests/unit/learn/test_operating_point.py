"""spinelib.learn.operating_point: the scoliosis operating point stored beside a checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, UnreadableFileError
from spinelib.learn.checkpoint import MissingCheckpointError
from spinelib.learn.operating_point import (
    OPERATING_POINT,
    OperatingPoint,
    operating_point_path,
    read_operating_point,
    scoliosis_calls,
    write_operating_point,
)
from spinelib.metrics.clinical import SCOLIOSIS_DEG

POINT = OperatingPoint(decision_deg=8.5, chosen_on="the validation split", n=98, n_scoliotic=23,
                       sensitivity=0.83, specificity=0.99)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "resnet_bot" / "best.pt"
    path.parent.mkdir()
    path.write_bytes(b"weights of one trained network")
    return path


def test_written_point_reads_back_for_its_checkpoint(checkpoint, caplog):
    with caplog.at_level(logging.DEBUG, logger="spinelib.learn.operating_point"):
        assert read_operating_point(checkpoint) is None  # none written yet
    assert "clinical rule only" in caplog.text and str(checkpoint) in caplog.text
    assert all(r.levelno == logging.DEBUG for r in caplog.records)  # a run reads checkpoints before their point
    path = write_operating_point(checkpoint, POINT)
    assert path == checkpoint.parent / OPERATING_POINT == operating_point_path(checkpoint)
    assert read_operating_point(checkpoint) == POINT
    assert json.loads(path.read_text())["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_point_of_another_checkpoint_is_ignored_with_a_warning(checkpoint, caplog):
    write_operating_point(checkpoint, POINT)
    checkpoint.write_bytes(b"the network, retrained")
    with caplog.at_level(logging.WARNING, logger="spinelib.learn.operating_point"):
        assert read_operating_point(checkpoint) is None
    assert "another checkpoint" in caplog.text and OPERATING_POINT in caplog.text


@given(st.floats(0.0, 60.0), st.floats(1.0, 30.0))
@settings(max_examples=40, deadline=None)
def test_calls_follow_the_two_thresholds(cobb, decision):
    point = OperatingPoint(decision_deg=decision, chosen_on="val", n=10, n_scoliotic=3, sensitivity=1.0,
                           specificity=0.5)
    assert scoliosis_calls(cobb, None) == {"scoliotic_clinical": cobb >= SCOLIOSIS_DEG}
    assert scoliosis_calls(cobb, point) == {"scoliotic_clinical": cobb >= SCOLIOSIS_DEG,
                                            "scoliosis_decision_deg": decision,
                                            "scoliotic_at_decision": cobb >= decision}
    assert scoliosis_calls(np.float32(cobb), None)["scoliotic_clinical"] == (np.float32(cobb) >= SCOLIOSIS_DEG)


def test_clinical_rule_includes_its_threshold():
    assert scoliosis_calls(SCOLIOSIS_DEG, None)["scoliotic_clinical"] is True
    assert scoliosis_calls(np.nextafter(SCOLIOSIS_DEG, 0.0), None)["scoliotic_clinical"] is False


@pytest.mark.parametrize("field, value", [
    ("decision_deg", float("nan")), ("decision_deg", True), ("decision_deg", "8"), ("threshold_deg", float("inf")),
    ("n", 1), ("n", 10.0), ("n_scoliotic", 0), ("n_scoliotic", 98), ("sensitivity", 1.5), ("specificity", -0.1),
    ("sensitivity", None), ("chosen_on", ""), ("chosen_on", 3),
])
def test_bad_operating_points(field, value):
    fields = {"decision_deg": 8.5, "chosen_on": "val", "n": 98, "n_scoliotic": 23, "sensitivity": 0.8,
              "specificity": 0.9, field: value}
    with pytest.raises(InvalidArgumentError, match=field):
        OperatingPoint(**fields)


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"decision_deg": 8.5}',
    json.dumps({"decision_deg": 8.5, "chosen_on": "val", "n": 98, "n_scoliotic": 23, "sensitivity": 0.8,
                "specificity": 0.9, "threshold_deg": 10.0}),  # no checkpoint_sha256
    json.dumps({"decision_deg": "x", "chosen_on": "val", "n": 98, "n_scoliotic": 23, "sensitivity": 0.8,
                "specificity": 0.9, "threshold_deg": 10.0, "checkpoint_sha256": "0" * 64}),
    json.dumps({"decision_deg": 8.5, "chosen_on": "val", "n": 98, "n_scoliotic": 23, "sensitivity": 0.8,
                "specificity": 0.9, "threshold_deg": 10.0, "checkpoint_sha256": "0" * 64, "extra": 1}),
])
def test_unreadable_operating_point_names_its_file(checkpoint, text):
    operating_point_path(checkpoint).write_text(text)
    with pytest.raises(UnreadableFileError, match=OPERATING_POINT):
        read_operating_point(checkpoint)


def test_bad_arguments(checkpoint, tmp_path):
    with pytest.raises(MissingCheckpointError):
        write_operating_point(tmp_path / "none.pt", POINT)
    with pytest.raises(InvalidArgumentError):
        write_operating_point(checkpoint, {"decision_deg": 8.5})
    for bad in (float("nan"), "12", True, None):
        with pytest.raises(InvalidArgumentError, match="cobb_deg"):
            scoliosis_calls(bad, POINT)
    assert not operating_point_path(checkpoint).exists()
