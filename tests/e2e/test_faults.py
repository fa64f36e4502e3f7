"""Fault tolerance: processes killed mid-way resume to the uninterrupted result; full or
unwritable disks fail up front; pickled DXAs only with the run's explicit opt-in.

The kills use real ``spinelib`` subprocesses and ``SIGKILL`` (no clean-up handler runs),
sent once a progress marker appears on disk.
"""

from __future__ import annotations

import filecmp
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from spinelib import cli
from spinelib.util.atomic import TMP_PREFIX
from spinelib.errors import OutputError
from spinelib.profiles import get_profile
from spinelib.run.compare import compare_runs, compare_tables
from spinelib.synth.config import SynthConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE_SUBJECTS = 40  # the session's smoke cohort (conftest) is the uninterrupted reference


def _spinelib(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "spinelib.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _kill_when(proc: subprocess.Popen, ready, *, timeout: float = 120) -> list[psutil.Process]:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; returns its descendants at that moment."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended before the kill point: {proc.communicate()[0][-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the kill point never came")
        time.sleep(0.02)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return children


def _assert_orphans_exit(children: list[psutil.Process], *, timeout: float = 20) -> None:
    """Nothing the killed process started may go on writing into the folder."""
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for p in alive:
        p.kill()
    assert not alive, f"processes outlived the killed command: {[p.pid for p in alive]}"


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(TMP_PREFIX) for part in p.relative_to(root).parts))


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(TMP_PREFIX + "*"))


