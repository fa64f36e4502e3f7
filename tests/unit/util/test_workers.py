"""The one fan-out (spinelib.util.workers): engines, shards, failures, resume, and identical
outputs from local processes, a Dask LocalCluster and shards (spinelib.util.records too)."""

from __future__ import annotations

import dataclasses
import filecmp
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, SpineLibError, UnreadableFileError
from spinelib.profiles import get_profile
from spinelib.study.config import TargetConfig
from spinelib.util.records import read_record, write_record
from spinelib.util.workers import Engine, Failed, Shard, chunk_size, fan_out, store_folder
from spinelib.synth.config import SynthConfig

DASK = Engine(jobs=2, kind="dask")


# ----------------------------------------------------------------------------- shards
@given(n=st.integers(0, 300), count=st.integers(1, 40))
def test_shards_cover_every_item_exactly_once(n, count):
    seen = [p for i in range(count) for p in Shard(i, count).positions(n)]
    assert sorted(seen) == list(range(n))
    sizes = [len(Shard(i, count).positions(n)) for i in range(count)]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_shard_parse_and_bad_shards():
    assert Shard.parse("3/8") == Shard(3, 8) and str(Shard.parse(" 0 / 1 ")) == "0/1"
    assert Shard().is_whole and not Shard(0, 2).is_whole
    for bad in ("8/8", "-1/4", "1", "a/b", "1/0", ""):
        with pytest.raises(InvalidArgumentError, match="shard"):
            Shard.parse(bad)
    with pytest.raises(InvalidArgumentError):
        Shard(True, 2)


def test_engine_validation():
    assert Engine.of(3) == Engine(jobs=3) and Engine.of(DASK) is DASK
    assert Engine.from_params({"jobs": 2, "engine": "", "scheduler": "tcp://h:8786"}).kind == "dask"
    assert Engine.from_params({"jobs": 2, "engine": "local", "scheduler": ""}) == Engine(jobs=2)
    for kwargs, match in (({"jobs": 0}, "jobs"), ({"jobs": True}, "jobs"), ({"kind": "slurm"}, "engine"),
                          ({"scheduler": "tcp://h:1"}, "needs engine 'dask'"), ({"kind": "dask", "scheduler": " "}, "scheduler"),
                          ({"chunk": -1}, "chunk")):
        with pytest.raises(InvalidArgumentError, match=match):
            Engine(**kwargs)


def test_chunk_size_balances_and_caps():
    assert chunk_size(1000, 2) == 16 and chunk_size(40, 2) == 5 and chunk_size(3, 8) == 1


# ----------------------------------------------------------------------------- fan_out
@pytest.mark.parametrize("engine", [Engine(1), Engine(2), Engine(2, chunk=2)])
def test_fan_out_keeps_order_and_reports_failures(engine):
    items = [4.0, -1.0, 9.0, 16.0, -4.0, 25.0]
    out = fan_out(math.sqrt, items, keys=list("abcdef"), engine=engine, desc="t", progress=False)
    assert out[0] == 2.0 and out[2] == 3.0 and out[5] == 5.0
    assert out[1] == Failed("b", "ValueError: math domain error") and isinstance(out[4], Failed)


def test_fan_out_resumes_from_its_store(tmp_path):
    store = tmp_path / "store"
    first = fan_out(math.sqrt, [4.0, 9.0, -1.0], keys=["a", "b", "c"], desc="t", progress=False, store=store)
    assert isinstance(first[2], Failed) and sorted(p.name for p in store.iterdir()) == ["a.npz", "b.npz"]
    # stored results are read, not computed again (another function would give other numbers);
    # the failed item is tried again
    again = fan_out(math.exp, [4.0, 9.0, -1.0], keys=["a", "b", "c"], desc="t", progress=False, store=store)
    assert again == [2.0, 3.0, math.exp(-1.0)]
    # a damaged entry is computed again
    (store / "a.npz").write_bytes(b"not a record")
    assert fan_out(math.exp, [0.0], keys=["a"], desc="t", progress=False, store=store) == [1.0]


def test_fan_out_bad_keys():
    with pytest.raises(InvalidArgumentError, match="2 keys for 1 items"):
        fan_out(math.sqrt, [1.0], keys=["a", "b"], desc="t", progress=False)
    with pytest.raises(InvalidArgumentError, match="unique"):
        fan_out(math.sqrt, [1.0, 2.0], keys=["a", "a"], desc="t", progress=False)


def test_store_folder_depends_on_settings(tmp_path):
    a = store_folder(tmp_path, "targets", {"n_levels": 64, "x": 1.0})
    assert a == store_folder(tmp_path, "targets", {"x": 1.0, "n_levels": 64})
    assert a != store_folder(tmp_path, "targets", {"n_levels": 32, "x": 1.0}) and a.name.startswith("targets-")


