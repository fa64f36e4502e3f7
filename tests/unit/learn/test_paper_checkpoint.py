"""The paper's released checkpoint converted into our resnet_bot (spinelib.learn.paper_checkpoint).

The paper's network is built here exactly as its model file builds it -- torchvision
resnet50 children without avgpool/fc, lucidrains BottleStack, pool, flatten, Linear(2048,
1254) -- from the reference packages (torchvision, bottleneck-transformer-pytorch), with
random weights (nothing downloads), so the conversion is checked against the real thing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spinelib import cli
from spinelib.learn.crop import find_spine_crop, resample_image
from spinelib.errors import CheckpointError, ShapeError
from spinelib.io import read_dxa
from spinelib.learn.checkpoint import CorruptCheckpointError, MissingCheckpointError, load_checkpoint
from spinelib.learn.paper_checkpoint import (
    PAPER_CROP_PIXEL_MM,
    PAPER_EXTENT_CROP,
    PAPER_INPUT_RECIPE,
    PAPER_N_LEVELS,
    convert_paper_checkpoint,
    convert_paper_state_dict,
    paper_bone_normalize,
    paper_input_stack,
    paper_output_to_ours,
)
from spinelib.learn.predict import Predictor
from spinelib.bench.predict import write_synthetic_dxa
from spinelib.profiles import get_profile
from spinelib.spine import CURVE_NAMES

bst = pytest.importorskip("bottleneck_transformer_pytorch")
torchvision = pytest.importorskip("torchvision")


class PaperModel(nn.Module):
    """The paper's RegressionModel_Transformer (same submodule names, so the same state-dict keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(*list(torchvision.models.resnet50(weights=None).children())[:-2])
        self.layer = bst.BottleStack(dim=2048, fmap_size=7, dim_out=2048, proj_factor=4, downsample=False,
                                     heads=4, dim_head=128, rel_pos_emb=True, activation=nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(2048, 6 * PAPER_N_LEVELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.pool(self.layer(self.model(x)))))


def random_paper_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights for every tensor (BatchNorm statistics too, variances positive),
    so that no block is an identity (BottleStack zero-initialises its last BN gamma)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in PaperModel().state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    d = tmp_path_factory.mktemp("paper")
    state = random_paper_state(0)
    model = PaperModel()
    model.load_state_dict(state)
    path = d / "epoch-996-loss_valid-points-best_loss-0.0168.pt"
    torch.save(model.state_dict(), path)  # as the paper's train.py saves it
    return {"dir": d, "state": state, "model": model.eval(), "path": path}


# ----------------------------------------------------------------------------- same outputs


def test_converted_model_gives_the_papers_outputs(paper, tmp_path):
    ours_path = convert_paper_checkpoint(paper["path"], tmp_path / "ours.pt")
    model, config, extra = load_checkpoint(ours_path)
    assert config.in_chans == 3 and config.n_levels == PAPER_N_LEVELS and config.image_size == (224, 224)
    assert extra["input_recipe"] == PAPER_INPUT_RECIPE and extra["crop_pixel_mm"] == PAPER_CROP_PIXEL_MM
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = paper["model"](x)
        ours = model.eval()(x)
    assert theirs.abs().max() > 0.1  # a non-trivial output
    torch.testing.assert_close(ours, paper_output_to_ours(theirs), atol=1e-5, rtol=0)
    # the layout in words: our curve c at level k is the paper's output 6 k + c
    k, c = 100, 4
    torch.testing.assert_close(ours[:, c * PAPER_N_LEVELS + k], theirs[:, 6 * k + c], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[:, -2:], torch.tensor([PAPER_EXTENT_CROP] * 2), atol=1e-7, rtol=0)


def test_output_layout_known_answer(paper, tmp_path):
    # a head with zero weights outputs its bias: level-major values with known meaning
    state = dict(paper["state"])
    k = np.arange(PAPER_N_LEVELS)
    cols = np.array([0.45, 0.50, 0.55, 0.10, 0.15, 0.20])
    table = cols[None, :] + 2e-4 * k[:, None]  # (209, 6): the paper's targets' shape
    state["linear.weight"] = torch.zeros(6 * PAPER_N_LEVELS, 2048)
    state["linear.bias"] = torch.tensor(table.reshape(-1), dtype=torch.float32)
    src = tmp_path / "paper.pt"
    torch.save(state, src)
    dxa_path = write_synthetic_dxa(tmp_path / "dxa.npz", get_profile("smoke"), index=0, lateral=False)
    dxa = read_dxa(dxa_path)
    pred = Predictor.from_checkpoint(src)  # the bare state dict is recognised
    assert pred.input_recipe == PAPER_INPUT_RECIPE and pred.pixel_mm == PAPER_CROP_PIXEL_MM
    out = pred.predict(dxa, reconstruct=False)
    crop = find_spine_crop(resample_image(dxa.bone, dxa.pixel_spacing_mm, PAPER_CROP_PIXEL_MM),
                           pixel_mm=PAPER_CROP_PIXEL_MM, image_size=(224, 224))
    assert out.crop == crop
    px = PAPER_CROP_PIXEL_MM
    for j, name in enumerate(CURVE_NAMES):
        expected = (table[:, j] * 224 + crop.col0) * px if j < 3 else table[:, j] * 224 * px
        np.testing.assert_allclose(out.curves.curve(name), expected, atol=1e-3, err_msg=name)
    # 209 one-pixel levels centred in the crop: level k at crop row 8 + k
    np.testing.assert_allclose(out.curves.levels_mm, (crop.row0 + 8 + k) * px, atol=1e-3)


