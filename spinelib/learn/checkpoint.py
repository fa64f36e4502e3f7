"""Model checkpoints: one file with a network's weights, its :class:`ModelConfig` and extras.

:func:`save_checkpoint` writes, atomically, a ``torch.save`` zip of plain values: the
format tag :data:`CHECKPOINT_FORMAT` and version, the configuration as a dict, the state
dict and ``extra`` (epoch, optimiser state, the input recipe, ...); it loads with
``torch.load(weights_only=True)``, so reading one runs no code. :func:`load_checkpoint`
rebuilds the network from the stored configuration and refuses a checkpoint made for
another one.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InvalidArgumentError, MissingFileError, UnreadableFileError
from ..util.atomic import atomic_path
from .config import ModelConfig
from .networks import _unwrap, build_model

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "MissingCheckpointError",
    "CorruptCheckpointError",
    "CHECKPOINT_FORMAT",
]

#: The ``format`` tag of a checkpoint written by :func:`save_checkpoint` (it names the module
#: that first wrote checkpoints; kept as it is, so that every checkpoint written since loads).
CHECKPOINT_FORMAT = "spinelib.learn.models/checkpoint"
_CHECKPOINT_VERSION = 1


class MissingCheckpointError(CheckpointError, MissingFileError):
    """A checkpoint file does not exist (both a CheckpointError and a MissingFileError)."""


class CorruptCheckpointError(CheckpointError, UnreadableFileError):
    """A checkpoint file exists but cannot be read (both CheckpointError and UnreadableFileError)."""


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


def _read_payload(p: Path, map_location: str | torch.device) -> dict[str, Any]:
    """The dict stored in checkpoint ``p``, refused unless it has this version's format tag."""
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
    return payload


def _differences(a: ModelConfig, b: ModelConfig) -> str:
    """The architecture fields in which ``a`` and ``b`` differ, e.g. ``"n_levels 5 vs 7"``."""
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
    payload = _read_payload(p, map_location)
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
