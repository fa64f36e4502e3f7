"""The prediction and training benchmark entries (spinelib.bench.predict, spinelib.bench.train)."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.bench.predict import synthetic_examples
from spinelib.errors import InvalidArgumentError
from spinelib.learn.config import config_from_profile
from spinelib.learn.networks import build_model
from spinelib.profiles import get_profile

PARAMS = get_profile("smoke")


def test_bench_entries_are_registered():
    from spinelib.bench.harness import ENTRIES, _load

    for name in ("predict_warm_default", "predict_warm_paper", "predict_cold", "train_throughput"):
        assert callable(_load(name)), ENTRIES[name]


def test_warm_workload_times_real_predictions(tmp_path):
    from spinelib.bench.predict import N_WARM_SCANS, _warm_workload

    wl = _warm_workload(tmp_path / "w", "smoke")
    assert wl.run() == N_WARM_SCANS
    assert 0 < wl.extra["scan_ms"]["min"] <= wl.extra["scan_ms"]["median"]
    assert wl.extra["forward_ms"]["median"] > 0 and wl.extra["forward_ms_1thread"]["median"] > 0
    wl.teardown()
    assert not (tmp_path / "w").exists()


def test_train_throughput_sets_each_model_against_its_bare_step(tmp_path):
    from spinelib.bench.train import bare_step_images_per_second, train_throughput_workload

    wl = train_throughput_workload(tmp_path / "t", "smoke", n_images=8, models=("resnet", "biplanar"))
    assert wl.run() == 16
    for name in ("resnet", "biplanar"):
        rec = wl.extra[name]
        assert rec["bare_images_per_second"][0] > 0 and rec["train_loop_images_per_second"][0] > 0
        assert rec["ratio"][0] == pytest.approx(rec["train_loop_images_per_second"][0] / rec["bare_images_per_second"][0])
    assert "in_chans=4" in wl.extra["biplanar"]["model"]  # the lateral view too
    wl.teardown()
    assert not (tmp_path / "t").exists()
    with pytest.raises(InvalidArgumentError, match="steps"):
        bare_step_images_per_second(build_model(config_from_profile(PARAMS, "resnet")), (None, None), steps=0)


def test_synthetic_examples_bad_count():
    with pytest.raises(InvalidArgumentError, match="n must be"):
        synthetic_examples(0, PARAMS)


def test_train_throughput_draws_as_the_training_section(tmp_path, monkeypatch):
    # the loop it times is the book's: severity-weighted draws when the profile asks for them
    import spinelib.learn.train as train
    from spinelib.bench.train import train_throughput_workload
    from spinelib.learn.train import TrainConfig
    from spinelib.study.experiment import draw_weights

    seen = []
    real = train.train_model

    def spy(*args, **kwargs):
        seen.append(kwargs.get("sample_weights"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_model", spy)
    assert PARAMS["severity_sampling"] > 0
    wl = train_throughput_workload(tmp_path / "t", "smoke", n_images=8, models=("resnet",))
    wl.run()
    _, curves = synthetic_examples(8, PARAMS)
    want = draw_weights(curves, TrainConfig.from_profile(PARAMS))
    assert len(seen) == 1 and seen[0] is not None
    np.testing.assert_allclose(seen[0], want)
    wl.teardown()
