"""Per-stage benchmark entries (spinelib.bench.stages) and the scaling arithmetic."""

from __future__ import annotations

import pandas as pd
import pytest

from spinelib.bench.harness import ENTRIES, run_bench
from spinelib.errors import InvalidArgumentError
from spinelib.bench.stages import N_STAGE_SUBJECTS, STAGE_ENTRIES, io_bytes, scale_up, stage_costs


def test_every_stage_entry_is_registered():
    for name in STAGE_ENTRIES:
        assert ENTRIES[name].startswith("spinelib.bench.stages:")


def test_io_bytes_counts_what_this_process_writes(tmp_path):
    r0, w0 = io_bytes()
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    assert (tmp_path / "f").read_bytes()
    r1, w1 = io_bytes()
    assert w1 - w0 >= 100_000 and r1 - r0 >= 100_000


def test_stage_entries_run_and_give_per_subject_costs(tmp_path):
    lines = []
    res = run_bench(list(STAGE_ENTRIES), repeat=1, profile="smoke", workdir=tmp_path, echo=lines.append)
    costs = stage_costs(res)
    assert list(costs["entry"]) == list(STAGE_ENTRIES)
    assert (costs["seconds_median"] > 0).all() and (costs["peak_rss_mib"] > 0).all()
    by = costs.set_index("entry")
    # synthesis writes a subject's files; alignment reads them; prediction writes four outputs
    assert by.loc["stage_synth", "mib_written"] > 0.1 and by.loc["stage_align_targets", "mib_read"] > 0.1
    assert by.loc["stage_predict", "mib_written"] > 0.1
    assert sum("per subject" in line for line in lines) == len(STAGE_ENTRIES)
    assert res["entries"]["stage_synth"]["items"] == N_STAGE_SUBJECTS


def test_scale_up_multiplies_out_and_totals():
    costs = pd.DataFrame({"entry": ["a", "b"], "stage": ["A", "B"], "seconds_median": [3.6, 7.2],
                          "mib_read": [1.0, 0.0], "mib_written": [0.0, 2.0]})
    plan = scale_up(costs, 1000, cores=2, workers=10).set_index("entry")
    assert plan.loc["a", "core_hours"] == pytest.approx(1.0) and plan.loc["b", "core_hours"] == pytest.approx(2.0)
    assert plan.loc["total", "core_hours"] == pytest.approx(3.0)
    assert plan.loc["total", "days_one_machine"] == pytest.approx(3.0 / 2 / 24)
    assert plan.loc["total", "hours_cluster"] == pytest.approx(0.3)
    assert plan.loc["a", "tib_read"] == pytest.approx(1000 / 2**20)
    assert plan.loc["b", "tib_written"] == pytest.approx(2000 / 2**20)


def test_bad_inputs():
    costs = pd.DataFrame({"entry": ["a"], "stage": ["A"], "seconds_median": [1.0], "mib_read": [0.0],
                          "mib_written": [0.0]})
    for kwargs in ({"cores": 0, "workers": 1}, {"cores": 1, "workers": True}):
        with pytest.raises(InvalidArgumentError):
            scale_up(costs, 10, **kwargs)
    with pytest.raises(InvalidArgumentError, match="n_subjects"):
        scale_up(costs, 0, cores=1, workers=1)
    with pytest.raises(InvalidArgumentError, match="lacks columns"):
        scale_up(costs.drop(columns="mib_read"), 10, cores=1, workers=1)
    with pytest.raises(InvalidArgumentError, match="no stage entries"):
        stage_costs({"entries": {"synth_cohort": {}}})
