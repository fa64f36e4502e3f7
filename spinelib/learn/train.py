"""Training loop: seeded, resumable, atomic checkpoints, DDP through ``torchrun``.

The loop is model-agnostic: it trains any model built by :func:`spinelib.learn.networks.build_model`
on any map-style dataset whose items are ``(image, target)`` tensors (targets in crop
coordinates, :func:`spinelib.shape.curves.to_crop`), with the paper's L1 loss
(:mod:`spinelib.learn.loss`; its extent outputs weighted by ``extent_weight``, :class:`TrainConfig`)
and Adam.

Determinism: every source of randomness is derived from ``(seed, epoch)`` -- the
shuffling order (or the weighted draws of ``sample_weights``), the augmentation of each sample (datasets with ``set_epoch``) and
torch's global generator (dropout) -- so an interrupted run resumed from its last
checkpoint finishes with exactly the weights of an uninterrupted one.

Multi-GPU / multi-node: launch ``torchrun --nproc_per_node N -m spinelib.cli train --run-dir RUN ...``;
the environment variables torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) switch
on DistributedDataParallel (NCCL on GPUs, gloo on CPU). Rank 0 alone validates, logs and
writes checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..util.atomic import atomic_path, ensure_writable_dir
from ..errors import CheckpointError, InvalidArgumentError
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig
from .loss import evaluate_loss, l1_loss
from .sampling import WeightedDraws

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "train_model", "adam", "dist_info", "LAST", "BEST", "LOG"]

SCHEDULES = ("constant", "cosine")
LAST = "last.pt"
BEST = "best.pt"
LOG = "train_log.csv"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the profile's ``epochs``, ``batch_size``, ``lr`` or the model's
    ``lr_by_model`` entry, ...).

    The paper: Adam, lr 1e-5, betas (0.9, 0.999), weight decay 1e-4, batch 8, L1 loss
    on targets normalised by the crop size.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    seed: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    num_threads: int = 2
    schedule: str = "constant"
    #: Loss weight of each of the two extent outputs (top, bottom), a curve value weighing 1.
    #: The extent is 2 of the 6 K + 2 outputs, so with weight 1 it steers the trunk's
    #: features hardly at all; the paper weighs every output alike (1).
    extent_weight: float = 1.0
    #: How much more often training draws the subjects of the rarer scoliosis severity
    #: classes (:func:`spinelib.learn.sampling.severity_weights`' ``power``): 0 draws every subject once per epoch
    #: (the paper), 1 every class equally often. Recorded so that a resumed run keeps it.
    severity_sampling: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidArgumentError(
                f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise InvalidArgumentError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not (self.extent_weight > 0 and math.isfinite(self.extent_weight)):
            raise InvalidArgumentError(f"extent_weight must be a finite number > 0, got {self.extent_weight}")
        if not (self.severity_sampling >= 0 and math.isfinite(self.severity_sampling)):
            raise InvalidArgumentError(f"severity_sampling must be a finite number >= 0, got {self.severity_sampling}")
        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def lr_at(self, progress: float) -> float:
        """Learning rate at ``progress`` in [0, 1] of the run: constant (the paper), or a
        cosine decay to zero (short CPU runs converge much better with it)."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return self.lr

    @classmethod
    def from_profile(cls, params: dict, model: str | None = None) -> "TrainConfig":
        """The settings of ``model`` in a profile: its ``lr_by_model`` entry, else ``lr``.

        Raises
        ------
        InvalidArgumentError
            ``lr_by_model`` is not a mapping of model names to learning rates.
        """
        by_model = params.get("lr_by_model") or {}
        if not isinstance(by_model, dict) or not all(isinstance(k, str) for k in by_model):
            raise InvalidArgumentError(f"lr_by_model must map model names to learning rates, got {by_model!r}")
        return cls(
            epochs=int(params["epochs"]),
            batch_size=int(params["batch_size"]),
            lr=float(by_model.get(model, params["lr"])),
            weight_decay=float(params["weight_decay"]),
            seed=int(params["seed"]),
            num_threads=int(params.get("num_threads", 2)),
            schedule=str(params.get("lr_schedule", "constant")),
            extent_weight=float(params.get("extent_weight", 1.0)),
            severity_sampling=float(params.get("severity_sampling", 0.0)),
        )

    def loss_weights(self, n_outputs: int) -> torch.Tensor | None:
        """Per-output weights ``(n_outputs,)`` of the L1 loss (the last two are the extent),
        or None when every output weighs alike (the plain mean, bit for bit)."""
        if self.extent_weight == 1.0:
            return None
        w = torch.ones(n_outputs)
        w[-2:] = self.extent_weight
        return w


