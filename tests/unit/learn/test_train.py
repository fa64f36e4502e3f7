"""Training loop: determinism, resume after an interruption, checkpoints, DDP (gloo, 2 processes)."""

from __future__ import annotations

import logging

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from spinelib.errors import CheckpointError, InvalidArgumentError, ShapeError
from spinelib.learn.checkpoint import load_checkpoint
from spinelib.learn.config import ModelConfig
from spinelib.learn.loss import l1_loss
from spinelib.learn.networks import build_model
from spinelib.learn.train import BEST, LAST, LOG, TrainConfig, train_model

# the CNN baseline head has dropout: its randomness must be reproducible too
CFG = ModelConfig(name="resnet", backbone="resnet10t", in_chans=2, n_levels=3, head="cnn",
                  image_size=(32, 32), hidden=16)


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 32, 32, generator=g)
    w = torch.randn(2, CFG.output_size, generator=g)
    return TensorDataset(x, x.mean(dim=(2, 3)) @ w)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(CFG)


def _cfg(epochs=4, **kw):
    return TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, weight_decay=1e-4, seed=3, num_threads=1, **kw)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_trains_and_writes_outputs(tmp_path, caplog):
    out = tmp_path / "resnet"
    with caplog.at_level(logging.INFO, logger="spinelib.learn.train"):
        res = train_model(_model(), CFG, _data(), _data(16, 1), out, _cfg(), progress=False,
                          meta={"crop_pixel_mm": 3.3})
    # each epoch is logged under the output folder's name: networks trained side by side share one log
    assert [r.getMessage().split(" train ")[0] for r in caplog.records if " epoch " in r.getMessage()] == [
        f"resnet epoch {e}/4" for e in (1, 2, 3, 4)]
    model, config, extra = load_checkpoint(out / BEST)  # prediction reads this file
    assert config == CFG and extra["crop_pixel_mm"] == 3.3
    assert {p.name for p in out.iterdir()} >= {LAST, BEST, LOG}
    log = pd.read_csv(out / LOG)
    assert list(log["epoch"]) == [0, 1, 2, 3]
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert res.best_val_loss == pytest.approx(log["val_loss"].min(), rel=1e-5)
    assert not list(out.glob(".tmp-*"))


def test_same_seed_same_weights(tmp_path):
    a = train_model(_model(), CFG, _data(), _data(16, 1), tmp_path / "a", _cfg(), progress=False)
    b = train_model(_model(), CFG, _data(), _data(16, 1), tmp_path / "b", _cfg(), progress=False)
    for k, v in _weights(a.last_checkpoint).items():
        assert torch.equal(v, _weights(b.last_checkpoint)[k])


def test_resume_after_interruption_gives_same_weights(tmp_path):
    full = train_model(_model(), CFG, _data(), _data(16, 1), tmp_path / "full", _cfg(), progress=False)

    def crash(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path / "cut", _cfg(), callbacks=[crash], progress=False)
    assert len(pd.read_csv(tmp_path / "cut" / LOG)) == 2
    # a fresh process would rebuild the model from scratch: use different initial weights to
    # prove the resumed state comes from the checkpoint
    resumed = train_model(_model(seed=99), CFG, _data(), _data(16, 1), tmp_path / "cut", _cfg(), progress=False)
    for k, v in _weights(full.last_checkpoint).items():
        assert torch.equal(v, _weights(resumed.last_checkpoint)[k]), k
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3]


def test_resume_refuses_other_configuration(tmp_path):
    train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=1), progress=False)
    other = ModelConfig(**{**CFG.to_dict(), "hidden": 8})
    torch.manual_seed(0)
    with pytest.raises(CheckpointError, match="hidden"):
        train_model(build_model(other), other, _data(), _data(16, 1), tmp_path, _cfg(epochs=2), progress=False)
    with pytest.raises(CheckpointError, match="training settings"):
        other_lr = TrainConfig(epochs=2, batch_size=8, lr=5e-3, seed=3, num_threads=1)
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, other_lr, progress=False)


def test_corrupt_last_checkpoint(tmp_path):
    (tmp_path / LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt"):
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(), progress=False)


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(batch_size=0), dict(lr=-1.0), dict(lr=float("nan")),
                                dict(extent_weight=0.0), dict(extent_weight=-2.0), dict(extent_weight=float("inf"))])
def test_bad_config(kw):
    base = dict(epochs=1, batch_size=2, lr=1e-3)
    base.update(kw)
    with pytest.raises(InvalidArgumentError):
        TrainConfig(**base)


