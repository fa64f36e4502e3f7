from __future__ import annotations

import json
import os

import numpy as np
import pytest
import timm
import torch

from spinelib.errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    UnreadableFileError,
)
from spinelib.learn.checkpoint import CorruptCheckpointError, MissingCheckpointError, load_checkpoint, save_checkpoint
from spinelib.learn.config import (
    MODEL_NAMES,
    NETWORK_NAMES,
    TRAINED_MODELS,
    ModelConfig,
    config_from_profile,
    join_targets,
    paper_config,
    split_output,
)
from spinelib.learn.networks import build_model, count_parameters
from spinelib.profiles import PROFILE_NAMES, get_profile

K = 5
TINY = dict(backbone="resnet10t", image_size=(64, 32), n_levels=K, bot_blocks=1, bot_heads=2, bot_dim_head=16)


def tiny(name: str, **kw) -> ModelConfig:
    return config_from_profile(get_profile("smoke"), name, **{**TINY, **kw})


def batch(cfg: ModelConfig, b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, cfg.in_chans, *cfg.image_size, generator=g)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Nothing in this module may reach the network for weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("attempted to download weights")

    import timm.models._builder as builder

    for name in ("download_cached_file", "load_state_dict_from_hf", "load_state_dict_from_url"):
        if hasattr(builder, name):
            monkeypatch.setattr(builder, name, refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_forward_shape(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    model = build_model(cfg)
    if name == "mean_shape":
        model.fit(np.random.default_rng(0).random((4, cfg.output_size)))
    y = model(batch(cfg, 3))
    assert y.shape == (3, 6 * K + 2)
    assert torch.isfinite(y).all()
    curves, extent = split_output(y, K)
    assert curves.shape == (3, 6, K) and extent.shape == (3, 2)


def test_dict_input_matches_tensor_input():
    torch.manual_seed(0)
    for name in ("resnet_bot", "biplanar"):
        cfg = tiny(name)
        model = build_model(cfg).eval()
        x = batch(cfg)
        views = {"ap": x[:, :2], "lateral": x[:, 2:]} if cfg.views == 2 else {"ap": x}
        with torch.no_grad():
            torch.testing.assert_close(model(views), model(x))


def test_biplanar_uses_the_lateral_view():
    torch.manual_seed(0)
    cfg = tiny("biplanar")
    model = build_model(cfg).eval()
    for blk in model.transformer.blocks:  # let the attention path contribute
        torch.nn.init.ones_(blk.bn3.weight)
    x = batch(cfg)
    x2 = x.clone()
    x2[:, 2:] = torch.randn_like(x2[:, 2:])
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2))


def test_input_shape_errors():
    cfg = tiny("resnet_bot")
    model = build_model(cfg)
    with pytest.raises(ShapeError, match="64x32"):
        model(torch.zeros(1, 2, 96, 32))
    with pytest.raises(ShapeError, match="B, 2"):
        model(torch.zeros(1, 3, 64, 32))
    bip = build_model(tiny("biplanar"))
    with pytest.raises(InvalidArgumentError, match="lateral"):
        bip({"ap": torch.zeros(1, 2, 64, 32)})


# ----------------------------------------------------------------------------- mean shape


def test_mean_shape_returns_fitted_mean():
    cfg = tiny("mean_shape")
    model = build_model(cfg)
    assert count_parameters(model)["total"] == 0 and "mean_shape" not in TRAINED_MODELS
    with pytest.raises(InvalidArgumentError, match="fit"):
        model(batch(cfg))
    targets = np.random.default_rng(1).normal(size=(7, cfg.output_size)).astype(np.float32)
    model.fit(targets)
    y = model(batch(cfg, 4))
    assert y.shape == (4, cfg.output_size)
    np.testing.assert_allclose(y.numpy(), np.broadcast_to(targets.mean(axis=0), y.shape), rtol=1e-6, atol=1e-6)
    y2 = model({"ap": torch.zeros(2, 2, 8, 8)})  # any input: only the batch size matters
    torch.testing.assert_close(y2, y[:2])


