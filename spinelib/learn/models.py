"""Networks that map a DXA crop to the 6 x K spine curves, declared as data.

Four models, each a :class:`ModelConfig` (a frozen, JSON-able record) turned into a
``torch.nn.Module`` by :func:`build_model` -- the style of timm's ``byoanet.py``:

``resnet_bot``  (the paper's model, Figure 4)
    a timm ResNet trunk, its feature map followed by ``bot_blocks`` bottleneck-transformer
    blocks (BoTNet's BottleStack without downsampling: 1x1 conv down by ``proj_factor``,
    BN, ReLU, multi-head self-attention with relative position embeddings -- timm's
    :class:`timm.layers.BottleneckAttn` --, BN, ReLU, 1x1 conv up, BN, residual, ReLU),
    the pool and one ``Linear(., 6 K + 2)``. With ``feature_stride=16`` the trunk stops
    before its last stage and the blocks take that stage's place, as in BoTNet.
``resnet``      (the paper's CNN baseline)
    the same trunk, the pool, ``Dropout(0.2) -> Linear(., 256) -> Linear(256, 6 K + 2)``.
``mean_shape``  (the floor)
    predicts the training set's mean normalised target vector, set by
    :meth:`MeanShape.fit`; has no trainable parameter.
``biplanar``    (the upper bound that also sees the lateral projection)
    two trunks of the same architecture, one for the AP crop and one for the lateral
    crop (separate weights); their feature maps, which share the crop's rows, are put
    side by side (concatenated along the width, each with a learned view embedding) and
    the same bottleneck-transformer head as ``resnet_bot`` fuses them: self-attention
    is where the views meet. Two trunks rather than one four-channel trunk because the
    lateral image's columns are depth, not left-right position: stacking the views as
    channels would make the first convolution mix pixels that do not correspond.

The pool (``pool``) is the paper's global average (``"avg"``) or ``"spatial"``: a 1x1
conv down to ``spatial_chans`` channels, BN and ReLU, then every feature-map position
flattened into the Linear, so that where the spine lies in the crop is not averaged away
before the curves, which are positions, are read out.

The study's fifth model, ``visible_summaries`` (a ridge regression on summaries that the
AP image plainly shows, :mod:`spinelib.learn.summaries`), is not a network: it has no
:class:`ModelConfig` and its own checkpoint format. :data:`MODEL_NAMES` lists all five in
the order of the tables, :data:`NETWORK_NAMES` the four built here.

Input and output ("the model's view")
-------------------------------------
Input: a float tensor ``(B, in_chans, rows, cols)`` with ``(rows, cols) ==
config.image_size``; channels (AP bone, AP tissue) for single-view models and (AP bone,
AP tissue, lateral bone, lateral tissue) for ``biplanar`` (``in_chans = 4``). The
lateral crop has the same size as the AP crop: the same rows (both views share the
DXA's row sampling) and its columns are depth above the table (column 0 at the table)
at the same pixel size. A dict ``{"ap": (B, 2, rows, cols), "lateral": (B, 2, rows,
cols)}`` is accepted too (single-view models read ``"ap"`` only).

Output: ``(B, 6 K + 2)`` normalised ("crop coordinates") numbers: the 6 x K curves in
``spine.CURVE_NAMES`` order, row-major, then the two extent values (top, bottom). Use
:func:`split_output` to get ``(B, 6, K)`` and ``(B, 2)``.

Pretrained trunk weights are read only from a local file (``pretrained_path``); nothing
is ever downloaded.

Examples
--------
>>> from spinelib.profiles import get_profile
>>> cfg = config_from_profile(get_profile("default"), "resnet_bot")
>>> cfg.backbone, cfg.n_levels, cfg.image_size, cfg.output_size
('resnet10t', 64, (192, 96), 386)
>>> cfg.feat_size, cfg.pool
((12, 6), 'spatial')
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..util.atomic import atomic_path
from ..errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    UnreadableFileError,
)

__all__ = [
    "MODEL_NAMES",
    "NETWORK_NAMES",
    "TRAINED_MODELS",
    "NON_NETWORK_NAMES",
    "MODEL_KINDS",
    "HEADS",
    "POOLS",
    "FEATURE_STRIDES",
    "REDUCTION",
    "ModelConfig",
    "config_from_profile",
    "paper_config",
    "build_model",
    "count_parameters",
    "output_size",
    "split_output",
    "join_targets",
    "BottleneckTransformerBlock",
    "BoTStack",
    "SpineNet",
    "BiplanarSpineNet",
    "MeanShape",
    "save_checkpoint",
    "load_checkpoint",
    "MissingCheckpointError",
    "CorruptCheckpointError",
    "CHECKPOINT_FORMAT",
]

#: Output stride of every timm ResNet's last stage (the feature map is input / 32).
REDUCTION = 32

#: The heads a configuration can ask for.
HEADS: tuple[str, ...] = ("bot", "cnn", "mean")
#: How a head turns the feature map into one vector: ``"avg"`` (global average pool, the
#: paper's) or ``"spatial"`` (1x1 conv down to ``spatial_chans``, BN, ReLU, flatten: every
#: feature-map position keeps its own weights, so where the spine lies is not averaged away).
POOLS: tuple[str, ...] = ("avg", "spatial")
#: Strides the trunk can end at: 32 (the whole ResNet) or 16 (its last stage left out; with the
#: ``bot`` head the transformer blocks take that stage's place, as in BoTNet).
FEATURE_STRIDES: tuple[int, ...] = (16, 32)

#: The four torch models of the study, as data: the fields that make each one what it is.
#: Everything else (backbone, K, image size, transformer sizes) comes from the profile.
MODEL_KINDS: dict[str, dict[str, Any]] = {
    "mean_shape": dict(head="mean", views=1, in_chans=2),
    "resnet": dict(head="cnn", views=1, in_chans=2),
    "resnet_bot": dict(head="bot", views=1, in_chans=2),
    "biplanar": dict(head="bot", views=2, in_chans=4),
}
#: The models built here (torch modules with a :class:`ModelConfig` and :func:`save_checkpoint` files).
NETWORK_NAMES: tuple[str, ...] = tuple(MODEL_KINDS)
#: The networks that learn by gradient descent (``mean_shape`` is fitted, not trained).
TRAINED_MODELS: tuple[str, ...] = tuple(n for n, kind in MODEL_KINDS.items() if kind["head"] != "mean")
#: Models of the study that are not torch modules: ``visible_summaries`` is a ridge
#: regression on image summaries (:mod:`spinelib.learn.summaries`) with its own checkpoint format.
NON_NETWORK_NAMES: tuple[str, ...] = ("visible_summaries",)
#: Every model of the study, in the order of tables and figures: the floor, the linear
#: baseline, the paper's CNN baseline, the paper's model, the biplanar upper bound.
MODEL_NAMES: tuple[str, ...] = ("mean_shape", "visible_summaries", "resnet", "resnet_bot", "biplanar")
assert set(MODEL_NAMES) == set(NETWORK_NAMES) | set(NON_NETWORK_NAMES)

#: The ``format`` tag of a checkpoint written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT = "spinelib.learn.models/checkpoint"
_CHECKPOINT_VERSION = 1

# Profile keys that config_from_profile reads.
_PROFILE_KEYS = ("backbone", "image_size", "n_levels", "bot_blocks", "bot_heads", "bot_dim_head", "pool",
                 "spatial_chans")


class MissingCheckpointError(CheckpointError, MissingFileError):
    """A checkpoint file does not exist (both a CheckpointError and a MissingFileError)."""


class CorruptCheckpointError(CheckpointError, UnreadableFileError):
    """A checkpoint file exists but cannot be read (both CheckpointError and UnreadableFileError)."""


# ----------------------------------------------------------------------------- helpers


def output_size(n_levels: int) -> int:
    """Number of network outputs for ``K = n_levels``: the 6 x K curves plus 2 extent values."""
    return 6 * int(n_levels) + 2


def split_output(y: torch.Tensor, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``(B, 6 K + 2)`` output into curves ``(B, 6, K)`` and extent ``(B, 2)``.

    Works on numpy arrays too (returns views of the input).
    """
    k = int(n_levels)
    if y.ndim != 2 or y.shape[1] != output_size(k):
        raise ShapeError(f"expected an output of shape (B, {output_size(k)}) for K={k}, got {tuple(y.shape)}")
    return y[:, : 6 * k].reshape(y.shape[0], 6, k), y[:, 6 * k :]


