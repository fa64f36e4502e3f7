"""The networks that map a DXA crop to the 6 x K spine curves, built from a :class:`ModelConfig`.

Four models, each a :class:`~spinelib.learn.config.ModelConfig` turned into a
``torch.nn.Module`` by :func:`build_model`:

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

Input and output ("the model's view")
-------------------------------------
Input: a float tensor ``(B, in_chans, rows, cols)`` with ``(rows, cols) ==
config.image_size``; channels (AP bone, AP tissue) for single-view models and (AP bone,
AP tissue, lateral bone, lateral tissue) for ``biplanar`` (``in_chans = 4``). The
lateral crop has the same size as the AP crop: the same rows (both views share the
DXA's row sampling) and its columns are depth above the table (column 0 at the table)
at the same pixel size. A dict ``{"ap": (B, 2, rows, cols), "lateral": (B, 2, rows,
cols)}`` is accepted too (single-view models read ``"ap"`` only).

Output: ``(B, 6 K + 2)`` normalised ("crop coordinates") numbers, laid out as
:mod:`spinelib.learn.config` describes (:func:`~spinelib.learn.config.split_output`).

Pretrained trunk weights are read only from a local file (``pretrained_path``); nothing
is ever downloaded.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgumentError, MissingFileError, NonFiniteError, ShapeError, UnreadableFileError
from .config import REDUCTION, ModelConfig, output_size

__all__ = [
    "build_model",
    "count_parameters",
    "BottleneckTransformerBlock",
    "BoTStack",
    "SpineNet",
    "BiplanarSpineNet",
    "MeanShape",
]

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
    """The ``bot`` head's readout: the pool, then one ``Linear(., 6 K + 2)``."""
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
    """``targets`` as a finite float64 ``(N, 6 K + 2)`` array (one vector becomes ``N = 1``)."""
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


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP, DataParallel or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model