def test_mean_shape_fit_validates():
    model = build_model(tiny("mean_shape"))
    with pytest.raises(ShapeError):
        model.fit(np.zeros((3, 6 * K)))  # no extent values
    bad = np.zeros((3, 6 * K + 2))
    bad[1, 3] = np.nan
    with pytest.raises(NonFiniteError):
        model.fit(bad)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["resnet", "resnet_bot", "biplanar"])
def test_gradients_flow(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    model = build_model(cfg).train()
    # BoTNet zero-initialises each block's last BN gamma (identity blocks at start); set it to
    # one so that the gradient reaches every attention weight.
    for m in model.transformer.modules():
        if hasattr(m, "bn3"):
            torch.nn.init.ones_(m.bn3.weight)
    y = model(batch(cfg))
    (y - 0.5).abs().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), pname
    stem = next(p for n, p in model.named_parameters() if "conv1" in n)
    assert stem.grad.abs().sum() > 0
    head = model.final_linear()
    assert head.weight.grad.abs().sum() > 0
    if cfg.head == "bot":
        attn = [p for n, p in model.named_parameters() if ".attn." in n]
        assert attn and all(p.grad.abs().sum() > 0 for p in attn)


def test_init_output_sets_mean_bias():
    cfg = tiny("resnet_bot")
    model = build_model(cfg)
    mean = np.linspace(0.0, 1.0, cfg.output_size)
    model.init_output(mean)
    np.testing.assert_allclose(model.final_linear().bias.detach().numpy(), mean, rtol=1e-6)


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(backbone="resnet_nope"), "unknown backbone"),
        (dict(backbone="vit_base_patch16_224"), "unknown backbone"),
        (dict(n_levels=2), "n_levels"),
        (dict(n_levels=0), "n_levels"),
        (dict(image_size=(65, 32)), "multiple of 32"),
        (dict(image_size=(64, 40)), "multiple of 32"),
        (dict(image_size=(64,)), "image_size"),
        (dict(bot_blocks=0), "bot_blocks"),
        (dict(bot_heads=0), "bot_heads"),
        (dict(dropout=1.5), "dropout"),
        (dict(head="transformer"), "head"),
        (dict(pool="max"), "pool"),
        (dict(spatial_chans=0), "spatial_chans"),
        (dict(feature_stride=8), "feature_stride"),
        (dict(feature_stride=True), "feature_stride"),
    ],
)
def test_bad_configs_raise(kw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        tiny("resnet_bot", **kw)


def test_bad_model_requests_raise():
    with pytest.raises(InvalidArgumentError, match="unknown model"):
        config_from_profile(get_profile("smoke"), "unet")
    with pytest.raises(InvalidArgumentError, match="backbone"):
        config_from_profile({"n_levels": 8}, "resnet")
    with pytest.raises(InvalidArgumentError, match="bot"):
        tiny("resnet", views=2, in_chans=4)  # biplanar needs the bot head
    with pytest.raises(InvalidArgumentError, match="in_chans"):
        tiny("biplanar", in_chans=3)
    with pytest.raises(InvalidArgumentError):
        build_model({"name": "resnet"})


@pytest.mark.parametrize("name", ["resnet", "resnet_bot", "biplanar"])
@pytest.mark.parametrize("stride", [16, 32])
@pytest.mark.parametrize("pool", ["avg", "spatial"])
def test_feature_stride_and_pool_shape_the_head(name, stride, pool):
    """feat_size is the map the head really reads; stride 16 drops the trunk's last stage;
    the spatial pool's Linear has one block of weights per feature-map position."""
    cfg = tiny(name, feature_stride=stride, pool=pool, spatial_chans=8)
    model = build_model(cfg)
    assert cfg.feat_size == (64 // stride, 32 // stride)
    trunk = model.trunk if name != "biplanar" else model.trunk["ap"]
    feat = trunk.forward_features(torch.zeros(1, cfg.chans_per_view, *cfg.image_size))
    assert tuple(feat.shape[-2:]) == cfg.feat_size and feat.shape[1] == trunk.num_features
    assert isinstance(trunk.layer4, torch.nn.Identity) == (stride == 16)
    rows, cols = cfg.feat_size
    positions = rows * cols * (2 if name == "biplanar" else 1)
    first = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][0]
    assert first.in_features == (8 * positions if pool == "spatial" else trunk.num_features)
    assert model(batch(cfg, 2)).shape == (2, 6 * K + 2)


def test_profiles_pick_each_models_stride_and_the_paper_keeps_its_design():
    default = get_profile("default")
    assert config_from_profile(default, "resnet_bot").feature_stride == 16
    assert config_from_profile(default, "resnet").feature_stride == 32  # a model the profile does not name
    assert config_from_profile(default, "resnet").pool == "spatial"
    paper = config_from_profile(get_profile("paper"), "resnet_bot")
    assert (paper.feature_stride, paper.pool) == (32, "avg")
    with pytest.raises(InvalidArgumentError, match="feature_stride_by_model"):
        config_from_profile(get_profile("smoke", {"feature_stride_by_model": [16]}), "resnet")
    with pytest.raises(InvalidArgumentError, match="feature_stride"):
        config_from_profile(get_profile("smoke", {"feature_stride_by_model": {"resnet": 64}}), "resnet")


def test_configuration_written_before_pool_and_stride_existed_reads_as_the_paper_design():
    d = tiny("resnet_bot").to_dict()
    for key in ("feature_stride", "pool", "spatial_chans"):
        d.pop(key)
    cfg = ModelConfig.from_dict(d)
    assert (cfg.feature_stride, cfg.pool) == (32, "avg")


def test_model_registry_lists_the_study_in_table_order():
    assert MODEL_NAMES == ("mean_shape", "visible_summaries", "resnet", "resnet_bot", "biplanar")
    assert set(NETWORK_NAMES) == set(MODEL_NAMES) - {"visible_summaries"}
    with pytest.raises(InvalidArgumentError, match="not a network"):
        config_from_profile(get_profile("smoke"), "visible_summaries")


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_profiles_configure_every_model(profile):
    params = get_profile(profile)
    if any(s % 32 for s in params["image_size"]):
        # A crop that is not a multiple of the trunk's reduction is refused, with a suggestion.
        with pytest.raises(InvalidArgumentError, match="multiple of 32"):
            config_from_profile(params, "resnet_bot")
        return
    for name in NETWORK_NAMES:
        cfg = config_from_profile(params, name)
        assert cfg.name == name and cfg.n_levels == params["n_levels"]
        assert cfg.image_size == tuple(params["image_size"])
        d = json.loads(json.dumps(cfg.to_dict()))
        assert ModelConfig.from_dict(d) == cfg


def test_split_join_roundtrip():
    curves = np.random.default_rng(0).random((3, 6, K))
    extent = np.random.default_rng(1).random((3, 2))
    flat = join_targets(curves, extent)
    assert flat.shape == (3, 6 * K + 2)
    c2, e2 = split_output(flat, K)
    np.testing.assert_array_equal(c2, curves)
    np.testing.assert_array_equal(e2, extent)
    t = join_targets(torch.as_tensor(curves), torch.as_tensor(extent))
    np.testing.assert_array_equal(t.numpy(), flat)
    with pytest.raises(ShapeError):
        split_output(flat, K + 1)


# ----------------------------------------------------------------------------- pretrained weights


def test_pretrained_from_local_file_only(tmp_path):
    src = timm.create_model("resnet10t", pretrained=False)  # 3 channels, 1000 classes
    path = tmp_path / "resnet10t.pth"
    torch.save(src.state_dict(), path)
    model = build_model(tiny("resnet_bot", pretrained_path=str(path)))
    torch.testing.assert_close(model.trunk.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    assert model.trunk.conv1[0].weight.shape[1] == 2  # stem adapted to 2 input channels

    with pytest.raises(MissingFileError, match="does not exist"):
        build_model(tiny("resnet_bot", pretrained_path=str(tmp_path / "absent.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not weights")
    with pytest.raises(UnreadableFileError):
        build_model(tiny("resnet", pretrained_path=str(junk)))


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny("resnet_bot")
    model = build_model(cfg)
    model.train()
    model(batch(cfg, 4))  # move BN running statistics away from their defaults
    model.eval()
    extra = {"epoch": 7, "val_loss": np.float32(0.25), "history": [1.0, 0.5], "mean": np.arange(3.0),
             "optimizer": torch.optim.Adam(model.parameters()).state_dict()}
    path = save_checkpoint(tmp_path / "ckpt" / "best.pt", model, cfg, extra)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    raw = torch.load(path, weights_only=True)  # plain content
    assert raw["config"]["n_levels"] == K

    loaded, cfg2, extra2 = load_checkpoint(path, expect=cfg)
    assert cfg2 == cfg and not loaded.training
    x = batch(cfg, 2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert extra2["epoch"] == 7 and extra2["history"] == [1.0, 0.5]
    assert extra2["val_loss"] == pytest.approx(0.25)
    torch.testing.assert_close(extra2["mean"], torch.arange(3.0, dtype=torch.float64))
    # a dict configuration works as `expect` too; pretrained_path is not compared
    load_checkpoint(path, expect={**cfg.to_dict(), "pretrained_path": "/elsewhere/w.pth"})


def test_checkpoint_mean_shape_roundtrip(tmp_path):
    cfg = tiny("mean_shape")
    model = build_model(cfg).fit(np.full((2, cfg.output_size), 0.3))
    save_checkpoint(tmp_path / "m.pt", model, cfg)
    loaded, _, extra = load_checkpoint(tmp_path / "m.pt")
    assert extra == {}
    torch.testing.assert_close(loaded(batch(cfg)), torch.full((2, cfg.output_size), 0.3))


def test_checkpoint_refuses_other_configuration(tmp_path):
    cfg = tiny("resnet_bot")
    path = save_checkpoint(tmp_path / "c.pt", build_model(cfg), cfg)
    other_k = tiny("resnet_bot", n_levels=K + 1)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expect=other_k)
    msg = str(info.value)
    assert cfg.describe() in msg and other_k.describe() in msg and "n_levels" in msg
    other_model = tiny("resnet")
    with pytest.raises(CheckpointError, match="resnet_bot.*resnet\\[head=cnn"):
        load_checkpoint(path, expect=other_model)
    with pytest.raises(InvalidArgumentError, match="built as"):
        save_checkpoint(tmp_path / "d.pt", build_model(cfg), other_k)


def test_checkpoint_missing_and_corrupt(tmp_path):
    with pytest.raises(MissingCheckpointError) as info:
        load_checkpoint(tmp_path / "absent.pt")
    assert isinstance(info.value, MissingFileError) and isinstance(info.value, CheckpointError)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(garbage)
    assert isinstance(info.value, CheckpointError) and "garbage.pt" in str(info.value)

    cfg = tiny("resnet")
    good = save_checkpoint(tmp_path / "good.pt", build_model(cfg), cfg)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a spinelib model checkpoint"):
        load_checkpoint(foreign)

    with pytest.raises(InvalidArgumentError, match="cannot store"):
        save_checkpoint(tmp_path / "bad.pt", build_model(cfg), cfg, {"obj": object()})


# ----------------------------------------------------------------------------- the paper's model

# Published parameter counts (the paper's Figure 4): trunk, transformer blocks, head; CNN baseline.
PAPER_COUNTS = {"trunk": 23.51e6, "transformer": 8.68e6, "head": 2.57e6, "total": 34.76e6}
PAPER_CNN_TOTAL = 24.35e6


def test_paper_model_size_and_step():
    torch.manual_seed(0)
    cfg = paper_config("resnet_bot")
    assert (cfg.backbone, cfg.image_size, cfg.in_chans, cfg.n_levels) == ("resnet50", (224, 224), 2, 209)
    assert (cfg.bot_blocks, cfg.bot_heads, cfg.bot_dim_head, cfg.feat_size) == (3, 4, 128, (7, 7))
    model = build_model(cfg).train()
    counts = count_parameters(model)
    for part, published in PAPER_COUNTS.items():
        assert counts[part] == pytest.approx(published, rel=0.05), (part, counts[part])
    assert counts["total"] == counts["trunk"] + counts["transformer"] + counts["head"]
    y = model(torch.randn(2, 2, 224, 224))
    assert y.shape == (2, 6 * 209 + 2)
    y.abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters())

    cnn = build_model(paper_config("resnet"))
    assert count_parameters(cnn)["total"] == pytest.approx(PAPER_CNN_TOTAL, rel=0.05)
