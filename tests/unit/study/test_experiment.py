"""Tests of spinelib.study.experiment: networks trained side by side or one after the other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinelib.errors import InvalidArgumentError
from spinelib.learn.checkpoint import load_checkpoint
from spinelib.profiles import get_profile
from spinelib.learn.recipe import read_recipe
from spinelib.study.experiment import checkpoint_path, mirror_averaged, train_jobs, train_section
from spinelib_tests_disk_cohort import disk_cohort

NAMES = ("resnet", "resnet_bot")


def _params(**overrides):
    return get_profile("smoke", {"n_levels": 8, "epochs": 1, "num_threads": 1, **overrides})


def _weights(run, name):
    model, _, _ = load_checkpoint(checkpoint_path(run, name))
    return model.state_dict()


def test_side_by_side_training_gives_the_networks_of_one_after_the_other(tmp_path):
    """Each network depends on its seed and thread count only: trained in two spawned
    processes, it has exactly the weights and losses it has trained alone in this process."""
    manifest, targets = disk_cohort(tmp_path / "cohort", 24, 8)
    runs = {jobs: tmp_path / f"run{jobs}" for jobs in (1, 2)}
    summaries = {jobs: train_section(run, manifest, targets, _params(train_jobs=jobs), names=NAMES, progress=False)
                 for jobs, run in runs.items()}
    for s in summaries.values():
        assert list(s["model"]) == ["mean_shape", "visible_summaries", *NAMES]
    assert list(summaries[1]["best_val_l1"]) == list(summaries[2]["best_val_l1"])
    for name in NAMES:
        one, two = _weights(runs[1], name), _weights(runs[2], name)
        assert one.keys() == two.keys()
        assert all(torch.equal(one[k], two[k]) for k in one), name
    # the networks learnt mirrored crops and are read with mirror averaging; the mean shape is not
    for name, mirrored in (("mean_shape", False), *((n, True) for n in NAMES)):
        path = checkpoint_path(runs[2], name)
        assert read_recipe(load_checkpoint(path)[2], path).mirror_average is mirrored, name


def test_networks_trained_without_mirrored_crops_are_read_without_mirror_averaging():
    assert mirror_averaged(_params(), "resnet_bot")
    assert not mirror_averaged(_params(augment_mirror=False), "resnet_bot")
    assert not mirror_averaged(_params(augment=False), "resnet_bot")
    assert not mirror_averaged(_params(), "mean_shape")  # fitted, never trained on crops


def test_a_failed_training_in_a_side_process_raises(tmp_path):
    manifest, targets = disk_cohort(tmp_path / "cohort", 12, 8)
    params = _params(train_jobs=2, lr_by_model={"resnet_bot": -1.0})
    with pytest.raises(InvalidArgumentError, match="lr must be > 0"):
        train_section(tmp_path / "run", manifest, targets, params, names=NAMES, progress=False)


def test_train_jobs(monkeypatch):
    assert train_jobs({"train_jobs": 2}, 3) == 2
    assert train_jobs({"train_jobs": 4}, 3) == 3  # at most one process per network
    assert train_jobs({"train_jobs": 2}, 0) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun every rank trains every network
    assert train_jobs({"train_jobs": 2}, 3) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_train_jobs_refuses_bad_values(bad):
    with pytest.raises(InvalidArgumentError, match="train_jobs"):
        train_jobs({"train_jobs": bad}, 3)


def test_severity_sampling_draws_by_the_training_targets_cobb_angles(tmp_path, monkeypatch):
    from spinelib.learn import train as train_module
    from spinelib.learn.sampling import severity_weights
    from spinelib.metrics.clinical import SEVERITY_EDGES_DEG, cobb_angle
    from spinelib.study import experiment

    manifest, targets = disk_cohort(tmp_path / "cohort", 16, 8)
    seen = {}

    def spy(*args, sample_weights=None, **kwargs):
        seen[args[1].name] = sample_weights
        return train_module.train_model(*args, sample_weights=sample_weights, **kwargs)

    monkeypatch.setattr(experiment, "train_model", spy)
    train_section(tmp_path / "run", manifest, targets, _params(train_jobs=1, severity_sampling=1.0), names=["resnet"],
                  progress=False)
    train = targets.select("train")
    cobb = [cobb_angle(train.curves(i).curve("coronal_centre"), train.curves(i).levels_mm).angle_deg
            for i in range(len(train))]
    np.testing.assert_array_equal(seen["resnet"], severity_weights(np.array(cobb), SEVERITY_EDGES_DEG, 1.0))
    train_section(tmp_path / "run0", manifest, targets, _params(train_jobs=1, severity_sampling=0.0), names=["resnet"],
                  progress=False)
    assert seen["resnet"] is None