def test_empty_datasets(tmp_path):
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0, 3))
    with pytest.raises(InvalidArgumentError, match="training dataset is empty"):
        train_model(_model(), CFG, empty, _data(), tmp_path, _cfg(), progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    model = _model()
    train_model(model, CFG, _data(), _data(16, 1), out, _cfg(epochs=2), progress=False)
    torch.distributed.destroy_process_group()
    torch.save(model.state_dict(), f"{out}/rank{rank}.pt")


def test_ddp_two_cpu_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    log = pd.read_csv(tmp_path / LOG)
    assert list(log["epoch"]) == [0, 1]  # written once, by rank 0
    assert (tmp_path / BEST).exists()
    # DDP keeps the replicas' weights identical (batch-norm running statistics are each
    # rank's own until the next broadcast), and rank 0 saved exactly its state
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    saved = _weights(tmp_path / LAST)
    params = {n for n, _ in _model().named_parameters()}
    for k in r0:
        assert torch.equal(r0[k], saved[k]), k
        if k in params:
            assert torch.equal(r0[k], r1[k]), k


def test_a_model_gets_its_own_learning_rate_from_the_profile():
    from spinelib.profiles import get_profile
    from spinelib.learn.train import TrainConfig

    params = get_profile("smoke", {"lr": 1e-3, "lr_by_model": {"resnet_bot": 5e-4}})
    assert TrainConfig.from_profile(params, "resnet_bot").lr == 5e-4
    assert TrainConfig.from_profile(params, "resnet").lr == 1e-3 and TrainConfig.from_profile(params).lr == 1e-3
    for bad in ([5e-4], {"resnet_bot": -1.0}, {1: 1e-3}):
        with pytest.raises(InvalidArgumentError):
            TrainConfig.from_profile({**params, "lr_by_model": bad}, "resnet_bot")


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 5), k=st.integers(1, 6), w=st.floats(0.01, 100.0).filter(lambda v: v != 1.0), seed=st.integers(0, 2**16))
def test_weighted_l1_is_the_weighted_mean_of_the_absolute_errors(b, k, w, seed):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(b, 6 * k + 2, generator=g), torch.randn(b, 6 * k + 2, generator=g)
    weights = TrainConfig(epochs=1, batch_size=1, lr=1e-3, extent_weight=w).loss_weights(6 * k + 2)
    assert weights.tolist() == pytest.approx([1.0] * (6 * k) + [w, w], rel=1e-6)
    err = (pred - target).abs()
    expected = (err[:, :-2].sum() + w * err[:, -2:].sum()) / (b * (6 * k + 2 * w))
    assert float(l1_loss(pred, target, weights)) == pytest.approx(float(expected), rel=1e-5)
    assert float(l1_loss(pred, target, weights, reduction="sum")) == pytest.approx(float(expected) * b * (6 * k + 2 * w),
                                                                                   rel=1e-5)


def test_unit_extent_weight_is_the_plain_l1_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 20, generator=g), torch.randn(4, 20, generator=g)
    assert TrainConfig(epochs=1, batch_size=1, lr=1e-3).loss_weights(20) is None
    assert torch.equal(l1_loss(pred, target), nn.functional.l1_loss(pred, target))
    with pytest.raises(InvalidArgumentError, match="reduction"):
        l1_loss(pred, target, torch.ones(20), reduction="none")
    with pytest.raises(ShapeError, match="weights"):
        l1_loss(pred, target, torch.ones(19))
    with pytest.raises(ShapeError, match="pred and target"):
        l1_loss(pred, target[:, :-1])


def test_extent_weight_comes_from_the_profile_and_is_recorded(tmp_path):
    from spinelib.profiles import get_profile

    assert TrainConfig.from_profile(get_profile("smoke")).extent_weight == get_profile("smoke")["extent_weight"]
    assert TrainConfig.from_profile(get_profile("smoke", {"extent_weight": 8.0})).extent_weight == 8.0
    train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=1, extent_weight=8.0), progress=False)
    # the validation loss is the training loss's weighted mean; another weight is another experiment
    _, _, state = load_checkpoint(tmp_path / LAST)
    assert state["train_config"]["extent_weight"] == 8.0
    with pytest.raises(CheckpointError):
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=2), progress=False)



# -- drawing the rarer severity classes more often (severity_sampling)

def test_training_draws_by_the_sample_weights(tmp_path):
    """A sample of weight 0 is never drawn: here its target is NaN, which would poison the loss."""
    x, y = _data().tensors
    y = y.clone()
    y[5] = float("nan")
    weights = np.ones(len(y))
    weights[5] = 0.0
    res = train_model(_model(), CFG, TensorDataset(x, y), _data(16, 1), tmp_path / "a", _cfg(epochs=2), progress=False,
                      sample_weights=weights)
    assert np.all(np.isfinite(res.history["train_loss"]))
    again = train_model(_model(), CFG, TensorDataset(x, y), _data(16, 1), tmp_path / "b", _cfg(epochs=2),
                        progress=False, sample_weights=weights)
    assert all(torch.equal(a, b) for a, b in zip(_weights(res.best_checkpoint).values(),
                                                  _weights(again.best_checkpoint).values()))


@pytest.mark.parametrize("bad", [np.ones(47), np.ones((48, 1)), -np.ones(48), np.zeros(48), np.full(48, np.nan)])
def test_training_refuses_bad_sample_weights(tmp_path, bad):
    with pytest.raises(InvalidArgumentError, match="sample_weights"):
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=1), progress=False, sample_weights=bad)


def test_severity_sampling_comes_from_the_profile_and_is_recorded(tmp_path):
    from spinelib.profiles import get_profile

    assert TrainConfig.from_profile(get_profile("smoke", {"severity_sampling": 0.5})).severity_sampling == 0.5
    assert TrainConfig.from_profile(get_profile("paper")).severity_sampling == 0.0
    for bad in (-0.5, float("nan")):
        with pytest.raises(InvalidArgumentError, match="severity_sampling"):
            TrainConfig(epochs=1, batch_size=1, lr=1e-3, severity_sampling=bad)
    train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=1, severity_sampling=0.5), progress=False,
                sample_weights=np.ones(48))
    _, _, state = load_checkpoint(tmp_path / LAST)
    assert state["train_config"]["severity_sampling"] == 0.5
    with pytest.raises(CheckpointError):  # another sampling is another experiment
        train_model(_model(), CFG, _data(), _data(16, 1), tmp_path, _cfg(epochs=2), progress=False)