# ----------------------------------------------------------------------------- records
def test_records_round_trip_and_refuse_what_they_cannot_hold(tmp_path):
    rec = ({"id": "s1", "ok": True, "n": 3, "x": float("nan"), "v": np.arange(6.0).reshape(2, 3),
            "none": None, "nested": [{"w": np.array(["a", "bc"])}, (1, 2.5)]}, None)
    path = write_record(tmp_path / "r.npz", rec)
    back = read_record(path)
    assert isinstance(back, tuple) and back[1] is None
    d = back[0]
    assert d["id"] == "s1" and d["ok"] is True and d["n"] == 3 and math.isnan(d["x"]) and d["none"] is None
    assert np.array_equal(d["v"], rec[0]["v"]) and list(d["nested"][0]["w"]) == ["a", "bc"]
    assert d["nested"][1] == (1, 2.5)
    assert path.read_bytes() == write_record(tmp_path / "r2.npz", rec).read_bytes()  # byte-deterministic
    for bad in ({1: 2}, {"__array__": 1}, object(), np.array([object()])):
        with pytest.raises(InvalidArgumentError):
            write_record(tmp_path / "bad.npz", bad)
    from spinelib.io import write_arrays

    write_arrays(tmp_path / "plain.npz", {"a": np.zeros(2)})
    with pytest.raises(UnreadableFileError, match="not a spinelib record"):
        read_record(tmp_path / "plain.npz")
    with pytest.raises(SpineLibError, match="does not exist"):
        read_record(tmp_path / "absent.npz")


# ----------------------------------------------------------------------------- the three paths agree
def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_synth_local_dask_and_shards_write_identical_cohorts(tmp_path):
    from spinelib.synth.cohort import generate_cohort

    params = get_profile("smoke", {"n_subjects": 7})
    local = generate_cohort(tmp_path / "local", SynthConfig.from_profile(params), jobs=2, progress=False).parent
    dask = generate_cohort(tmp_path / "dask", SynthConfig.from_profile(params), jobs=DASK, progress=False).parent
    config = SynthConfig.from_profile(params)
    shards = [generate_cohort(tmp_path / "shards", config, shard=Shard(i, 3), progress=False) for i in (2, 0, 1)]
    assert shards[:2] == [None, None] and shards[2] is not None  # the last shard writes the manifest
    names = _files(local)
    assert len(names) == 7 * 6 + 2
    for other in (dask, shards[2].parent):
        assert _files(other) == names
        _, mismatch, errors = filecmp.cmpfiles(local, other, names, shallow=False)
        assert not mismatch and not errors, (other, mismatch, errors)


def test_alignment_targets_local_dask_and_shards_agree(tmp_path, smoke_cohort):
    from spinelib.io import read_manifest
    from spinelib.study.cohort_targets import align_cohort_targets, prepare_cohort_targets

    manifest = read_manifest(smoke_cohort).iloc[:9].reset_index(drop=True)
    params = TargetConfig.from_profile(get_profile("smoke"))
    local = prepare_cohort_targets(manifest, params, jobs=2, progress=False)
    dask = prepare_cohort_targets(manifest, params, jobs=DASK, progress=False)
    store = tmp_path / "store"
    for i in range(3):  # three array tasks fill the shared store ...
        assert len(align_cohort_targets(manifest, params, shard=Shard(i, 3), store=store, progress=False)) == 3
    written = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    assert len(written) == 9
    # ... and gathering reads them, computing (and writing) nothing
    sharded = prepare_cohort_targets(manifest, params, store=store, progress=False)
    assert written == {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    for other in (dask, sharded):
        pd.testing.assert_frame_equal(local.alignment.drop(columns="seconds"), other.alignment.drop(columns="seconds"))
        pd.testing.assert_frame_equal(local.truth_table, other.truth_table)
        for a, b in ((local.targets, other.targets), (local.truth, other.truth)):
            for field in ("subject_id", "split", "values", "extent_mm", "table_y_mm", "values_true", "anatomy"):
                assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=field != "subject_id"
                                      and getattr(a, field).dtype.kind == "f"), field