# --------------------------------------------------------------------------- cohort generation
@pytest.mark.parametrize("jobs", [1, 2])
def test_synth_killed_resumes_to_identical_cohort(tmp_path, smoke_cohort, jobs):
    out = tmp_path / "cohort"
    args = ("synth", "--out", str(out), "--profile", "smoke", "--n", str(SMOKE_SUBJECTS), "--jobs", str(jobs))
    t0 = time.monotonic()
    proc = _spinelib(*args, cwd=tmp_path)
    # the first complete subject folder is the progress marker
    children = _kill_when(proc, lambda: (out / "S00000").is_dir())
    killed_after = time.monotonic() - t0
    assert len(children) == (0 if jobs == 1 else jobs)
    _assert_orphans_exit(children)  # pool workers must not go on writing subjects
    assert not (out / "manifest.csv").exists(), "killed before the end, yet the manifest was written"
    done = [p for p in out.iterdir() if p.name.startswith("S")]
    assert 0 < len(done) < SMOKE_SUBJECTS, "the kill did not interrupt the generation"
    for folder in done:  # every subject folder visible is whole
        assert sorted(f.name for f in folder.iterdir()) == sorted(
            ["dxa.npz", "mri_fat.nii.gz", "mri_water.nii.gz", "seg.nii.gz", "seg_dxa.nii.gz", "truth.json"])
    _finish(_spinelib(*args, cwd=tmp_path))
    ref = smoke_cohort.parent
    assert _files(out) == _files(ref)
    match, mismatch, errors = filecmp.cmpfiles(ref, out, [str(p) for p in _files(ref)], shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    assert not _temporaries(out), "the resumed run left the interrupted run's temporaries"
    print(f"synth killed after {killed_after:.1f}s with {len(done)} subjects done")


def test_synth_unwritable_and_full_disk(tmp_path, monkeypatch, capsys, unwritable_dir):
    target = unwritable_dir / "cohort"
    assert cli.main(["synth", "--out", str(target), "--profile", "smoke", "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(unwritable_dir) in err

    from spinelib.synth.cohort import estimate_subject_mb, generate_cohort

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    out = tmp_path / "full"
    params = get_profile("smoke", {"n_subjects": 6})
    with pytest.raises(OutputError, match=str(out)) as info:
        generate_cohort(out, SynthConfig.from_profile(params), progress=False)
    assert f"{estimate_subject_mb(SynthConfig.from_profile(params)) * 6:.0f} MiB are needed" in str(info.value)
    assert not any(out.iterdir()), "work started although the disk was full"
    # the estimate is above what a subject takes on disk, and grows with the resolution
    smoke_mb, paper_mb = (estimate_subject_mb(SynthConfig.from_profile(get_profile(p))) for p in ("smoke", "paper"))
    assert smoke_mb > 0.65 and paper_mb > 5 * smoke_mb


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A folder this process cannot write into (root ignores permission bits: use procfs)."""
    if os.geteuid() != 0:
        d = tmp_path / "readonly"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
    else:
        d = Path("/proc/sys")
        if os.access(d, os.W_OK):
            pytest.skip("no read-only folder available to root here")
        yield d


# --------------------------------------------------------------------------- training
@pytest.fixture
def train_run(tmp_path, smoke_run, smoke_cohort):
    """A fresh run folder holding the smoke run's targets (what `spinelib train` needs)."""

    def make(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in ("targets.npz", "params.json"):
            shutil.copy2(smoke_run / f, d / f)
        return d

    return make


def _train_args(run: Path, manifest: Path) -> tuple[str, ...]:
    return ("train", "--run-dir", str(run), "--data", str(manifest), "--models", "resnet",
            "-p", "epochs", "3", "-p", "image_size", "[64, 32]")


def test_train_killed_resumes_to_identical_weights(train_run, smoke_cohort, tmp_path):
    run, ref = train_run("killed"), train_run("uninterrupted")
    log = run / "checkpoints" / "resnet" / "train_log.csv"

    def one_epoch_logged() -> bool:
        try:
            return len(log.read_text().splitlines()) >= 2  # header + epoch 0
        except FileNotFoundError:
            return False

    t0 = time.monotonic()
    proc = _spinelib(*_train_args(run, smoke_cohort), cwd=tmp_path)
    _assert_orphans_exit(_kill_when(proc, one_epoch_logged))
    killed_after = time.monotonic() - t0
    epochs_at_kill = len(pd.read_csv(log))
    assert epochs_at_kill < 3, "the kill came after training had finished"
    out = _finish(_spinelib(*_train_args(run, smoke_cohort), cwd=tmp_path))
    _finish(_spinelib(*_train_args(ref, smoke_cohort), cwd=tmp_path))
    assert "resuming" in out

    for name in ("best.pt", "last.pt"):
        a = torch.load(run / "checkpoints" / "resnet" / name, weights_only=True)["state_dict"]
        b = torch.load(ref / "checkpoints" / "resnet" / name, weights_only=True)["state_dict"]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs after the resumed run"
    diffs, n, _ = compare_tables(log, ref / "checkpoints" / "resnet" / "train_log.csv")
    assert not diffs and n == 3 * 4  # epoch, losses, lr of 3 epochs, timings left out
    diffs, _, _ = compare_tables(run / "tables" / "training_summary.csv", ref / "tables" / "training_summary.csv")
    assert not diffs
    assert not _temporaries(run / "checkpoints")
    print(f"train killed after {killed_after:.1f}s at {epochs_at_kill} epoch(s)")


# --------------------------------------------------------------------------- a notebook section
_EARLY_METRICS = ("profile", "n_subjects", "alignment", "data_quality", "truth_targets", "training")
_EARLY_TABLES = ("alignment", "alignment_errors", "alignment_rejected", "bad_subjects", "target_noise",
                 "truth_targets", "target_noise_vs_truth", "training_summary", "paper_parameter_counts",
                 "prediction_skipped", "tuned_on")


def test_section_killed_resumes_to_identical_metrics(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    # leave only what the sections before curve_accuracy wrote: the resumed run must remake the rest
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k in _EARLY_METRICS}))
    for t in (run / "tables").glob("*.csv"):
        if t.stem not in _EARLY_TABLES:
            t.unlink()
    marker = run / "notebooks" / f"{TMP_PREFIX}03_curve_accuracy_2d.ipynb"
    args = ("run", "--out", str(run), "--sections", "curve_accuracy", "--force")

    t0 = time.monotonic()
    proc = _spinelib(*args, cwd=tmp_path)
    children = _kill_when(proc, lambda: marker.exists() and "execution_count\": 2" in _text(marker))
    killed_after = time.monotonic() - t0
    _assert_orphans_exit(children)
    state = json.loads((run / "pipeline_state.json").read_text())
    assert "curve_accuracy" not in state["sections"], "an interrupted section must not count as done"
    # without --force: the interrupted section and the later ones run, the earlier ones do not
    out = _finish(_spinelib("run", "--out", str(run), "--sections", "curve_accuracy", cwd=tmp_path))
    assert "curve_accuracy: running" in out and "reconstruction: running" in out
    report = compare_runs(smoke_run, run)
    assert report.ok, report.summary()
    assert report.n_metrics > 50
    assert not marker.exists()
    for nb in (run / "notebooks").glob("*.ipynb"):  # the executed notebooks are whole
        json.loads(nb.read_text())
    print(f"section killed after {killed_after:.1f}s")


def _text(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def test_run_unwritable_and_full_disk(smoke_cohort, smoke_run, tmp_path, monkeypatch, capsys, unwritable_dir):
    assert cli.main(["run", "--out", str(unwritable_dir), "--profile", "smoke", "--data", str(smoke_cohort)]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(unwritable_dir) in err

    from spinelib.run.pipeline import estimate_run_mb, run_pipeline

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    out = tmp_path / "full"
    with pytest.raises(OutputError, match=str(out)) as info:
        run_pipeline(out, profile="smoke", data=smoke_cohort, stream=None)
    assert f"{estimate_run_mb(get_profile('smoke')):.0f} MiB are needed" in str(info.value)
    assert not (out / "params.json").exists() and not (out / "notebooks").exists()
    # the estimate covers what the smoke run really wrote
    used = sum(p.stat().st_size for p in smoke_run.rglob("*") if p.is_file()) / 2**20
    assert estimate_run_mb(get_profile("smoke")) > used


# --------------------------------------------------------------------------- safe loading
def _pickled_cohort(tmp_path: Path, smoke_cohort: Path, n: int = 3) -> Path:
    """The first ``n`` smoke subjects, with subject 1's DXA as a UK Biobank-style pickle."""
    from spinelib import io

    src = io.read_manifest(smoke_cohort).head(n).reset_index(drop=True)
    rows = []
    for _, r in src.iterrows():
        row = {k: r[k] for k in ("subject_id", "split", "dxa_path", "mri_fat_path", "mri_water_path",
                                 "seg_path", "truth_path")}
        if r["subject_id"] == src["subject_id"][1]:
            d = io.read_dxa(r["dxa_path"])
            pkl = tmp_path / f"{r['subject_id']}.pkl"
            with open(pkl, "wb") as fh:
                pickle.dump({"bone": d.bone, "tissue": d.tissue, "pixel_spacing": d.pixel_spacing_mm.tolist()}, fh)
            row["dxa_path"] = str(pkl)
        rows.append(row)
    return io.write_manifest(tmp_path / "manifest.csv", rows)


def test_pickled_dxa_needs_the_run_parameter(tmp_path, smoke_cohort):
    from spinelib import io
    from spinelib.align import AlignConfig
    from spinelib.study.cohort_targets import prepare_cohort
    from spinelib.study.config import TargetConfig

    manifest = io.read_manifest(_pickled_cohort(tmp_path, smoke_cohort))
    pid = manifest["subject_id"][1]
    params = get_profile("smoke")
    assert params["allow_pickle"] is False
    table, targets = prepare_cohort(manifest, TargetConfig.from_profile(params), jobs=1, progress=False)
    row = table.set_index("subject_id").loc[pid]
    assert not row["trusted"] and "UnsafeLoadError" in row["reason"] and "allow_pickle" in row["reason"]
    assert pid not in set(targets.subject_id)
    assert table["trusted"].sum() == len(targets) and len(targets) >= 1  # the others go on

    table, targets = prepare_cohort(manifest, TargetConfig.from_profile(get_profile("smoke", {"allow_pickle": True})),
                                    jobs=1, progress=False)
    assert "load failed" not in str(table.set_index("subject_id").loc[pid, "reason"])

    from spinelib.align.cohort import align_cohort

    table = align_cohort(manifest, AlignConfig.from_profile(params), jobs=1, progress=False)
    assert "UnsafeLoadError" in table.set_index("subject_id").loc[pid, "reason"]
    from spinelib.errors import UnsafeLoadError
    from spinelib.study.experiment import load_scans

    crop = dict(pixel_mm=params["crop_pixel_mm"], image_size=params["image_size"])

    with pytest.raises(UnsafeLoadError, match="allow_pickle"):
        load_scans(manifest, [pid], **crop, lateral=False, progress=False)
    scans = load_scans(manifest, [pid], **crop, lateral=False, allow_pickle=True, progress=False)
    ref = load_scans(io.read_manifest(smoke_cohort), [pid], **crop, lateral=False, progress=False)
    assert np.array_equal(scans[0].stack, ref[0].stack)  # the pickle holds the same scan


def test_notebooks_declare_allow_pickle():
    from spinelib.run.parameters import notebook_parameters
    from spinelib.run.sections import NOTEBOOKS_DIR

    for nb in ("01_alignment.ipynb", "02_training.ipynb", "05_qualitative.ipynb"):
        assert notebook_parameters(NOTEBOOKS_DIR / nb)["allow_pickle"] == "False", nb


class _RunsCode:
    """Unpickling this object would create a file: the proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_loading_never_runs_code(tmp_path):
    from spinelib.learn.checkpoint import CHECKPOINT_FORMAT, CorruptCheckpointError, load_checkpoint

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CorruptCheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_process_pool_workers_die_with_parent(tmp_path):
    from spinelib.errors import InvalidArgumentError
    from spinelib.util.workers import process_pool

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match="max_workers"):
            process_pool(bad)
    with process_pool(2) as ex:
        assert sorted(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
