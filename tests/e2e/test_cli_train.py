"""`spinelib train`: training from a run folder's targets, in one process and under torchrun (DDP, gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinelib import cli
from spinelib.io import read_manifest
from spinelib.bench.predict import synthetic_examples
from spinelib.profiles import get_profile
from spinelib.io.runfolder import run_paths
from spinelib.study.targets import TargetSet, write_targets
from spinelib.synth.config import SynthConfig

N_SUBJECTS = 6
PARAMS = get_profile("smoke", {"n_subjects": N_SUBJECTS})
CROP = dict(pixel_mm=PARAMS["crop_pixel_mm"], image_size=PARAMS["image_size"])
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, TargetSet]:
    """A 6-subject smoke cohort and its targets (read through the true transforms: no alignment)."""
    from spinelib.synth.cohort import generate_cohort

    manifest = generate_cohort(tmp_path_factory.mktemp("cohort"), SynthConfig.from_profile(PARAMS), jobs=1,
                               progress=False)
    df = read_manifest(manifest)
    _, curves = synthetic_examples(N_SUBJECTS, PARAMS)  # the same subjects: make_subject(i, config)
    values = np.stack([c.values for c in curves])
    extent = np.stack([c.extent_mm for c in curves])
    targets = TargetSet(df["subject_id"].to_numpy(str), df["split"].to_numpy(str), values, extent,
                        np.zeros(N_SUBJECTS), values, extent)
    assert {"train", "val"} <= set(targets.split)
    return manifest, targets


def new_run(tmp_path: Path, targets: TargetSet) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    write_targets(run_paths(run)["targets"], targets)
    return run


def test_train_in_one_process_then_predict(cohort, tmp_path):
    manifest, targets = cohort
    run = new_run(tmp_path, targets)
    rc = cli.main(["train", "--run", str(run), "--data", str(manifest), "--profile", "smoke",
                   "--models", "resnet", "-p", "epochs", "1"])
    assert rc == 0
    ck = run_paths(run)["checkpoints"]
    assert (ck / "mean_shape" / "best.pt").is_file() and (ck / "resnet" / "best.pt").is_file()
    assert (ck / "visible_summaries" / "ridge.npz").is_file()
    assert not (ck / "resnet_bot").exists()
    summary = pd.read_csv(run_paths(run)["tables"] / "training_summary.csv")
    assert list(summary["model"]) == ["mean_shape", "visible_summaries", "resnet"]  # the two baselines are always fitted
    assert len(pd.read_csv(ck / "resnet" / "train_log.csv")) == 1
    # the training checkpoints (best and last) are what `spinelib predict` reads
    dxa = read_manifest(manifest)["dxa_path"].iloc[0]
    for name in ("best.pt", "last.pt"):
        out = tmp_path / f"pred-{name}"
        assert cli.main(["predict", dxa, "--checkpoint", str(ck / "resnet" / name), "--out", str(out)]) == 0
        assert (out / "curves.csv").is_file()


def test_unknown_model(cohort, tmp_path, capsys):
    manifest, targets = cohort
    run = new_run(tmp_path, targets)
    assert cli.main(["train", "--run", str(run), "--data", str(manifest), "--profile", "smoke",
                     "--models", "resnet,unet"]) == 2
    assert "unet" in capsys.readouterr().err


def test_run_without_targets(cohort, tmp_path, capsys):
    manifest, _ = cohort
    assert cli.main(["train", "--run", str(tmp_path), "--data", str(manifest), "--profile", "smoke"]) == 2
    assert "targets" in capsys.readouterr().err


def test_targets_with_another_number_of_levels(cohort, tmp_path, capsys):
    manifest, targets = cohort
    run = new_run(tmp_path, targets)
    assert cli.main(["train", "--run", str(run), "--data", str(manifest), "--profile", "smoke",
                     "-p", "n_levels", "16"]) == 2
    assert "K = 32" in capsys.readouterr().err


def test_missing_manifest(cohort, tmp_path, capsys):
    _, targets = cohort
    run = new_run(tmp_path, targets)
    assert cli.main(["train", "--run", str(run), "--data", str(tmp_path / "none.csv"), "--profile", "smoke"]) == 2
    assert "none.csv" in capsys.readouterr().err


def test_torchrun_two_processes(cohort, tmp_path):
    manifest, targets = cohort
    run = new_run(tmp_path, targets)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spinelib.cli", "train", "--run-dir", str(run), "--data", str(manifest), "--profile", "smoke",
           "--models", "resnet_bot", "-p", "epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 processes" in proc.stderr
    ck = run_paths(run)["checkpoints"]
    for name in ("mean_shape", "resnet_bot"):
        assert (ck / name / "best.pt").is_file()
    assert len(pd.read_csv(ck / "resnet_bot" / "train_log.csv")) == 1
    summary = pd.read_csv(run_paths(run)["tables"] / "training_summary.csv")
    assert list(summary["model"]) == ["mean_shape", "visible_summaries", "resnet_bot"]
    # every file was written once, atomically: no temporary left behind by a second writer
    leftovers = [p for p in run.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("."))]
    assert leftovers == []
    # the two ranks trained one model: the checkpoint reads back and predicts
    from spinelib.learn.predict import Predictor
    from spinelib.io import read_dxa

    pred = Predictor.from_checkpoint(ck / "resnet_bot" / "best.pt").predict(
        read_dxa(read_manifest(manifest)["dxa_path"].iloc[0]))
    assert pred.curves.n_levels == PARAMS["n_levels"]


def test_load_scans_takes_the_lateral_views_where_they_exist(cohort, tmp_path):
    """The synthetic cohort has lateral views; a DXA written without one (as UK Biobank's
    whole-body DXA) has none, so the cohort loses the biplanar model; an unknown subject is an error."""
    from spinelib.errors import InvalidArgumentError
    from spinelib.study.experiment import load_scans
    from spinelib.io import read_dxa, write_dxa

    manifest, _ = cohort
    df = read_manifest(manifest)
    ids = list(df["subject_id"])
    assert all(s.stack.shape[0] == 4 for s in load_scans(df, ids, **CROP, lateral=None, progress=False))
    d = read_dxa(df["dxa_path"].iloc[0])
    ap_only = write_dxa(tmp_path / "ap_only.npz", d.bone, d.tissue, d.pixel_spacing_mm)
    mixed = df.copy()
    mixed.loc[mixed.index[0], "dxa_path"] = str(ap_only)
    assert [s.stack.shape[0] for s in load_scans(mixed, ids, **CROP, lateral=None, progress=False)] == \
        [2] + [4] * (len(ids) - 1)
    assert all(s.stack.shape[0] == 2 for s in load_scans(mixed, ids, **CROP, lateral=False, progress=False))
    with pytest.raises(InvalidArgumentError, match="lateral view"):
        load_scans(mixed, ids[:1], **CROP, lateral=True, progress=False)
    with pytest.raises(InvalidArgumentError, match="S99999"):
        load_scans(df, ["S99999"], **CROP, lateral=None, progress=False)