def test_cohort_prediction_local_dask_and_shards_agree(tmp_path, smoke_run, smoke_cohort):
    from spinelib.run.cohort_prediction import predict_scans

    from spinelib.study.experiment import checkpoint_path

    ckpt = checkpoint_path(smoke_run, "resnet")
    scans = tmp_path / "scans.txt"
    from spinelib.io import read_manifest

    scans.write_text("".join(f"{p}\n" for p in read_manifest(smoke_cohort)["dxa_path"].iloc[:6]))
    local = predict_scans(scans, ckpt, tmp_path / "local", jobs=2, batch_size=2, progress=False)
    dask = predict_scans(scans, ckpt, tmp_path / "dask", jobs=DASK, batch_size=2, progress=False)
    parts = [predict_scans(scans, ckpt, tmp_path / "shards", shard=Shard(i, 2), batch_size=2, progress=False)
             for i in range(2)]
    assert local.n_failed == 0 and local.n_scans == 6 and sum(p.n_scans for p in parts) == 6
    ref = pd.read_csv(local.measures_csv).drop(columns="output")
    pd.testing.assert_frame_equal(ref, pd.read_csv(dask.measures_csv).drop(columns="output"))
    joined = pd.concat([pd.read_csv(p.measures_csv) for p in parts]).drop(columns="output")
    pd.testing.assert_frame_equal(ref, joined.sort_values("scan").reset_index(drop=True))
    for sid in ref["scan"]:
        for name in ("curves.csv", "spine3d.nii.gz", "measures.json"):
            assert (tmp_path / "local" / sid / name).read_bytes() == (tmp_path / "dask" / sid / name).read_bytes()
            assert (tmp_path / "local" / sid / name).read_bytes() == (tmp_path / "shards" / sid / name).read_bytes()
    # a rerun keeps what was written (same checkpoint): nothing is predicted again
    before = {sid: (tmp_path / "local" / sid / "measures.json").stat().st_mtime_ns for sid in ref["scan"]}
    predict_scans(scans, ckpt, tmp_path / "local", batch_size=2, progress=False)
    assert before == {sid: (tmp_path / "local" / sid / "measures.json").stat().st_mtime_ns for sid in ref["scan"]}


def test_3d_evaluation_local_and_dask_agree(smoke_run, smoke_cohort):
    from spinelib import evaluate as ev
    from spinelib.run.privacy import run_manifest

    manifest, _, _ = run_manifest(smoke_run, smoke_cohort)
    test = ev.test_set(smoke_run, manifest)
    local = ev.evaluate_3d(test, grid_mm=4.0, jobs=2, progress=False)
    dask = ev.evaluate_3d(test, grid_mm=4.0, jobs=DASK, progress=False)
    pd.testing.assert_frame_equal(local, dask)


def test_dask_leaves_this_process_environment_alone():
    # distributed hands OMP_NUM_THREADS=1 (and more) to its workers through os.environ
    import os

    before = dict(os.environ)
    assert fan_out(math.sqrt, [9.0, 1.0], keys=["a", "b"], engine=DASK, desc="t", progress=False) == [3.0, 1.0]
    assert dict(os.environ) == before


def test_cli_align_shards_fill_the_store_the_alignment_section_reads(tmp_path, smoke_cohort, capsys):
    from spinelib.cli import main
    from spinelib.io import read_manifest
    from spinelib.study.cohort_targets import prepare_cohort_targets, target_store

    small = tmp_path / "small.csv"  # six subjects of the session's cohort
    manifest = read_manifest(smoke_cohort)
    rows = pd.read_csv(smoke_cohort).iloc[:6]
    rows.assign(**{c: [str(smoke_cohort.parent / p) for p in rows[c]]
                   for c in ("dxa_path", "mri_fat_path", "mri_water_path", "seg_path", "truth_path")}
                ).to_csv(small, index=False)
    run = tmp_path / "run"
    for i in range(2):
        assert main(["align", "--run", str(run), "--data", str(small), "--profile", "smoke", "--shard", f"{i}/2"]) == 0
        assert "3 subjects aligned into" in capsys.readouterr().out
    params = TargetConfig.from_profile(get_profile("smoke"))
    store = target_store(run, params)
    written = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    assert len(written) == 6
    # what the alignment section calls: everything read from the store, nothing recomputed
    got = prepare_cohort_targets(read_manifest(small), params, store=store, progress=False)
    assert written == {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    want = prepare_cohort_targets(manifest.iloc[:6], params, progress=False)
    pd.testing.assert_frame_equal(got.alignment.drop(columns="seconds"), want.alignment.drop(columns="seconds"))
    assert np.array_equal(got.truth.values, want.truth.values)
    # another parameter is another store: nothing stale is read
    assert target_store(run, dataclasses.replace(params, n_levels=16)) != store
    with pytest.raises(InvalidArgumentError, match="TargetConfig"):
        target_store(run, get_profile("smoke"))
    assert main(["align", "--run", str(run), "--data", str(small), "--shard", "2/2"]) == 2
    assert "shard index must be in 0..1" in capsys.readouterr().err