def test_cli_converts_and_predicts(paper, tmp_path, capsys):
    ours = tmp_path / "ours.pt"
    assert cli.main(["convert-paper-checkpoint", str(paper["path"]), "--out", str(ours)]) == 0
    assert str(ours) in capsys.readouterr().out
    p = Predictor.from_checkpoint(ours)
    assert p.input_recipe == PAPER_INPUT_RECIPE and p.config.in_chans == 3


# ----------------------------------------------------------------------------- input recipe


def test_input_stack_is_8bit_grey_in_three_channels():
    x = np.array([[0.0, 0.5, 1.0, 1.7], [-0.2, 0.999, 0.00392, 0.00393]])
    s = paper_input_stack(x)
    assert s.shape == (3, 2, 4) and s.dtype == np.float32
    np.testing.assert_array_equal(s[0], s[1])
    np.testing.assert_array_equal(s[0], s[2])
    # PIL truncates 255 x to an integer (float -> 8-bit), ToTensor divides by 255
    np.testing.assert_allclose(s[0] * 255, [[0, 127, 255, 255], [0, 254, 0, 1]], atol=1e-4)


def test_bone_normalisation_known_answers():
    rng = np.random.default_rng(0)
    bone = np.zeros((60, 40))
    bone[10:50, 10:30] = rng.uniform(0.2, 1.5, (40, 20))
    out = paper_bone_normalize(bone)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == pytest.approx(1.0)
    body = bone[bone > 0]
    floor = np.percentile(body, 9.5)  # the background (the minimum) does not count
    # everything at or below the percentile (background included) maps to 0
    assert np.all(out[bone <= floor] == 0) and np.all(out[bone > floor] > 0)
    # monotonic, and scale-free (calibrated or raw counts give the same input)
    order = np.argsort(bone.ravel())
    assert np.all(np.diff(out.ravel()[order]) >= -1e-7)
    np.testing.assert_allclose(paper_bone_normalize(bone * 1000.0), out, atol=1e-6)
    with pytest.raises(ShapeError):
        paper_bone_normalize(np.zeros((20, 5)))


# ----------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(MissingCheckpointError):
        convert_paper_checkpoint(tmp_path / "none.pt", tmp_path / "out.pt")


def test_unknown_key(paper, tmp_path):
    state = {**paper["state"], "head.fc.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="head.fc.weight"):
        convert_paper_state_dict(state)


def test_missing_key(paper):
    state = dict(paper["state"])
    del state["layer.net.1.net.3.pos_emb.rel_width"]
    with pytest.raises(CheckpointError, match="missing"):
        convert_paper_state_dict(state)
    del state["linear.bias"]
    with pytest.raises(CheckpointError, match="linear.bias"):
        convert_paper_state_dict(state)


def test_wrong_shapes(paper):
    state = {**paper["state"], "linear.weight": torch.zeros(1000, 2048), "linear.bias": torch.zeros(1000)}
    with pytest.raises(CheckpointError, match="linear.weight has shape"):
        convert_paper_state_dict(state)
    state = {**paper["state"], "layer.net.0.net.3.pos_emb.rel_height": torch.zeros(27, 128)}  # fmap 14, not 7
    with pytest.raises(CheckpointError, match="rel_height has shape"):
        convert_paper_state_dict(state)


def test_not_a_state_dict(tmp_path):
    for obj in ([torch.zeros(3)], {"epoch": 996, "weights": torch.zeros(3)}):
        bad = tmp_path / "bad.pt"
        torch.save(obj, bad)
        with pytest.raises(CorruptCheckpointError, match="not the paper's"):
            convert_paper_checkpoint(bad, tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        convert_paper_state_dict([1, 2, 3])
    with pytest.raises(CheckpointError, match="not a tensor"):
        convert_paper_state_dict({"model.0.weight": np.zeros(3)})
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(CorruptCheckpointError):
        convert_paper_checkpoint(bad, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_pickle_needing_code_is_refused(tmp_path):
    # a whole pickled module (not a state dict) needs its classes' code to load: refused
    bad = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), bad)
    with pytest.raises(CorruptCheckpointError, match="weights_only"):
        convert_paper_checkpoint(bad, tmp_path / "out.pt")
    with pytest.raises(CorruptCheckpointError):
        Predictor.from_checkpoint(bad)
    assert cli.main(["convert-paper-checkpoint", str(bad), "--out", str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()


def test_paper_output_to_ours_bad_shape():
    with pytest.raises(ShapeError):
        paper_output_to_ours(np.zeros((2, 1256)))
