from __future__ import annotations

import json

import pandas as pd
import pytest

from spinelib.errors import InvalidArgumentError, NonFiniteError, UnreadableFileError
from spinelib.io.runfolder import read_metrics, update_metrics, write_table


def test_update_merges_blocks(tmp_path):
    update_metrics(tmp_path, {"profile": "smoke", "models": {"resnet": {"iou_3d": 0.5}}})
    update_metrics(tmp_path, {"models": {"resnet_bot": {"iou_3d": 0.7}}, "ceiling": {"iou_3d": 0.9}})
    m = read_metrics(tmp_path)
    assert m["models"] == {"resnet": {"iou_3d": 0.5}, "resnet_bot": {"iou_3d": 0.7}}
    assert m["ceiling"]["iou_3d"] == 0.9 and m["profile"] == "smoke"
    assert not list(tmp_path.glob(".tmp-*"))


def test_non_finite_refused_and_file_untouched(tmp_path):
    update_metrics(tmp_path, {"a": 1.0})
    with pytest.raises(NonFiniteError, match="models.x.iou_3d"):
        update_metrics(tmp_path, {"models": {"x": {"iou_3d": float("nan")}}})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1.0}


def test_corrupt_metrics_named(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match="metrics.json"):
        read_metrics(tmp_path)


def test_write_table(tmp_path):
    p = write_table(tmp_path, "per_subject", pd.DataFrame({"a": [1.0, 2.5]}))
    assert p.read_text().splitlines() == ["a", "1", "2.5"]
    with pytest.raises(InvalidArgumentError):
        write_table(tmp_path, "../x", pd.DataFrame())