@dataclass
class TrainResult:
    """Where a training run left its outputs, and how it went."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    log_path: Path
    best_epoch: int
    best_val_loss: float
    seconds: float
    images_per_second: float
    history: pd.DataFrame = field(repr=False)


def dist_info() -> tuple[int, int, int]:
    """``(world size, rank, local rank)`` of this process under ``torchrun`` (``(1, 0, 0)`` alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclass
class _Run:
    """What every epoch of one training run needs."""

    model: nn.Module  # the bare model: validated and saved
    net: nn.Module  # what the batches go through: the model, or its DDP wrapper
    optimiser: torch.optim.Optimizer
    model_config: ModelConfig
    config: TrainConfig
    device: torch.device
    weights: torch.Tensor | None
    world: int
    rank: int
    out: Path
    meta: dict
    draw_weights: np.ndarray | None = None  # train_model's sample_weights


@dataclass
class _State:
    """Where the run stands: the next epoch, the best validation loss so far and the log."""

    start_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def train_model(
    model: nn.Module,
    model_config: ModelConfig,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    resume: bool = True,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    progress: bool = True,
    meta: dict | None = None,
    sample_weights: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` with L1 loss and Adam; write checkpoints and a CSV log to ``out_dir``.

    Parameters
    ----------
    model : the network (already built; its initial weights are drawn from ``config.seed``
        by the caller through :func:`spinelib.learn.networks.build_model`).
    model_config : the model's configuration, stored in every checkpoint (both are
        :func:`spinelib.learn.checkpoint.save_checkpoint` files) and compared on resume: a
        checkpoint of another configuration is refused.
    train_set, val_set : map-style datasets of ``(image (C, H, W), target (D,))`` tensors;
        datasets with a ``set_epoch(epoch)`` method get it called before each epoch.
    out_dir : folder for ``last.pt`` (every epoch, with optimiser state), ``best.pt``
        (lowest validation loss) and ``train_log.csv``.
    resume : continue from ``out_dir/last.pt`` when it exists.
    callbacks : called as ``cb(epoch, row)`` after each epoch's checkpoint is written
        (rank 0); raising from one stops training, as an interruption would.
    meta : plain values stored in every checkpoint's ``extra`` (for example the crop pixel
        size that prediction needs).
    sample_weights : ``(len(train_set),)`` relative chance of each training sample to be drawn
        (:func:`spinelib.learn.sampling.severity_weights`): each epoch draws ``len(train_set)`` samples with
        replacement. None: each sample once per epoch, in a shuffled order.

    Returns
    -------
    TrainResult
    """
    if len(train_set) == 0:
        raise InvalidArgumentError("training dataset is empty")
    if sample_weights is not None:
        sample_weights = np.asarray(sample_weights, dtype=float)
        if sample_weights.shape != (len(train_set),) or not np.all(np.isfinite(sample_weights)) \
                or np.any(sample_weights < 0) or not sample_weights.sum() > 0:
            raise InvalidArgumentError(f"sample_weights must be {len(train_set)} finite weights >= 0, not all 0, "
                                       f"got shape {sample_weights.shape}")
    run, state = _start(model, model_config, config, out_dir, resume=resume, meta=meta, draw_weights=sample_weights)
    t_start, images = time.perf_counter(), 0
    for epoch in range(state.start_epoch, config.epochs):
        running, seen, epoch_seconds = _train_epoch(run, train_set, epoch, progress)
        images += seen * run.world
        if run.rank == 0:
            row = _validate(run, val_set, epoch, running, seen, epoch_seconds)
            _save_epoch(run, state, row)
            for cb in callbacks:
                cb(epoch, row)
        if run.world > 1:
            torch.distributed.barrier()
    seconds = time.perf_counter() - t_start
    if run.world > 1:
        torch.distributed.barrier()
    out = run.out
    return TrainResult(
        out_dir=out, best_checkpoint=out / BEST, last_checkpoint=out / LAST, log_path=out / LOG,
        best_epoch=state.best_epoch, best_val_loss=state.best_val, seconds=seconds,
        images_per_second=images / seconds if seconds > 0 and images else float("nan"),
        history=pd.DataFrame(state.history),
    )


def adam(params: Any, config: TrainConfig) -> torch.optim.Adam:
    """The paper's optimiser, Adam, with ``config``'s rate, betas and weight decay.

    The fused implementation updates every tensor in one kernel: on a 2-core CPU the step of
    a 10-million-parameter network takes about half the time of the per-tensor loop, which
    matters at batch 8.
    """
    return torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=True)


def _setup_process(config: TrainConfig, world: int, local: int) -> torch.device:
    """This process's device, thread count and determinism; joins the DDP group under torchrun."""
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(config.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _start(model: nn.Module, model_config: ModelConfig, config: TrainConfig, out_dir: str | Path, *,
           resume: bool, meta: dict | None, draw_weights: np.ndarray | None) -> tuple[_Run, _State]:
    """Set up this process, put the model on its device with its optimiser, and resume from
    ``out_dir/last.pt`` when asked and present."""
    world, rank, local = dist_info()
    device = _setup_process(config, world, local)
    out = ensure_writable_dir(out_dir) if rank == 0 else Path(out_dir)
    # oneDNN runs NHWC convolutions natively: channels-last weights and inputs train faster on CPU
    model = model.to(device).to(memory_format=torch.channels_last)
    optimiser = adam(model.parameters(), config)
    last_path = out / LAST
    state = _resume(last_path, model, optimiser, model_config, config) if resume and last_path.exists() else _State()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
    weights = config.loss_weights(model_config.output_size)
    return (_Run(model, net, optimiser, model_config, config, device, weights, world, rank, out, meta or {},
                 draw_weights), state)


def _resume(last_path: Path, model: nn.Module, optimiser: torch.optim.Optimizer, model_config: ModelConfig,
            config: TrainConfig) -> _State:
    """Load weights, optimiser and progress from ``last_path``, refusing other training settings."""
    saved, _, extra = load_checkpoint(last_path, expect=model_config)
    if extra.get("train_config") != _cfg_dict(config):
        raise CheckpointError(
            f"{last_path} was written with training settings {extra.get('train_config')}, not "
            f"{_cfg_dict(config)}; use another output folder or delete it"
        )
    model.load_state_dict(saved.state_dict())
    optimiser.load_state_dict(extra["optimiser"])
    state = _State(int(extra["epoch"]) + 1, float(extra["best_val_loss"]), int(extra["best_epoch"]),
                   [dict(r) for r in extra["history"]])
    log.info("resuming %s from epoch %d", last_path.parent, state.start_epoch)
    return state


def _epoch_loader(run: _Run, train_set: Dataset, epoch: int) -> DataLoader:
    """The epoch's batches, every random draw (order, augmentation, dropout) seeded from ``(seed, epoch)``."""
    config = run.config
    eseed = _epoch_seed(config.seed, epoch)
    torch.manual_seed(eseed)  # dropout and any torch-side randomness
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    sampler: Sampler[int]
    if run.draw_weights is not None:
        sampler = WeightedDraws(run.draw_weights, eseed, run.rank, run.world)
    elif run.world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_set, num_replicas=run.world, rank=run.rank, shuffle=True, seed=config.seed
        )
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(eseed))
    return DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=False)


def _train_epoch(run: _Run, train_set: Dataset, epoch: int, progress: bool) -> tuple[float, int, float]:
    """One epoch of Adam steps: ``(sum of batch loss x batch size, samples seen, seconds)``."""
    config = run.config
    loader = _epoch_loader(run, train_set, epoch)
    steps = len(loader)
    run.net.train()
    t0 = time.perf_counter()
    running, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
               disable=True if not progress or run.rank != 0 else None, unit="batch")
    for step, (x, y) in enumerate(bar):
        x, y = x.to(run.device).contiguous(memory_format=torch.channels_last), y.to(run.device)
        # the rate is a function of the position in the run, so a resumed run follows it exactly
        for group in run.optimiser.param_groups:
            group["lr"] = config.lr_at((epoch * steps + step) / (config.epochs * steps))
        run.optimiser.zero_grad(set_to_none=True)
        loss = l1_loss(run.net(x), y, run.weights)
        loss.backward()
        run.optimiser.step()
        running += loss.item() * len(x)
        seen += len(x)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    return running, seen, time.perf_counter() - t0


def _validate(run: _Run, val_set: Dataset, epoch: int, running: float, seen: int, epoch_seconds: float) -> dict:
    """The epoch's log row: training and validation loss, time, throughput and learning rate."""
    val = evaluate_loss(run.model, val_set, batch_size=run.config.batch_size, device=run.device, weights=run.weights)
    return {
        "epoch": epoch,
        "train_loss": running / max(seen, 1),
        "val_loss": val,
        "seconds": epoch_seconds,
        "images_per_second": seen * run.world / max(epoch_seconds, 1e-9),
        "lr": run.optimiser.param_groups[0]["lr"],
    }


def _save_epoch(run: _Run, state: _State, row: dict) -> None:
    """Add ``row`` to the history; write ``best.pt`` when the validation loss improved, then
    ``last.pt`` and the CSV log."""
    epoch, val = row["epoch"], row["val_loss"]
    state.history.append(row)
    if val < state.best_val:
        state.best_val, state.best_epoch = val, epoch
        save_checkpoint(run.out / BEST, run.model, run.model_config, {**run.meta, "epoch": epoch, "val_loss": val})
    save_checkpoint(run.out / LAST, run.model, run.model_config, {
        **run.meta, "optimiser": run.optimiser.state_dict(), "train_config": _cfg_dict(run.config),
        "epoch": epoch, "best_val_loss": state.best_val, "best_epoch": state.best_epoch, "history": state.history,
    })
    _write_log(run.out / LOG, state.history)
    # named by its folder: networks trained side by side log into one section log
    log.info("%s epoch %d/%d train %.4f val %.4f (%.1fs)", run.out.name, epoch + 1, run.config.epochs,
             row["train_loss"], val, row["seconds"])


def _cfg_dict(config: TrainConfig) -> dict[str, Any]:
    """The training settings a checkpoint records and a resumed run must match."""
    d = asdict(config)
    d["betas"] = list(d["betas"])
    d.pop("num_threads")  # a property of the machine, not of the experiment
    if d["extent_weight"] == 1.0:
        d.pop("extent_weight")  # checkpoints written before the setting existed resume
    if d["severity_sampling"] == 0.0:
        d.pop("severity_sampling")
    return d


def _write_log(path: Path, history: list[dict]) -> None:
    """Write the per-epoch log rows as CSV, atomically."""
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")