def join_targets(curves, extent):
    """Inverse of :func:`split_output`: ``(B, 6, K)`` and ``(B, 2)`` -> ``(B, 6 K + 2)``.

    Accepts torch tensors or numpy arrays (both arguments of the same kind).
    """
    if curves.ndim != 3 or curves.shape[1] != 6:
        raise ShapeError(f"curves must have shape (B, 6, K), got {tuple(curves.shape)}")
    if extent.ndim != 2 or extent.shape != (curves.shape[0], 2):
        raise ShapeError(f"extent must have shape ({curves.shape[0]}, 2), got {tuple(extent.shape)}")
    flat = curves.reshape(curves.shape[0], -1)
    if isinstance(curves, torch.Tensor):
        return torch.cat([flat, extent.to(flat.dtype)], dim=1)
    return np.concatenate([flat, np.asarray(extent, dtype=flat.dtype)], axis=1)


@functools.lru_cache(maxsize=1)
def _timm_resnet_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models(module="resnet"))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model, as plain values (stored in checkpoints).

    Parameters
    ----------
    name : str
        Label of the model (``"resnet_bot"``, ``"resnet"``, ``"mean_shape"``, ``"biplanar"``
        for the study's four; any non-empty label is allowed).
    backbone : str
        A timm ResNet by name (any model of ``timm.models.resnet``: ``resnet10t``,
        ``resnet18d``, ``resnet50``, ...). Ignored by the ``mean`` head.
    in_chans : int
        Channels of the input tensor, all views together (2 per view).
    n_levels : int
        K, levels per curve (>= 3).
    bot_blocks, bot_heads, bot_dim_head : int
        Bottleneck-transformer blocks, attention heads and query/key/value size per head
        (``bot`` head only).
    head : {"bot", "cnn", "mean"}
        Bottleneck-transformer head, the paper's CNN-baseline head, or the mean shape.
    image_size : (int, int)
        Crop (rows, cols) fed to the network; each a multiple of 32 (the trunk's reduction).
    views : {1, 2}
        1: AP only; 2: AP and lateral (``biplanar``; ``bot`` head only).
    proj_factor : int
        Channel reduction of the 1x1 conv before the attention (4 in BoTNet).
    hidden : int
        Width of the CNN head's hidden Linear (256 in the paper).
    dropout : float
        Dropout before the CNN head's first Linear (0.2 in the paper).
    pretrained_path : str
        Optional local file of trunk weights (timm / torchvision ResNet state dict); ``""``
        for random initialisation. Never downloaded.
    feature_stride : {16, 32}
        Stride of the feature map the head reads: 32 is the whole ResNet, 16 leaves out its
        last stage (the ``bot`` head's transformer blocks then work at twice the resolution
        in place of that stage, BoTNet's layout).
    pool : {"avg", "spatial"}
        How the head reduces the feature map (:data:`POOLS`).
    spatial_chans : int
        Channels per feature-map position kept by the ``"spatial"`` pool.
    """

    name: str
    backbone: str = "resnet50"
    in_chans: int = 2
    n_levels: int = 209
    bot_blocks: int = 3
    bot_heads: int = 4
    bot_dim_head: int = 128
    head: str = "bot"
    image_size: tuple[int, int] = (224, 224)
    views: int = 1
    proj_factor: int = 4
    hidden: int = 256
    dropout: float = 0.2
    pretrained_path: str = ""
    feature_stride: int = 32
    pool: str = "avg"
    spatial_chans: int = 32

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgumentError(f"name must be a non-empty string, got {self.name!r}")
        if self.head not in HEADS:
            raise InvalidArgumentError(f"head must be one of {HEADS}, got {self.head!r}")
        set_("n_levels", _check_int("n_levels (K)", self.n_levels, 3))
        set_("views", _check_int("views", self.views, 1))
        if self.views not in (1, 2):
            raise InvalidArgumentError(f"views must be 1 (AP) or 2 (AP + lateral), got {self.views}")
        if self.views == 2 and self.head != "bot":
            raise InvalidArgumentError(f"a two-view (biplanar) model needs the 'bot' head, got {self.head!r}")
        set_("in_chans", _check_int("in_chans", self.in_chans, 1))
        if self.in_chans % self.views:
            raise InvalidArgumentError(
                f"in_chans={self.in_chans} must split evenly over views={self.views} (channels per view)"
            )
        size = self.image_size
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise InvalidArgumentError(f"image_size must be (rows, cols), got {size!r}")
        size = tuple(_check_int("image_size", s, 1) for s in size)
        if self.head != "mean" and any(s % REDUCTION for s in size):
            raise InvalidArgumentError(
                f"image_size {size} must be a multiple of {REDUCTION} (the ResNet trunk's reduction) "
                f"in both rows and cols; e.g. {tuple(max(REDUCTION, round(s / REDUCTION) * REDUCTION) for s in size)}"
            )
        set_("image_size", size)
        for key, minimum in (("bot_blocks", 1 if self.head == "bot" else 0), ("bot_heads", 1),
                             ("bot_dim_head", 1), ("proj_factor", 1), ("hidden", 1)):
            set_(key, _check_int(key, getattr(self, key), minimum))
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {self.dropout!r}")
        set_("dropout", float(self.dropout))
        if self.pool not in POOLS:
            raise InvalidArgumentError(f"pool must be one of {POOLS}, got {self.pool!r}")
        set_("spatial_chans", _check_int("spatial_chans", self.spatial_chans, 1))
        if isinstance(self.feature_stride, bool) or self.feature_stride not in FEATURE_STRIDES:
            raise InvalidArgumentError(f"feature_stride must be one of {FEATURE_STRIDES}, got {self.feature_stride!r}")
        set_("feature_stride", int(self.feature_stride))
        if not isinstance(self.backbone, str):
            raise InvalidArgumentError(f"backbone must be a timm ResNet name, got {self.backbone!r}")
        if self.head != "mean" and self.backbone.split(".")[0] not in _timm_resnet_names():
            raise InvalidArgumentError(
                f"unknown backbone {self.backbone!r}: expected a timm ResNet such as resnet10t, "
                f"resnet18d, resnet34, resnet50 (timm.list_models(module='resnet'))"
            )
        path = self.pretrained_path
        set_("pretrained_path", "" if path is None else os.fspath(path))

    # -- derived values
    @property
    def output_size(self) -> int:
        """``6 * n_levels + 2``."""
        return output_size(self.n_levels)

    @property
    def feat_size(self) -> tuple[int, int]:
        """(rows, cols) of one view's feature map (``image_size / feature_stride``)."""
        return (self.image_size[0] // self.feature_stride, self.image_size[1] // self.feature_stride)

    @property
    def chans_per_view(self) -> int:
        return self.in_chans // self.views

    # -- plain-value round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``image_size`` as a list)."""
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InvalidArgumentError`."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"a model configuration must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown model configuration keys {unknown}; known: {sorted(known)}")
        if "name" not in data:
            raise InvalidArgumentError("a model configuration needs a 'name'")
        return cls(**dict(data))

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the weights' shapes and meaning (all but ``pretrained_path``)."""
        d = self.to_dict()
        d.pop("pretrained_path")
        return d

    def describe(self) -> str:
        """One line naming the configuration, e.g. for error messages."""
        rows, cols = self.image_size
        text = f"{self.name}[head={self.head}"
        if self.head != "mean":
            text += f", backbone={self.backbone}"
        text += f", in_chans={self.in_chans}, views={self.views}, K={self.n_levels}, image={rows}x{cols}"
        if self.head == "bot":
            text += (f", bot={self.bot_blocks} blocks x {self.bot_heads} heads x {self.bot_dim_head}"
                     f", proj_factor={self.proj_factor}")
        elif self.head == "cnn":
            text += f", hidden={self.hidden}, dropout={self.dropout:g}"
        if self.head != "mean":
            text += f", stride={self.feature_stride}, pool={self.pool}"
            if self.pool == "spatial":
                text += f"x{self.spatial_chans}"
        return text + "]"


def config_from_profile(params: Mapping[str, Any], name: str, **overrides: Any) -> ModelConfig:
    """The configuration of network ``name`` (one of :data:`NETWORK_NAMES`) under a run profile.

    ``params`` is a profile dict (:func:`spinelib.profiles.get_profile`); it must hold
    ``backbone, image_size, n_levels, bot_blocks, bot_heads, bot_dim_head, pool,
    spatial_chans`` (``pretrained_path`` and ``feature_stride_by_model``, the model's
    stride with 32 for a model it does not name, optional). ``overrides`` replace single fields.

    >>> from spinelib.profiles import get_profile
    >>> config_from_profile(get_profile("paper"), "biplanar").in_chans
    4
    """
    if name in NON_NETWORK_NAMES:
        raise InvalidArgumentError(f"model {name!r} is not a network and has no ModelConfig (see spinelib.learn.summaries); "
                                   f"networks are {', '.join(NETWORK_NAMES)}")
    if name not in MODEL_KINDS:
        raise InvalidArgumentError(f"unknown model {name!r}; choose one of {', '.join(NETWORK_NAMES)}")
    missing = [k for k in _PROFILE_KEYS if k not in params]
    if missing:
        raise InvalidArgumentError(f"profile parameters lack {missing} needed to configure model {name!r}")
    fields = {k: params[k] for k in _PROFILE_KEYS}
    fields["image_size"] = tuple(params["image_size"])
    strides = params.get("feature_stride_by_model") or {}
    if not isinstance(strides, Mapping):
        raise InvalidArgumentError(f"feature_stride_by_model must map model names to 16 or 32, got {strides!r}")
    fields["feature_stride"] = strides.get(name, REDUCTION)
    fields["pretrained_path"] = params.get("pretrained_path", "") or ""
    fields.update(MODEL_KINDS[name])
    fields.update(overrides)
    return ModelConfig(name=name, **fields)


def paper_config(name: str = "resnet_bot", **overrides: Any) -> ModelConfig:
    """Model ``name`` at the paper's settings (ResNet50, 224 x 224, K = 209, 3 x 4 x 128)."""
    from ..profiles import get_profile

    return config_from_profile(get_profile("paper"), name, **overrides)


# ----------------------------------------------------------------------------- building blocks


def _create_trunk(config: ModelConfig, in_chans: int) -> nn.Module:
    """A timm ResNet without pooling or classifier; pretrained only from a local file."""
    import timm
    from timm.models.resnet import ResNet

    kwargs = dict(features_only=False, num_classes=0, global_pool="", in_chans=in_chans)
    path = config.pretrained_path
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingFileError(f"pretrained weights file {p} does not exist (pretrained_path)")
        try:
            trunk = timm.create_model(
                config.backbone, pretrained=True, pretrained_cfg_overlay=dict(file=str(p)), **kwargs
            )
        except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise UnreadableFileError(
                f"cannot load pretrained weights for {config.backbone} from {p}: {exc}"
            ) from exc
    else:
        trunk = timm.create_model(config.backbone, pretrained=False, **kwargs)
    if not isinstance(trunk, ResNet):  # pragma: no cover - guarded by the name check
        raise InvalidArgumentError(f"backbone {config.backbone!r} is not a timm ResNet")
    reduction = trunk.feature_info[-1]["reduction"]
    if reduction != REDUCTION:  # pragma: no cover - all timm ResNets reduce by 32
        raise InvalidArgumentError(f"backbone {config.backbone!r} reduces by {reduction}, expected {REDUCTION}")
    if config.feature_stride == 16:
        # forward_features runs every stage in turn: an identity last stage ends the trunk at stride 16
        trunk.layer4 = nn.Identity()
        trunk.num_features = trunk.feature_info[-2]["num_chs"]
    return trunk


class BottleneckTransformerBlock(nn.Module):
    """One BoTNet bottleneck block without downsampling (BottleStack layer).

    ``x -> conv1x1(dim -> dim / proj_factor) -> BN -> ReLU -> MHSA (timm BottleneckAttn,
    relative position embeddings, heads x dim_head) -> BN -> ReLU -> conv1x1(-> dim) ->
    BN (gamma zero-initialised) ; + x ; ReLU``. Input and output ``(B, dim, H, W)`` with
    ``(H, W) == feat_size``.
    """

    def __init__(self, dim: int, feat_size: tuple[int, int], *, heads: int, dim_head: int,
                 proj_factor: int = 4) -> None:
        super().__init__()
        from timm.layers.bottleneck_attn import BottleneckAttn

        if dim % proj_factor:
            raise InvalidArgumentError(f"feature channels {dim} are not divisible by proj_factor={proj_factor}")
        mid = dim // proj_factor
        attn_dim = heads * dim_head
        self.conv1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        # dim_head fixes q/k per head; dim_out = heads * dim_head fixes v per head to dim_head too.
        # scale_pos_embed: (q.k + q.r) * scale, as in the reference BoTNet code.
        self.attn = BottleneckAttn(mid, attn_dim, feat_size=tuple(feat_size), num_heads=heads,
                                   dim_head=dim_head, qkv_bias=False, scale_pos_embed=True)
        self.bn2 = nn.BatchNorm2d(attn_dim)
        self.conv2 = nn.Conv2d(attn_dim, dim, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(dim)
        self.act = nn.ReLU(inplace=False)
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.attn(y)))
        y = self.bn3(self.conv2(y))
        return self.act(y + x)


class BoTStack(nn.Sequential):
    """``n`` :class:`BottleneckTransformerBlock` in a row (BoTNet's BottleStack, no downsampling)."""

    def __init__(self, dim: int, feat_size: tuple[int, int], *, blocks: int, heads: int, dim_head: int,
                 proj_factor: int = 4) -> None:
        super().__init__(*[
            BottleneckTransformerBlock(dim, feat_size, heads=heads, dim_head=dim_head, proj_factor=proj_factor)
            for _ in range(blocks)
        ])
        self.feat_size = tuple(feat_size)


def _pool(config: ModelConfig, dim: int, feat_size: tuple[int, int]) -> tuple[list[nn.Module], int]:
    """The layers that turn a ``(B, dim, *feat_size)`` map into ``(B, n)`` vectors, and ``n``."""
    if config.pool == "avg":
        return [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)], dim
    c = config.spatial_chans
    return [nn.Conv2d(dim, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.Flatten(1)], c * feat_size[0] * feat_size[1]


def _linear_head(config: ModelConfig, dim: int, feat_size: tuple[int, int]) -> nn.Sequential:
    pool, n = _pool(config, dim, feat_size)
    return nn.Sequential(*pool, nn.Linear(n, config.output_size))


def _cnn_head(config: ModelConfig, dim: int, feat_size: tuple[int, int]) -> nn.Sequential:
    # The paper's baseline: Dropout -> Linear(C, 256) -> Linear(256, out), no activation between.
    pool, n = _pool(config, dim, feat_size)
    return nn.Sequential(*pool, nn.Dropout(config.dropout), nn.Linear(n, config.hidden),
                         nn.Linear(config.hidden, config.output_size))


class _Base(nn.Module):
    """Input checking shared by the models; every model has ``config``, ``trunk``,
    ``transformer`` and ``head`` (the last three possibly empty)."""

    config: ModelConfig

    def _views(self, x: torch.Tensor | Mapping[str, torch.Tensor], *, check_size: bool = True) -> list[torch.Tensor]:
        cfg = self.config
        if isinstance(x, Mapping):
            keys = ("ap", "lateral")[: cfg.views]
            missing = [k for k in keys if k not in x]
            if missing:
                raise InvalidArgumentError(f"{cfg.name}: input dict lacks {missing} (keys: {sorted(x)})")
            views = [x[k] for k in keys]
        elif isinstance(x, torch.Tensor):
            if x.ndim != 4 or x.shape[1] != cfg.in_chans:
                raise ShapeError(f"{cfg.name}: expected input (B, {cfg.in_chans}, rows, cols), got {tuple(x.shape)}")
            views = list(torch.split(x, cfg.chans_per_view, dim=1))
        else:
            raise InvalidArgumentError(f"{cfg.name}: input must be a tensor or a dict of tensors, got {type(x).__name__}")
        for v in views:
            if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[1] != cfg.chans_per_view:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ShapeError(f"{cfg.name}: expected each view as (B, {cfg.chans_per_view}, rows, cols), got {shape}")
            if check_size and tuple(v.shape[-2:]) != cfg.image_size:
                raise ShapeError(
                    f"{cfg.name}: expected crops of {cfg.image_size[0]}x{cfg.image_size[1]} (image_size), "
                    f"got {v.shape[-2]}x{v.shape[-1]}"
                )
        return views

    def final_linear(self) -> nn.Linear | None:
        """The Linear layer producing the outputs (None for mean_shape)."""
        layers = [m for m in self.head.modules() if isinstance(m, nn.Linear)]
        return layers[-1] if layers else None

    @torch.no_grad()
    def init_output(self, mean: Any) -> None:
        """Start from the mean shape: final Linear's bias set to ``mean``, its weights scaled down.

        ``mean`` is the training set's mean normalised target vector ``(6 K + 2,)``. The
        final Linear's bias becomes ``mean`` and its weights are scaled by 0.1, so that the
        untrained network already predicts about the mean shape (faster, steadier training).
        """
        mean = _as_target_matrix(mean, self.config.n_levels, what="mean").reshape(-1)
        lin = self.final_linear()
        if lin is None:
            return
        lin.bias.copy_(torch.as_tensor(mean, dtype=lin.bias.dtype))
        lin.weight.mul_(0.1)


class SpineNet(_Base):
    """Single-view model: timm ResNet trunk + ``bot`` or ``cnn`` head (see module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.views != 1 or config.head not in ("bot", "cnn"):
            raise InvalidArgumentError(f"SpineNet builds single-view bot/cnn models, not {config.describe()}")
        self.config = config
        self.trunk = _create_trunk(config, config.in_chans)
        dim = self.trunk.num_features
        if config.head == "bot":
            self.transformer = BoTStack(dim, config.feat_size, blocks=config.bot_blocks, heads=config.bot_heads,
                                        dim_head=config.bot_dim_head, proj_factor=config.proj_factor)
            self.head = _linear_head(config, dim, config.feat_size)
        else:
            self.transformer = nn.Sequential()
            self.head = _cnn_head(config, dim, config.feat_size)

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        (ap,) = self._views(x)
        return self.head(self.transformer(self.trunk.forward_features(ap)))


class BiplanarSpineNet(_Base):
    """AP + lateral model: two trunks, feature maps side by side, the ``bot`` head.

    The lateral crop must have the AP crop's size and rows (see module docstring).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.views != 2 or config.head != "bot":
            raise InvalidArgumentError(f"BiplanarSpineNet builds two-view bot models, not {config.describe()}")
        self.config = config
        self.trunk = nn.ModuleDict({
            "ap": _create_trunk(config, config.chans_per_view),
            "lateral": _create_trunk(config, config.chans_per_view),
        })
        dim = self.trunk["ap"].num_features
        rows, cols = config.feat_size
        self.transformer = nn.Module()
        # which view a feature vector comes from (relative positions alone cannot tell)
        self.transformer.view_embed = nn.Parameter(torch.randn(2, dim, 1, 1) * 0.02)
        self.transformer.blocks = BoTStack(dim, (rows, 2 * cols), blocks=config.bot_blocks, heads=config.bot_heads,
                                           dim_head=config.bot_dim_head, proj_factor=config.proj_factor)
        self.head = _linear_head(config, dim, (rows, 2 * cols))

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        ap, lateral = self._views(x)
        emb = self.transformer.view_embed
        f = torch.cat([self.trunk["ap"].forward_features(ap) + emb[0],
                       self.trunk["lateral"].forward_features(lateral) + emb[1]], dim=3)
        return self.head(self.transformer.blocks(f))


def _as_target_matrix(targets: Any, n_levels: int, *, what: str = "targets") -> np.ndarray:
    arr = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    if arr.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    n_out = output_size(n_levels)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != n_out or arr.shape[0] == 0:
        raise ShapeError(f"{what} must have shape (N, {n_out}) = (N, 6 K + 2) with K={n_levels}, got {targets.shape}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} hold NaN or infinite values")
    return arr


class MeanShape(_Base):
    """Predicts the training set's mean normalised target vector, whatever the input.

    Call :meth:`fit` with the training targets ``(N, 6 K + 2)`` first; the mean is a
    buffer, so it is saved in and restored from checkpoints.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.head != "mean":
            raise InvalidArgumentError(f"MeanShape needs head='mean', not {config.describe()}")
        self.config = config
        self.trunk = nn.Sequential()
        self.transformer = nn.Sequential()
        self.head = nn.Sequential()
        self.register_buffer("mean", torch.zeros(config.output_size))
        self.register_buffer("n_fitted", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def fit(self, targets: Any) -> "MeanShape":
        """Set the prediction to the mean of ``targets`` ``(N, 6 K + 2)``; returns self."""
        arr = _as_target_matrix(targets, self.config.n_levels)
        self.mean.copy_(torch.as_tensor(arr.mean(axis=0), dtype=self.mean.dtype))
        self.n_fitted.fill_(arr.shape[0])
        return self

    def init_output(self, mean: Any) -> None:
        """Same as :meth:`fit` with a single target vector."""
        self.fit(_as_target_matrix(mean, self.config.n_levels, what="mean").reshape(1, -1))

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if int(self.n_fitted) == 0:
            raise InvalidArgumentError("mean_shape model used before fit(targets)")
        if isinstance(x, Mapping):
            x = x["ap"] if "ap" in x else next(iter(x.values()))
        if not isinstance(x, torch.Tensor) or x.ndim < 1:
            raise ShapeError("mean_shape: input must be a batched tensor (B, ...)")
        out = self.mean.to(device=x.device, dtype=x.dtype if x.is_floating_point() else self.mean.dtype)
        return out.expand(x.shape[0], -1).clone()


def build_model(config: ModelConfig) -> nn.Module:
    """The ``torch.nn.Module`` described by ``config`` (random init, or pretrained trunk
    weights from ``config.pretrained_path``).

    Raises
    ------
    InvalidArgumentError
        ``config`` is not a :class:`ModelConfig`.
    MissingFileError
        ``pretrained_path`` names a file that does not exist.
    UnreadableFileError
        The pretrained file cannot be loaded into the backbone.
    """
    if not isinstance(config, ModelConfig):
        raise InvalidArgumentError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    if config.head == "mean":
        return MeanShape(config)
    if config.views == 2:
        return BiplanarSpineNet(config)
    return SpineNet(config)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> dict[str, int]:
    """Parameters of ``model`` by part: ``trunk``, ``transformer``, ``head``, ``total``.

    Parts are the model's top-level ``trunk``, ``transformer`` and ``head`` submodules;
    any parameter outside them counts in ``total`` only (there is none in this module's
    models). DDP / compiled wrappers are unwrapped.
    """
    model = _unwrap(model)
    counts = {"trunk": 0, "transformer": 0, "head": 0, "total": 0}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        n = p.numel()
        counts["total"] += n
        part = name.split(".", 1)[0]
        if part in counts and part != "total":
            counts[part] += n
    return counts


# ----------------------------------------------------------------------------- checkpoints


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def _plain(value: Any, where: str) -> Any:
    """``value`` made of types ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise InvalidArgumentError(f"checkpoint {where}: key {k!r} is not a plain value")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise InvalidArgumentError(
        f"checkpoint {where}: cannot store a {type(value).__name__}; use plain values, numpy arrays or tensors"
    )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: ModelConfig,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, its configuration (a plain dict) and ``extra`` atomically.

    ``extra`` holds plain values, numpy arrays or tensors (epoch, optimizer state dict,
    metrics, ...); it comes back unchanged but for numpy arrays, which come back as tensors.
    The file loads with ``torch.load(weights_only=True)``. Returns the path.
    """
    if not isinstance(config, ModelConfig):
        raise InvalidArgumentError(f"config must be a ModelConfig, got {type(config).__name__}")
    inner = _unwrap(model)
    model_cfg = getattr(inner, "config", None)
    if isinstance(model_cfg, ModelConfig) and model_cfg.architecture() != config.architecture():
        raise InvalidArgumentError(
            f"the model was built as {model_cfg.describe()} but is being saved as {config.describe()}"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach() for k, v in inner.state_dict().items()},
        "extra": _plain(dict(extra or {}), "extra"),
        "torch_version": str(torch.__version__),
    }
    dest = Path(path)
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    return dest


def _differences(a: ModelConfig, b: ModelConfig) -> str:
    da, db = a.architecture(), b.architecture()
    return ", ".join(f"{k} {da[k]!r} vs {db[k]!r}" for k in da if da[k] != db[k])


def load_checkpoint(path: str | os.PathLike, *, expect: ModelConfig | Mapping[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_checkpoint`: ``(model, config, extra)``.

    The model is rebuilt from the stored configuration (never reading a pretrained file:
    the weights come from the checkpoint) and returned in eval mode on ``map_location``.

    Parameters
    ----------
    expect : ModelConfig or dict, optional
        The configuration the caller needs; a checkpoint made for another one (other
        model, backbone, K, image size, ...) is refused. ``pretrained_path`` is not compared.

    Raises
    ------
    MissingCheckpointError
        No such file (a :class:`CheckpointError` and a :class:`MissingFileError`).
    CorruptCheckpointError
        The file is not a readable spinelib checkpoint.
    CheckpointError
        The checkpoint was made for another configuration than ``expect`` (both named),
        or its weights do not fit its configuration.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingCheckpointError(f"checkpoint {p} does not exist")
    if expect is not None and not isinstance(expect, ModelConfig):
        try:
            expect = ModelConfig.from_dict(expect)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"expect: {exc}") from exc
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, BadZipFile, ...
        raise CorruptCheckpointError(f"checkpoint {p} is corrupt or not a torch file: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpointError(f"{p} is not a spinelib model checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {p} has format version {payload.get('version')!r}; "
                              f"this spinelib reads version {_CHECKPOINT_VERSION}")
    try:
        config = ModelConfig.from_dict(payload["config"])
        state = payload["state_dict"]
    except (KeyError, InvalidArgumentError, TypeError) as exc:
        raise CorruptCheckpointError(f"checkpoint {p} holds an invalid model configuration: {exc}") from exc
    if expect is not None and expect.architecture() != config.architecture():
        raise CheckpointError(
            f"checkpoint {p} was made for {config.describe()}, but {expect.describe()} is expected "
            f"(differs in: {_differences(config, expect)})"
        )
    model = build_model(dataclasses.replace(config, pretrained_path=""))
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"checkpoint {p}: weights do not fit {config.describe()}: {str(exc).splitlines()[0]}"
        ) from exc
    model.to(map_location).eval()
    return model, config, dict(payload.get("extra") or {})
