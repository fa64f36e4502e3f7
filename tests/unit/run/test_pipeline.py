"""spinelib.run.pipeline and `spinelib run`: order, caching, failures, errors, provenance.

The fixture notebooks (tests/data/notebooks) are tiny and run through papermill exactly as the
paper's notebooks do, with a fixture section list.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import spinelib_tests_pipeline_fixtures as fx

from spinelib.cli import main
from spinelib.errors import InvalidArgumentError, MissingFileError, PipelineError, ProfileError
from spinelib.run.parameters import notebook_parameters
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import SECTION_NAMES, SECTIONS, Section, resolve_sections


def executions(run: Path) -> list[str]:
    p = run / "executions.log"
    return p.read_text().split() if p.exists() else []


def test_sections_declared_in_order():
    assert SECTION_NAMES == ("alignment", "training", "curve_accuracy", "reconstruction",
                             "qualitative", "scaling")
    assert [s.notebook for s in SECTIONS] == [
        "01_alignment.ipynb", "02_training.ipynb", "03_curve_accuracy_2d.ipynb",
        "04_reconstruction_3d.ipynb", "05_qualitative.ipynb", "06_scaling.ipynb"]
    assert [s.name for s in resolve_sections("reconstruction,alignment")] == [
        "alignment", "reconstruction"]
    with pytest.raises(InvalidArgumentError, match="unknown section 'nope'"):
        resolve_sections("alignment,nope")


def test_parameters_cell_read(caplog):
    with caplog.at_level(logging.INFO, logger="papermill"):
        declared = notebook_parameters(fx.NOTEBOOKS / "b_second.ipynb")
        assert logging.getLogger("papermill").level == logging.INFO  # given back
    assert set(declared) == {"run_dir", "data", "profile", "epochs"}
    assert not caplog.records  # reading a notebook's parameters is not running it: no "Input Notebook"
    with pytest.raises(PipelineError, match="exactly one cell tagged 'parameters'"):
        notebook_parameters(fx.NOTEBOOKS / "y_noparams.ipynb")


def test_run_caching_and_downstream(tmp_path):
    run = tmp_path / "run"
    r1 = fx.make_run(run)
    assert r1.ran == ["first", "second", "spine3d"] and executions(run) == r1.ran
    # the kernel is this interpreter
    assert (run / "kernel_executable.txt").read_text() == sys.executable
    for sec in fx.FIXTURE_SECTIONS:
        assert (run / "notebooks" / sec.notebook).is_file()
    params = json.loads((run / "params.json").read_text())
    assert params["profile"] == "smoke" and params["epochs"] == 2
    assert params["run_dir"] == str(run.resolve())
    prov = json.loads((run / "provenance.json").read_text())
    assert set(prov["timings_s"]) == {"first", "second", "spine3d"}
    assert prov["data"]["sha256"] and prov["seeds"] == {"seed": 0}
    assert "commit" in prov["git"] and "dirty" in prov["git"]
    assert prov["packages"]["papermill"] and prov["kernel"]["argv"][0] == sys.executable
    assert not list(run.rglob(".tmp-*"))

    # unchanged -> everything skipped
    r2 = fx.make_run(run)
    assert r2.ran == [] and r2.skipped == ["first", "second", "spine3d"]
    assert executions(run) == ["first", "second", "spine3d"]

    # a parameter only section 2 declares -> 2 and 3 re-run, 1 not
    r3 = fx.make_run(run, overrides={"epochs": 3})
    assert r3.ran == ["second", "spine3d"] and r3.skipped == ["first"]
    assert (run / "second.txt").read_text().endswith("epochs=3")

    # the run folder remembers its overrides: a plain re-run changes nothing
    r4 = run_pipeline(run, notebooks_dir=fx.NOTEBOOKS, table=fx.FIXTURE_SECTIONS, stream=None)
    assert r4.ran == [] and r4.params["epochs"] == 3

    # --sections second --force: that one and the later ones, never the earlier
    r5 = fx.make_run(run, sections="second", force=True)
    assert r5.ran == ["second", "spine3d"] and r5.outcomes[0].section == "second"

    # a changed data manifest invalidates every section
    manifest = json.loads((run / "params.json").read_text())["data"]
    with open(manifest, "a") as fh:
        fh.write("S00001,test,a,b,c,d,e\n")
    r6 = fx.make_run(run, sections="second,spine3d")
    assert r6.ran == ["second", "spine3d"]  # first not selected: not run, and not re-run
    r7 = fx.make_run(run)
    assert r7.ran == ["first", "second", "spine3d"]


def test_changed_notebook_reruns_it_and_later(tmp_path):
    nbs = tmp_path / "nbs"
    shutil.copytree(fx.NOTEBOOKS, nbs)
    run = tmp_path / "run"
    manifest = tmp_path / "manifest.csv"
    shutil.copy(fx.MANIFEST, manifest)
    kw = dict(profile="smoke", data=manifest, notebooks_dir=nbs, table=fx.FIXTURE_SECTIONS,
              stream=None)
    run_pipeline(run, **kw)
    nb = json.loads((nbs / "c_spine3d.ipynb").read_text())
    nb["cells"][0]["source"] = "# Fixture: a rotating 3D spine, edited\n"
    (nbs / "c_spine3d.ipynb").write_text(json.dumps(nb))
    assert run_pipeline(run, **kw).ran == ["spine3d"]


def test_failing_section_named_and_earlier_outputs_intact(tmp_path):
    run = tmp_path / "run"
    table = fx.FIXTURE_SECTIONS[:2] + (Section("broken", "x_fail.ipynb"),)
    fx.make_run(run, table=fx.FIXTURE_SECTIONS[:2])
    before = {p: p.read_bytes() for p in (run / "notebooks").iterdir()}
    first_txt = (run / "first.txt").read_text()
    with pytest.raises(PipelineError) as err:
        fx.make_run(run, table=table)
    msg = str(err.value)
    assert "broken" in msg and "x_fail.ipynb" in msg
    assert "cell" in msg and "raise ValueError" in msg
    assert "ValueError: fixture failure: boom" in msg
    # the failed notebook, traceback included, is kept for reading
    failed = json.loads((run / "notebooks" / "x_fail.ipynb").read_text())
    tracebacks = [o for c in failed["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
    assert tracebacks and tracebacks[0]["ename"] == "ValueError"
    # earlier sections untouched, not re-run
    assert {p: p.read_bytes() for p in before} == before
    assert (run / "first.txt").read_text() == first_txt
    assert executions(run) == ["first", "second", "broken"]
    state = json.loads((run / "pipeline_state.json").read_text())
    assert state["sections"]["broken"]["status"] == "failed"
    assert json.loads((run / "provenance.json").read_text())["sections"]["broken"]["error"]
    # the failure is retried next time, the good sections are not
    with pytest.raises(PipelineError):
        fx.make_run(run, table=table)
    assert executions(run) == ["first", "second", "broken", "broken"]


def test_argument_errors(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InvalidArgumentError, match="unknown section 'nope'"):
        fx.make_run(run, sections="first,nope")
    with pytest.raises(ProfileError, match="unknown parameter 'no_such_param'"):
        fx.make_run(run, overrides={"no_such_param": 1})
    with pytest.raises(ProfileError, match="unknown profile"):
        fx.make_run(run, profile="huge")
    with pytest.raises(MissingFileError, match="no data manifest"):
        run_pipeline(tmp_path / "fresh", notebooks_dir=fx.NOTEBOOKS, table=fx.FIXTURE_SECTIONS,
                     stream=None)
    with pytest.raises(MissingFileError, match="missing_nb.ipynb"):
        fx.make_run(run, table=(Section("ghost", "missing_nb.ipynb"),))
    with pytest.raises(PipelineError, match="not_a_parameter"):
        fx.make_run(run, table=(Section("bad", "z_badparam.ipynb"),))
    with pytest.raises(PipelineError, match="exactly one cell tagged"):
        fx.make_run(run, table=(Section("noparams", "y_noparams.ipynb"),))
    assert not run.exists() or not (run / "notebooks").exists()


def test_selected_section_needs_earlier_ones(tmp_path):
    with pytest.raises(PipelineError, match="needs section 'first'"):
        fx.make_run(tmp_path / "run", sections="second")


def test_missing_later_notebook_stops_quietly_when_not_selected(tmp_path):
    table = fx.FIXTURE_SECTIONS[:1] + (Section("later", "not_written_yet.ipynb"),)
    result = fx.make_run(tmp_path / "run", table=table, sections="first")
    assert result.ran == ["first"]
    assert [o.status for o in result.outcomes] == ["ran", "missing"]
    with pytest.raises(MissingFileError, match="not_written_yet.ipynb"):
        fx.make_run(tmp_path / "run", table=table)


def test_cli_run_errors(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    shutil.copy(fx.MANIFEST, manifest)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--data", str(manifest), "--sections", "bogus"]) == 2
    assert "unknown section 'bogus'" in capsys.readouterr().err
    assert main(["run", "--out", str(out), "--data", str(manifest), "-p", "bogus", "1"]) == 2
    assert "unknown parameter 'bogus'" in capsys.readouterr().err
    assert main(["run", "--out", str(out), "--data", str(manifest), "-p", "epochs", "x"]) == 2
    assert "expects a value like" in capsys.readouterr().err


def test_stale_reason_is_a_pure_decision_from_the_record():
    from spinelib.run.state import SectionRecord, stale_reason

    now = dict(key="k", nb_sha="n", params_sha="p", data_sha="d")
    ok = {"section": "s", "status": "ok", "key": "k", "notebook_sha256": "n", "params_sha256": "p",
          "data_sha256": "d"}
    rec = SectionRecord.from_json  # a record as the state file holds it
    assert stale_reason(rec(ok), executed=True, **now) == ""
    assert stale_reason(rec(ok), executed=True, forced=True, **now) == "forced"
    assert stale_reason(None, executed=False, **now) == "never run"
    assert stale_reason(rec({**ok, "status": "failed"}), executed=True, **now) == "failed last time"
    assert stale_reason(rec(ok), executed=False, **now) == "executed notebook missing"
    stale = {**ok, "key": "old"}
    assert stale_reason(rec({**stale, "notebook_sha256": "n0"}), executed=True, **now) == "notebook changed"
    assert stale_reason(rec({**stale, "params_sha256": "p0"}), executed=True, **now) == "parameters changed"
    assert stale_reason(rec({**stale, "data_sha256": "d0"}), executed=True, **now) == "data manifest changed"
    assert stale_reason(rec(stale), executed=True, **now) == "an earlier section changed"
    assert stale_reason(rec(stale), executed=True, upstream_changed=True, **now) == "an earlier section re-ran"


def test_section_record_round_trips_the_state_file():
    from spinelib.run.state import SectionRecord

    saved = {"section": "b", "notebook": "/r/notebooks/b.ipynb", "source": "/n/b.ipynb",
             "notebook_sha256": "n", "params_sha256": "p", "data_sha256": "d", "upstream": [["a", "t0"]],
             "key": "k", "started": "2024-01-01T00:00:00+00:00", "status": "ok",
             "finished": "2024-01-01T00:00:01+00:00", "elapsed_s": 1.25, "run_token": "t1", "error": None}
    record = SectionRecord.from_json(saved)
    assert record.upstream == (("a", "t0"),) and record.run_token == "t1"
    assert json.dumps(record.to_json()) == json.dumps(saved)  # same keys, same order
