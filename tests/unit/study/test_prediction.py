"""Tests of spinelib.study.prediction: every trained model run on a cohort, and the predictions file."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.bench.predict import random_checkpoint
from spinelib.errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from spinelib.io import read_dxa, write_arrays, write_dxa
from spinelib.profiles import get_profile
from spinelib.study.experiment import checkpoint_path
from spinelib.study.prediction import Predictions, predict_cohort, read_predictions, trained_models, write_predictions
from spinelib_tests_disk_cohort import disk_cohort


def _predictions(n=3, k=4, names=("resnet_bot", "mean_shape")):
    """Valid curves: left <= centre <= right and posterior <= centre <= anterior, top above bottom."""
    rng = np.random.default_rng(0)

    def values():
        v = rng.normal(size=(n, 6, k))
        return np.concatenate([np.sort(v[:, :3], axis=1), np.sort(v[:, 3:], axis=1)], axis=1)

    return Predictions(np.array([f"S{i:05d}" for i in range(n)]), {m: values() for m in names},
                       {m: np.sort(rng.normal(size=(n, 2)), axis=1) for m in names})


def test_predictions_file_round_trip(tmp_path):
    pred = _predictions()
    path = write_predictions(tmp_path / "predictions_test.npz", pred)
    back = read_predictions(path)
    assert list(back.subject_id) == list(pred.subject_id) and back.models == pred.models  # in the written order
    for m in pred.models:
        np.testing.assert_array_equal(back.values[m], pred.values[m])
        np.testing.assert_array_equal(back.extent_mm[m], pred.extent_mm[m])
    assert back.curves("resnet_bot", 1).extent_mm.tolist() == pred.extent_mm["resnet_bot"][1].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["predictions_test.npz"]  # written, then renamed


def test_predictions_file_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="nothing.npz"):
        read_predictions(tmp_path / "nothing.npz")
    write_arrays(tmp_path / "other.npz", {"subject_id": np.array(["S0"]), "resnet__values": np.zeros((1, 6, 4))})
    with pytest.raises(UnreadableFileError, match="other.npz.*resnet__extent_mm"):
        read_predictions(tmp_path / "other.npz")


def test_trained_models_lists_the_checkpoints_in_table_order(tmp_path):
    params = get_profile("smoke", {"n_levels": 8})
    assert trained_models(tmp_path) == []
    for name in ("resnet", "mean_shape"):
        random_checkpoint(checkpoint_path(tmp_path, name), params, name)
    assert trained_models(tmp_path) == ["mean_shape", "resnet"]
    manifest, targets = disk_cohort(tmp_path / "cohort", 12, 8)
    with pytest.raises(InvalidArgumentError, match="unknown models"):
        predict_cohort(tmp_path, manifest, list(targets.select("test").subject_id), names=("nope",), progress=False)
    with pytest.raises(InvalidArgumentError, match="no checkpoint"):
        predict_cohort(tmp_path / "empty", manifest, list(targets.select("test").subject_id), progress=False)


def test_predict_cohort_reports_a_subject_a_model_cannot_read(tmp_path):
    """A scan far off the model's intensity scale is listed in ``failed`` and left out for
    every model, so that all models are compared on the same subjects."""
    params = get_profile("smoke", {"n_levels": 8})
    manifest, targets = disk_cohort(tmp_path / "cohort", 12, 8)
    run = tmp_path / "run"
    for name in ("mean_shape", "resnet"):
        random_checkpoint(checkpoint_path(run, name), params, name)
    ids = list(targets.select("test").subject_id)
    d = read_dxa(manifest.set_index("subject_id").loc[ids[1], "dxa_path"])
    manifest.loc[manifest["subject_id"] == ids[1], "dxa_path"] = str(
        write_dxa(tmp_path / "bright.npz", d.bone * 1e4, d.tissue * 1e4, d.pixel_spacing_mm))
    pred = predict_cohort(run, manifest, ids, progress=False)
    assert pred.models == ["mean_shape", "resnet"]
    assert list(pred.subject_id) == [ids[0], *ids[2:]]
    assert pred.values["resnet"].shape == (len(ids) - 1, 6, 8)
    assert list(pred.failed["subject_id"]) == [ids[1]] and list(pred.failed["model"]) == ["resnet"]
    assert pred.failed["reason"].iloc[0].startswith(f"{ids[1]}: ") and "outside the crop" in pred.failed["reason"].iloc[0]
