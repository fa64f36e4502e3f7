"""spinelib.run.repro: comparing two runs' numbers, and `spinelib run --check` on the smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib import cli
from spinelib.errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from spinelib.run.compare import (CHECK_REPORT, CheckReport, Difference, compare_metrics, compare_runs,
                                  compare_values, flatten_json)
from spinelib.run.repro import check_run

METRICS = {
    "profile": "smoke",
    "n_subjects": {"train": 27, "val": 4, "test": 8},
    "alignment": {"error_mm_mean": 0.7736382311989543, "seconds_median": 0.0446},
    "models": {"resnet_bot": {"curve_mae_mm": {"coronal_left": 1.25, "sagittal_anterior": 2.5}, "iou_3d": 0.61}},
    "training": {"resnet_bot": {"seconds": 22.6, "params": 5146338}},
    "list": [1.0, 2.0],
}


def _run(folder: Path, metrics: dict, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "tables").mkdir()
    for name, df in tables.items():
        df.to_csv(folder / "tables" / f"{name}.csv", index=False, float_format="%.6g")
    return folder


def _tables() -> dict[str, pd.DataFrame]:
    return {
        "curve_errors": pd.DataFrame({"subject_id": ["S00001", "S00002"], "model": ["resnet", "resnet"],
                                      "mae_mm": [1.5, float("nan")], "seconds": [0.1, 0.2]}),
        "summary": pd.DataFrame({"model": ["resnet_bot"], "iou_3d": [0.61]}),
    }


@pytest.fixture
def two_runs(tmp_path):
    a = _run(tmp_path / "a", METRICS, _tables())
    mb = json.loads(json.dumps(METRICS))
    mb["models"]["resnet_bot"]["iou_3d"] = 0.62  # the one metric that differs
    mb["training"]["resnet_bot"]["seconds"] = 30.0  # a timing: not a result
    mb["alignment"]["seconds_median"] = 0.05
    tb = _tables()
    tb["curve_errors"].loc[0, "mae_mm"] = 1.75  # the one cell that differs
    tb["curve_errors"].loc[1, "seconds"] = 9.0
    b = _run(tmp_path / "b", mb, tb)
    (b / "tables" / ".tmp-summary-abc.csv").write_text("half,writ")  # an interrupted writer's leftover
    return a, b


def test_flatten_json_known():
    assert flatten_json({"a": {"b": 1, "c": [2, {"d": 3}]}, "e": {}}) == {"a.b": 1, "a.c[0]": 2, "a.c[1].d": 3, "e": {}}
    assert flatten_json(5) == {"": 5}


def test_compare_runs_reports_exactly_the_differences(two_runs):
    a, b = two_runs
    rep = compare_runs(a, b)
    assert not rep.ok
    assert [(d.where, d.key) for d in rep.differences] == [
        ("metrics", "models.resnet_bot.iou_3d"),
        ("tables/curve_errors.csv", "row 0, column mae_mm"),
    ]
    assert rep.differences[0].a == 0.61 and rep.differences[0].b == 0.62
    assert rep.differences[1].a == "1.5" and rep.differences[1].b == "1.75"
    assert rep.tables == ["curve_errors.csv", "summary.csv"]  # the temp file is not a table
    assert "metrics:training.resnet_bot.seconds" in rep.ignored
    assert "metrics:alignment.seconds_median" in rep.ignored
    assert "tables/curve_errors.csv:seconds" in rep.ignored
    # leaves: profile, 3 counts, error_mm_mean, 2 curve maes, iou, params, 2 list items
    assert rep.n_metrics == 11
    assert rep.n_cells == 2 * 3 + 2  # seconds column left out
    d = rep.to_dict()
    assert d["n_differences"] == 2 and d["ok"] is False
    json.dumps(d, allow_nan=False)
    assert "2 difference(s)" in rep.summary()


def test_compare_runs_tolerance_and_ignore(two_runs):
    a, b = two_runs
    assert compare_runs(a, b, rtol=0.2).ok  # 0.61 vs 0.62 and 1.5 vs 1.75 are within 20 %
    assert len(compare_runs(a, b, rtol=0.05).differences) == 1
    everything = compare_runs(a, b, ignore=())
    assert len(everything.differences) == 5 and not everything.ignored


def test_compare_runs_identical_and_nan(tmp_path):
    a = _run(tmp_path / "a", METRICS, _tables())
    b = _run(tmp_path / "b", METRICS, _tables())
    rep = compare_runs(a, b)
    assert rep.ok and "no difference" in rep.summary()  # the NaN cell equals the NaN cell


def test_compare_runs_structure(tmp_path):
    a = _run(tmp_path / "a", METRICS, _tables())
    mb = {k: v for k, v in METRICS.items() if k != "list"}
    mb["new"] = 1
    tb = _tables()
    tb["curve_errors"] = tb["curve_errors"].iloc[:1].assign(extra=1)
    del tb["summary"]
    tb["other"] = pd.DataFrame({"x": [1]})
    b = _run(tmp_path / "b", mb, tb)
    keys = {(d.where, d.key) for d in compare_runs(a, b).differences}
    assert keys == {
        ("metrics", "list[0] (only in a)"), ("metrics", "list[1] (only in a)"), ("metrics", "new (only in b)"),
        ("tables/curve_errors.csv", "column extra (only in b)"), ("tables/curve_errors.csv", "number of rows"),
        ("tables/summary.csv", "table only in a"), ("tables/other.csv", "table only in b"),
    }


@given(x=st.floats(allow_infinity=False), rtol=st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_compare_values_properties(x, rtol):
    assert compare_values(x, x, rtol=rtol)
    assert compare_values(str(x), x)  # CSV text against the number
    y = x + abs(x) * 1e-3
    if math.isfinite(y) and y != x:
        assert not compare_values(x, y)  # exact by default
        assert compare_values(x, y, rtol=2e-3)


def test_compare_values_non_numbers():
    assert compare_values("resnet", "resnet") and not compare_values("resnet", "resnet_bot")
    assert not compare_values(True, 1.0) and compare_values(None, None)
    assert not compare_values(float("nan"), 1.0)


def test_compare_metrics_timing_patterns():
    diffs, n, ignored = compare_metrics({"a": {"seconds": 1, "x_seconds": 2, "images_per_second": 3, "v": 1}},
                                        {"a": {"seconds": 9, "x_seconds": 9, "images_per_second": 9, "v": 1}})
    assert not diffs and n == 1 and len(ignored) == 3


def test_bad_tolerance(two_runs):
    a, b = two_runs
    for bad in (-1.0, float("nan"), float("inf"), "0.1"):
        with pytest.raises(InvalidArgumentError, match="rtol"):
            compare_runs(a, b, rtol=bad)
    with pytest.raises(InvalidArgumentError, match="atol"):
        compare_runs(a, b, atol=-1e-3)


def test_missing_run(tmp_path, two_runs):
    a, _ = two_runs
    with pytest.raises(MissingFileError, match="run_b"):
        compare_runs(a, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="metrics.json"):
        compare_runs(tmp_path / "empty", a)


def test_corrupt_files(two_runs):
    a, b = two_runs
    (b / "metrics.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match="metrics.json"):
        compare_runs(a, b)
    (b / "metrics.json").write_text("{}")
    (b / "tables" / "summary.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UnreadableFileError, match="summary.csv"):
        compare_runs(a, b)


def test_check_run_bad_arguments(two_runs):
    a, _ = two_runs
    with pytest.raises(MissingFileError, match="params.json"):
        check_run(a, stream=None)
    (a / "params.json").write_text(json.dumps({"profile": "smoke", "data": "/x/manifest.csv"}))
    with pytest.raises(InvalidArgumentError, match="another folder"):
        check_run(a, out=a, stream=None)
    with pytest.raises(InvalidArgumentError, match="rtol"):
        check_run(a, rtol=-1, stream=None)


def test_cli_check_exit_status(monkeypatch, tmp_path, capsys):
    import spinelib.run.repro as repro

    calls = []

    def fake(run_dir, **kw):
        calls.append((run_dir, kw))
        rep = CheckReport(str(run_dir), str(kw["out"]), kw["rtol"], 0.0)
        if kw["rtol"] == 0:
            rep.differences.append(Difference("metrics", "models.resnet.iou_3d", 0.5, 0.6))
        return rep

    monkeypatch.setattr(repro, "check_run", fake)
    assert cli.main(["run", "--check", str(tmp_path), "--out", str(tmp_path / "c")]) == 1
    assert "models.resnet.iou_3d" in capsys.readouterr().out
    assert cli.main(["run", "--check", str(tmp_path), "--rtol", "0.5"]) == 0
    assert calls[1][1]["out"] is None and calls[1][1]["rtol"] == 0.5
    # a check repeats the recorded run: options that would change it are refused
    assert cli.main(["run", "--check", str(tmp_path), "-p", "epochs", "3"]) == 2
    assert "-p cannot be combined" in capsys.readouterr().err


def test_provenance_records_what_repeats_the_run(smoke_run):
    prov = json.loads((smoke_run / "provenance.json").read_text())
    params = json.loads((smoke_run / "params.json").read_text())
    assert prov["params"] == params
    assert prov["seeds"] == {"seed": params["seed"]}
    assert set(prov["overrides"]) == {"shifted_data"}
    assert len(prov["data"]["sha256"]) == 64 and len(prov["data"]["cohort_json_sha256"]) == 64
    assert set(prov["git"]) >= {"commit", "dirty"}
    if prov["git"]["dirty"]:
        assert len(prov["git"]["diff_sha256"]) == 64 and prov["git"]["changed_files"]
    assert prov["packages"]["torch"] and prov["packages"]["numpy"]
    assert prov["repeat"] == f"spinelib run --check {smoke_run.resolve()}"


def test_check_smoke_run_reproduces(smoke_run, tmp_path, capsys):
    """The one extra full smoke run of the suite: a re-run from scratch gives the same numbers."""
    out = tmp_path / "check"
    assert cli.main(["run", "--check", str(smoke_run), "--out", str(out)]) == 0, capsys.readouterr()
    report = json.loads((out / CHECK_REPORT).read_text())
    assert report["ok"] and report["n_differences"] == 0 and report["differences"] == []
    assert report["n_metrics"] > 50 and report["n_cells"] > 1000
    assert "curve_errors_per_subject.csv" in report["tables"]
    assert "reconstruction_per_subject.csv" in report["tables"]
    assert json.loads((out / "params.json").read_text())["seed"] == json.loads(
        (smoke_run / "params.json").read_text())["seed"]
    assert "no difference" in capsys.readouterr().out
