"""Models declared as data: the output layout, :class:`ModelConfig` and the study's model names.

Each network of the study is a :class:`ModelConfig` (a frozen, JSON-able record, stored in
every checkpoint) that :func:`spinelib.learn.networks.build_model` turns into a
``torch.nn.Module`` -- the style of timm's ``byoanet.py``; :mod:`spinelib.learn.networks`
describes the four networks. :data:`MODEL_KINDS` holds the fields that make each one what it
is; the run profile sets the rest (:func:`config_from_profile`).

The study's fifth model, ``visible_summaries`` (a ridge regression on summaries that the
AP image plainly shows, :mod:`spinelib.learn.ridge`), is not a network: it has no
:class:`ModelConfig` and its own checkpoint format. :data:`MODEL_NAMES` lists all five in
the order of the tables, :data:`NETWORK_NAMES` the four networks.

Output layout
-------------
Every network returns ``(B, 6 K + 2)`` normalised ("crop coordinates") numbers: the 6 x K
curves in ``spine.CURVE_NAMES`` order, row-major, then the two extent values (top, bottom).
Use :func:`split_output` to get ``(B, 6, K)`` and ``(B, 2)``, :func:`join_targets` for the
way back.

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
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InvalidArgumentError, ShapeError
from ..io.checks import check_integer

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
    "output_size",
    "split_output",
    "join_targets",
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
#: The networks (torch modules with a :class:`ModelConfig` and
#: :func:`spinelib.learn.checkpoint.save_checkpoint` files).
NETWORK_NAMES: tuple[str, ...] = tuple(MODEL_KINDS)
#: The networks that learn by gradient descent (``mean_shape`` is fitted, not trained).
TRAINED_MODELS: tuple[str, ...] = tuple(n for n, kind in MODEL_KINDS.items() if kind["head"] != "mean")
#: Models of the study that are not torch modules: ``visible_summaries`` is a ridge
#: regression on image summaries (:mod:`spinelib.learn.ridge`) with its own checkpoint format.
NON_NETWORK_NAMES: tuple[str, ...] = ("visible_summaries",)
#: Every model of the study, in the order of tables and figures: the floor, the linear
#: baseline, the paper's CNN baseline, the paper's model, the biplanar upper bound.
MODEL_NAMES: tuple[str, ...] = ("mean_shape", "visible_summaries", "resnet", "resnet_bot", "biplanar")
assert set(MODEL_NAMES) == set(NETWORK_NAMES) | set(NON_NETWORK_NAMES)

# Profile keys that config_from_profile reads.
_PROFILE_KEYS = ("backbone", "image_size", "n_levels", "bot_blocks", "bot_heads", "bot_dim_head", "pool",
                 "spatial_chans")


# ----------------------------------------------------------------------------- output layout


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


# ----------------------------------------------------------------------------- configuration


@functools.lru_cache(maxsize=1)
def _timm_resnet_names() -> frozenset[str]:
    """Names of timm's ResNets (the backbones a configuration may name)."""
    import timm

    return frozenset(timm.list_models(module="resnet"))


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
        set_("n_levels", check_integer(self.n_levels, "n_levels (K)", 3))
        set_("views", check_integer(self.views, "views", 1))
        if self.views not in (1, 2):
            raise InvalidArgumentError(f"views must be 1 (AP) or 2 (AP + lateral), got {self.views}")
        if self.views == 2 and self.head != "bot":
            raise InvalidArgumentError(f"a two-view (biplanar) model needs the 'bot' head, got {self.head!r}")
        set_("in_chans", check_integer(self.in_chans, "in_chans", 1))
        if self.in_chans % self.views:
            raise InvalidArgumentError(
                f"in_chans={self.in_chans} must split evenly over views={self.views} (channels per view)"
            )
        size = self.image_size
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise InvalidArgumentError(f"image_size must be (rows, cols), got {size!r}")
        size = tuple(check_integer(s, "image_size", 1) for s in size)
        if self.head != "mean" and any(s % REDUCTION for s in size):
            raise InvalidArgumentError(
                f"image_size {size} must be a multiple of {REDUCTION} (the ResNet trunk's reduction) "
                f"in both rows and cols; e.g. {tuple(max(REDUCTION, round(s / REDUCTION) * REDUCTION) for s in size)}"
            )
        set_("image_size", size)
        for key, minimum in (("bot_blocks", 1 if self.head == "bot" else 0), ("bot_heads", 1),
                             ("bot_dim_head", 1), ("proj_factor", 1), ("hidden", 1)):
            set_(key, check_integer(getattr(self, key), key, minimum))
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {self.dropout!r}")
        set_("dropout", float(self.dropout))
        if self.pool not in POOLS:
            raise InvalidArgumentError(f"pool must be one of {POOLS}, got {self.pool!r}")
        set_("spatial_chans", check_integer(self.spatial_chans, "spatial_chans", 1))
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
        raise InvalidArgumentError(f"model {name!r} is not a network and has no ModelConfig (see spinelib.learn.ridge); "
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
