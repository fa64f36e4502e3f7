"""The paper's released checkpoint, converted into our ``resnet_bot`` with the paper's input recipe.

The paper's code (Bourigault et al., MICCAI 2024, public repository ``DXA-to-3D``,
``model.py``) defines ``RegressionModel_Transformer``: torchvision ``resnet50`` without its
average pool and classifier as an ``nn.Sequential`` (``model.0`` ... ``model.7``), a
lucidrains ``bottleneck_transformer_pytorch.BottleStack(dim=2048, fmap_size=7,
dim_out=2048, proj_factor=4, downsample=False, heads=4, dim_head=128, rel_pos_emb=True,
activation=nn.ReLU())`` (``layer.net.<block>.net.<i>``), ``AdaptiveAvgPool2d(1)``,
``Flatten`` and ``linear = nn.Linear(2048, 1254)``. Its released file is a bare
``state_dict`` (``torch.save(model.state_dict(), ...)``).

Our ``resnet_bot`` (:mod:`spinelib.learn.networks`) holds the same network: a timm ``resnet50``
has torchvision's layout and arithmetic (stride on the 3 x 3 convolution, same
BatchNorm), and :class:`spinelib.learn.networks.BottleneckTransformerBlock` computes what a
lucidrains ``BottleBlock`` without downsampling computes, with relative logits added
before the ``dim_head ** -0.5`` scaling (``scale_pos_embed=True``). Conversion is
therefore a renaming of the weights (:data:`_TRUNK_KEYS`, :data:`_BLOCK_KEYS`) plus
a reordering of the output rows, and the converted model gives the same numbers as the
paper's (checked to 1e-5 by ``tests/unit/learn/test_paper_checkpoint.py``).

Output layout
-------------
Known (the paper's ``inference.py`` and ``utils.py``): the 1254 outputs are a
``(209, 6)`` array flattened level by level -- output ``6 k + j`` is curve ``j`` at level
``k`` ("level-major"; targets were ``(209, 6)`` arrays flattened with
``view(B, -1)``) --, columns 0-2 the coronal left, middle and right curves and columns
3-5 the sagittal ones, each a crop pixel coordinate divided by the crop size (224):
the inference script multiplies them by 224 and draws them over the 224 x 224 input
crop. Ours is curve-major (``values.ravel()`` of ``(6, K)``) followed by two extent
values (:func:`spinelib.shape.curves.to_crop`). The converted head's rows are the paper's rows
permuted (:func:`paper_output_to_ours`); its two extent rows have zero weights and a
constant bias, :data:`PAPER_EXTENT_CROP`, because the paper's model has no extent
output: its levels sit at fixed crop rows.

Assumed (the public code does not establish it):

- the 209 levels are 209 consecutive crop rows centred in the 224-row crop (level
  ``k`` at crop pixel row ``7.5 + k + 0.5``; the training crop spanned the curves'
  rows plus ``(224 - (ymax - ymin)) / 2`` rows above and below);
- sagittal columns 3, 4, 5 are taken as our posterior, centre and anterior curves, in
  crop pixels / 224 above our depth origin (the table plane). The public dataset code
  overwrites the sagittal targets with the coronal ones, so the released checkpoint's
  sagittal origin and sign cannot be read from it; a posterior/anterior swap is harmless
  (:func:`spinelib.shape.curves.from_crop` puts each pair in order), an origin offset is not.

Input recipe
------------
Known (``dataset/Dataset.py``): the network sees the BONE image only. It is contrast
normalised (``ukbb_bone_normalize``: values at or above the image's second-smallest
value (rows 1..-20) define the 9.5th percentile, everything below it is raised to it,
min-max scaled to [0, 1], passed through ``1 / (1 + exp(-(x - 0.5) - 3))`` and min-max
scaled again), resized so that the body's bounding box is 832 rows tall (cubic) and
clipped to [0, 1], cropped 224 x 224, multiplied by 255, converted to an 8-bit RGB
image by PIL (values truncated to integers in 0..255, the grey value copied to the three
channels) and turned back into [0, 1] by ``ToTensor`` -- no ImageNet mean/std
normalisation. :func:`paper_input_stack` reproduces this but for the resize:

Assumed: the crop's pixel size is :data:`PAPER_CROP_PIXEL_MM` (2.2 mm, the paper's
figure; the public code's 832-row body box gives about that for an adult) rather than the
body-box rescaling (which needs the preprocessing's body mask), and the crop is placed
by :func:`spinelib.learn.crop.find_spine_crop` from the image alone (the public code centred it
on the true curves, which leaks the answer).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import CheckpointError, InvalidArgumentError, ShapeError
from .checkpoint import CorruptCheckpointError, MissingCheckpointError, save_checkpoint
from .config import ModelConfig, paper_config
from .networks import build_model

log = logging.getLogger(__name__)

__all__ = [
    "paper_model",
    "PAPER_N_LEVELS",
    "PAPER_IMAGE_SIZE",
    "PAPER_OUTPUTS",
    "PAPER_CROP_PIXEL_MM",
    "PAPER_EXTENT_CROP",
    "PAPER_INPUT_RECIPE",
    "PAPER_CURVE_COLUMNS",
    "paper_model_config",
    "is_paper_state_dict",
    "load_paper_state_dict",
    "convert_paper_state_dict",
    "convert_paper_checkpoint",
    "paper_output_to_ours",
    "paper_bone_normalize",
    "paper_input_stack",
]

#: Levels per curve of the released model.
PAPER_N_LEVELS = 209
#: Its input crop, rows and columns.
PAPER_IMAGE_SIZE = 224
#: Its outputs: 6 curves x 209 levels, no extent.
PAPER_OUTPUTS = 6 * PAPER_N_LEVELS
#: Crop pixel size assumed for the released model (mm).
PAPER_CROP_PIXEL_MM = 2.2
#: Extent (top, bottom) in crop coordinates of 209 one-pixel levels centred in the 224-row crop.
PAPER_EXTENT_CROP = ((PAPER_IMAGE_SIZE - PAPER_N_LEVELS) / 2 / PAPER_IMAGE_SIZE,
                     (PAPER_IMAGE_SIZE + PAPER_N_LEVELS) / 2 / PAPER_IMAGE_SIZE)
#: Name of the paper's input recipe, recorded in a converted checkpoint's ``extra``.
PAPER_INPUT_RECIPE = "paper_bone_rgb"
#: Paper output column j (0..5) -> our curve index (``spine.CURVE_NAMES``): coronal
#: left / middle / right, sagittal "left" / middle / "right" as posterior / centre / anterior.
PAPER_CURVE_COLUMNS = (0, 1, 2, 3, 4, 5)

# torchvision resnet50 children 0..7 -> timm ResNet attribute names
_TRUNK_KEYS = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
# lucidrains BottleBlock.net index -> our BottleneckTransformerBlock attribute
_BLOCK_KEYS = {"0": "conv1", "1": "bn1", "3.to_qkv": "attn.qkv", "3.pos_emb.rel_height": "attn.pos_embed.height_rel",
               "3.pos_emb.rel_width": "attn.pos_embed.width_rel", "5": "bn2", "7": "conv2", "8": "bn3"}
_BLOCK_RE = re.compile(r"^layer\.net\.(\d+)\.net\.(.+)\.([a-z_]+)$")
_TRUNK_RE = re.compile(r"^model\.(\d+)\.(.+)$")


def paper_model_config() -> ModelConfig:
    """Our ``resnet_bot`` at the released model's sizes: ResNet50, 224 x 224, K = 209,
    3 blocks x 4 heads x 128, projection factor 4, three input channels (the paper's RGB)."""
    return paper_config("resnet_bot", in_chans=3, n_levels=PAPER_N_LEVELS,
                        image_size=(PAPER_IMAGE_SIZE, PAPER_IMAGE_SIZE), bot_blocks=3, bot_heads=4,
                        bot_dim_head=128, proj_factor=4, pretrained_path="")


def is_paper_state_dict(obj: Any) -> bool:
    """True when ``obj`` looks like the paper's ``RegressionModel_Transformer`` state dict
    (a mapping of tensors with ``model.0.weight``, ``layer.net.0...`` and ``linear.weight``)."""
    return (isinstance(obj, Mapping) and "model.0.weight" in obj and "linear.weight" in obj
            and any(isinstance(k, str) and k.startswith("layer.net.") for k in obj))


def load_paper_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the paper's released checkpoint (a bare state dict) with ``weights_only=True``.

    Raises
    ------
    MissingCheckpointError
        No such file.
    CorruptCheckpointError
        Not a torch file, a pickle that needs code to load (refused by
        ``weights_only=True``), or not the paper's state dict.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingCheckpointError(f"paper checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, BadZipFile, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CorruptCheckpointError(
            f"paper checkpoint {p} cannot be read safely (torch.load weights_only=True): "
            f"{type(exc).__name__}: {first}") from exc
    if not is_paper_state_dict(obj):
        what = f"a mapping with keys {sorted(map(str, obj))[:5]}..." if isinstance(obj, Mapping) else type(obj).__name__
        raise CorruptCheckpointError(
            f"{p} is not the paper's RegressionModel_Transformer state dict (model.*, layer.net.*, linear.*); "
            f"it holds {what}")
    return dict(obj)


def _our_key(key: str) -> str | None:
    """Our state-dict key for one of the paper's, or None when it has no counterpart."""
    if key.startswith("linear."):
        return None  # handled separately (row permutation)
    m = _TRUNK_RE.match(key)
    if m:
        child, rest = m.groups()
        if child not in _TRUNK_KEYS:
            return "?"
        return f"trunk.{_TRUNK_KEYS[child]}.{rest}"
    m = _BLOCK_RE.match(key)
    if m:
        block, inner, leaf = m.groups()
        for ours in (f"{inner}.{leaf}", inner):
            if ours in _BLOCK_KEYS:
                mapped = _BLOCK_KEYS[ours]
                return f"transformer.{block}.{mapped}" + ("" if ours == f"{inner}.{leaf}" else f".{leaf}")
        return "?"
    return "?"


def _head_permutation(n_levels: int) -> np.ndarray:
    """``perm`` with our curve-major row ``c K + k`` taken from the paper's row ``perm[c K + k] = 6 k + j``."""
    k = np.arange(n_levels)
    return np.concatenate([6 * k + PAPER_CURVE_COLUMNS.index(c) for c in range(6)])


def paper_output_to_ours(y: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The paper's ``(B, 1254)`` level-major output as our ``(B, 6 K + 2)`` crop-coordinate vector.

    Rows reordered curve-major (:func:`spinelib.shape.curves.to_crop` layout) and the constant
    extent :data:`PAPER_EXTENT_CROP` appended. Works on torch tensors and numpy arrays.
    """
    if y.ndim != 2 or y.shape[1] != PAPER_OUTPUTS:
        raise ShapeError(f"expected the paper's output of shape (B, {PAPER_OUTPUTS}), got {tuple(y.shape)}")
    perm = _head_permutation(PAPER_N_LEVELS)
    if isinstance(y, torch.Tensor):
        ext = torch.tensor(PAPER_EXTENT_CROP, dtype=y.dtype, device=y.device).expand(y.shape[0], 2)
        return torch.cat([y[:, torch.from_numpy(perm).to(y.device)], ext], dim=1)
    y = np.asarray(y)
    return np.concatenate([y[:, perm], np.broadcast_to(np.asarray(PAPER_EXTENT_CROP, y.dtype), (y.shape[0], 2))], 1)


def convert_paper_state_dict(state: Mapping[str, Any], *, where: str = "paper state dict"
                             ) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Rename and reorder the paper's weights into our ``resnet_bot`` (:func:`paper_model_config`).

    Parameters
    ----------
    state : the paper's ``RegressionModel_Transformer.state_dict()``.
    where : how to name the source in error messages (e.g. its path).

    Returns
    -------
    (config, state dict for ``build_model(config)``), loadable with ``strict=True``.

    Raises
    ------
    CheckpointError
        Not a mapping of tensors, unknown or missing keys, or a tensor of the wrong shape
        (each names the key).
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: expected a state dict (mapping of tensors), got {type(state).__name__}")
    config = paper_model_config()
    with torch.device("meta"):  # shapes only: no memory, no random initialisation
        target = build_model(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: entry {key!r} is a {type(value).__name__}, not a tensor")
        ours = _our_key(key)
        if ours is None:
            continue
        if ours == "?" or ours not in target:
            unknown.append(key)
            continue
        if tuple(value.shape) != tuple(target[ours].shape):
            raise CheckpointError(f"{where}: {key} has shape {tuple(value.shape)}, expected "
                                  f"{tuple(target[ours].shape)} (the paper's ResNet50 + BottleStack at 224 x 224)")
        out[ours] = value.detach().to(target[ours].dtype).clone()
    if unknown:
        raise CheckpointError(f"{where}: keys not in the paper's RegressionModel_Transformer: {unknown[:5]}"
                              f"{' ...' if len(unknown) > 5 else ''}")
    for name, shape in (("linear.weight", (PAPER_OUTPUTS, 2048)), ("linear.bias", (PAPER_OUTPUTS,))):
        if name not in state:
            raise CheckpointError(f"{where}: missing {name}")
        if tuple(state[name].shape) != shape:
            raise CheckpointError(f"{where}: {name} has shape {tuple(state[name].shape)}, expected {shape} "
                                  f"(6 curves x {PAPER_N_LEVELS} levels)")
    perm = torch.from_numpy(_head_permutation(PAPER_N_LEVELS))
    w = state["linear.weight"].detach().to(torch.float32)
    b = state["linear.bias"].detach().to(torch.float32)
    head_w, head_b = "head.2.weight", "head.2.bias"
    out[head_w] = torch.cat([w[perm], torch.zeros(2, w.shape[1])], dim=0)
    out[head_b] = torch.cat([b[perm], torch.tensor(PAPER_EXTENT_CROP, dtype=torch.float32)])
    missing = sorted(set(target) - set(out))
    if missing:
        raise CheckpointError(f"{where}: missing weights for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return config, out


def paper_model(state: Mapping[str, Any], *, where: str) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """The paper's released state dict (:func:`load_paper_state_dict`) as ``(model, config,
    extra)``, the triple :func:`spinelib.learn.checkpoint.load_checkpoint` gives for a spinelib
    checkpoint; ``extra`` holds the paper's input recipe (``crop_pixel_mm``, ``input_recipe``).

    Raises
    ------
    CheckpointError
        See :func:`convert_paper_state_dict` (``where`` names the file).
    """
    config, ours = convert_paper_state_dict(state, where=where)
    model = build_model(config)
    model.load_state_dict(ours, strict=True)
    return model, config, {"crop_pixel_mm": PAPER_CROP_PIXEL_MM, "input_recipe": PAPER_INPUT_RECIPE}


def convert_paper_checkpoint(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """``spinelib convert-paper-checkpoint``: the paper's state dict -> a spinelib checkpoint.

    The result loads with :func:`spinelib.learn.checkpoint.load_checkpoint` and
    :meth:`spinelib.learn.predict.Predictor.from_checkpoint`; its ``extra`` records
    ``crop_pixel_mm`` (:data:`PAPER_CROP_PIXEL_MM`), ``input_recipe``
    (:data:`PAPER_INPUT_RECIPE`) and the source file name. Written atomically.

    Raises
    ------
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        See :func:`load_paper_state_dict` and :func:`convert_paper_state_dict`.
    InvalidArgumentError
        ``dest`` is the source file.
    """
    src_p, dest_p = Path(src), Path(dest)
    if dest_p.exists() and src_p.exists() and dest_p.resolve() == src_p.resolve():
        raise InvalidArgumentError(f"--out {dest_p} is the paper checkpoint itself; choose another file")
    model, config, extra = paper_model(load_paper_state_dict(src_p), where=str(src_p))
    path = save_checkpoint(dest_p, model, config, {
        **extra, "source": f"paper RegressionModel_Transformer state dict {src_p.name}"})
    log.info("converted %s -> %s (%s)", src_p, path, config.describe())
    return path


# ----------------------------------------------------------------------------- input recipe


def paper_bone_normalize(bone: np.ndarray, *, percentile: float = 9.5, beta: float = 1.0,
                         sigma: float = -3.0) -> np.ndarray:
    """The paper's bone contrast normalisation, on a whole bone image (any intensity unit).

    Pixels at or above the second-smallest value of rows ``1 .. H - 21`` (i.e. all but the
    background minimum) define the ``percentile``-th percentile; pixels below it are raised
    to it; the image is min-max scaled to [0, 1], mapped through
    ``1 / (1 + exp(-beta (x - 0.5) + sigma))`` and min-max scaled again.

    Parameters
    ----------
    bone : (H, W) float, H > 21.

    Returns
    -------
    (H, W) float32 in [0, 1] (all zeros for a constant image).
    """
    b = np.asarray(bone, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] <= 21:
        raise ShapeError(f"bone must be a 2D image with more than 21 rows, got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise InvalidArgumentError("bone image holds NaN or infinite values")
    levels = np.unique(b[1:-20, :])
    floor = levels[1] if levels.size > 1 else levels[0]
    vals = b[b >= floor]
    b = np.maximum(b, np.percentile(vals, percentile))

    def to_unit(x: np.ndarray) -> np.ndarray:
        lo, hi = x.min(), x.max()
        return x - lo if hi == lo else (x - lo) / (hi - lo)

    x = to_unit(b)
    x = to_unit(1.0 / (1.0 + np.exp(-beta * (x - 0.5) + sigma)))
    return x.astype(np.float32)


def paper_input_stack(bone_resampled_normalized: np.ndarray) -> np.ndarray:
    """The paper's 3-channel input from a normalised bone image already on the crop grid.

    ``x -> floor(clip(255 x, 0, 255)) / 255`` (PIL's float -> 8-bit RGB conversion,
    then ``ToTensor``), copied to three channels.

    Parameters
    ----------
    bone_resampled_normalized : (H, W) float, :func:`paper_bone_normalize` output resampled
        to the crop pixel size.

    Returns
    -------
    (3, H, W) float32 in [0, 1].
    """
    x = np.asarray(bone_resampled_normalized, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"expected a 2D bone image, got shape {x.shape}")
    q = (np.floor(np.clip(x * 255.0, 0.0, 255.0)) / 255.0).astype(np.float32)
    return np.repeat(q[None], 3, axis=0)
