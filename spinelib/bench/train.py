"""Benchmark entry of training (issue 4): ``train_throughput``, training speed against the bare step.

``train_throughput`` (registered in :data:`spinelib.bench.harness.ENTRIES`) measures the
training images per second of each trained model at the profile's crop size (one epoch of
:func:`spinelib.learn.train.train_model` on synthetic scans, from
:func:`spinelib.bench.predict.synthetic_examples`), against the bare training step of the
same network on the same batch (:func:`bare_step_images_per_second`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError
from ..profiles import get_profile
from .harness import BenchWorkload
from .predict import synthetic_examples

__all__ = ["bare_step_images_per_second", "train_throughput_workload"]


def bare_step_images_per_second(model, batch: tuple, *, lr: float = 1e-3, steps: int = 4) -> float:
    """Images per second of the bare training step of ``model`` on one fixed batch.

    The step is what :func:`spinelib.learn.train.train_model` does per batch without the data
    pipeline and bookkeeping: zero the gradients, forward, L1 loss, backward, Adam step,
    on channels-last inputs, with the training loop's optimiser (:func:`spinelib.learn.train.adam`).
    Two warm-up steps are not timed.

    Parameters
    ----------
    model : the network, in training mode after the call.
    batch : ``(images (B, C, H, W) tensor, targets (B, D) tensor)``.
    steps : timed steps (>= 1).
    """
    import torch

    from ..learn.train import TrainConfig, adam

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidArgumentError(f"steps must be an integer >= 1, got {steps!r}")
    x, y = batch
    x = x.contiguous(memory_format=torch.channels_last)
    model.train().to(memory_format=torch.channels_last)
    opt = adam(model.parameters(), TrainConfig(epochs=1, batch_size=len(x), lr=lr))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(int(steps)):
        step()
    return int(steps) * len(x) / (time.perf_counter() - t0)


def _cycled(items: list, n_subj: int, n_images: int) -> list:
    """The first ``n_subj`` items repeated in turn to ``n_images`` of them."""
    return (items[:n_subj] * -(-n_images // n_subj))[:n_images]


def _throughput_datasets(scans: list, curves: list, n_ch: int, n_subj: int, n_images: int,
                         seed: int, mirror: bool) -> tuple[Any, Any]:
    """``n_images`` augmented training crops cycled from the first ``n_subj`` scans (``n_ch``
    channels; ``mirror`` as the profile's ``augment_mirror``) and the validation set of the
    other scans."""
    from ..learn.data import PreparedScan, SpineDataset

    views = [PreparedScan(sc.stack[:n_ch], sc.crop) for sc in scans]
    return (SpineDataset(_cycled(views, n_subj, n_images), _cycled(curves, n_subj, n_images),
                         augment=True, seed=seed, mirror=mirror),
            SpineDataset(views[n_subj:], curves[n_subj:]))


def _loop_and_bare(cfg: Any, train_ds: Any, val_ds: Any, out: Path, tcfg: Any, params: Mapping,
                   weights: Any) -> tuple[float, float]:
    """Images per second of one training epoch's loop (drawing by ``weights``, as the
    training section does) and of the bare step, same network and crops."""
    import torch

    from ..learn.networks import build_model
    from ..learn.train import train_model

    torch.manual_seed(int(params["seed"]))
    res = train_model(build_model(cfg), cfg, train_ds, val_ds, out, tcfg, resume=False, progress=False,
                      meta={"crop_pixel_mm": float(params["crop_pixel_mm"])}, sample_weights=weights)
    loop = float(res.history["images_per_second"].iloc[-1])
    items = [train_ds[i] for i in range(min(tcfg.batch_size, len(train_ds)))]
    batch = (torch.stack([a for a, _ in items]), torch.stack([b for _, b in items]))
    torch.manual_seed(int(params["seed"]))
    return loop, bare_step_images_per_second(build_model(cfg), batch, lr=tcfg.lr)


def train_throughput_workload(workdir: Path, profile: str, *, n_images: int = 32,
                              models: tuple[str, ...] | None = None) -> BenchWorkload:
    """``train_throughput``: one epoch of ``n_images`` augmented crops per trained model, set
    against the bare training step of the same network on one batch of the same crops.

    ``extra[model]`` holds, per repeat, ``train_loop_images_per_second`` (the epoch's loop
    as :func:`spinelib.learn.train.train_model` reports it: data, step and bookkeeping, without
    validation and checkpoints), ``bare_images_per_second``
    (:func:`bare_step_images_per_second`) and their ``ratio`` (the goal is >= 0.8: the
    loop wastes little beside the network's own arithmetic). ``models`` defaults to
    :data:`spinelib.learn.config.TRAINED_MODELS`.
    """
    from ..learn.data import prepare_scan
    from ..learn.config import TRAINED_MODELS, config_from_profile
    from ..learn.train import TrainConfig
    from ..study.experiment import draw_weights

    models = TRAINED_MODELS if models is None else tuple(models)
    params = get_profile(profile)
    workdir = Path(workdir)
    n_subj = 8
    dxas, curves = synthetic_examples(n_subj + 2, params)
    scans = [prepare_scan(d, pixel_mm=float(params["crop_pixel_mm"]), image_size=params["image_size"], lateral=True)
             for d in dxas]
    tcfg = TrainConfig.from_profile({**params, "epochs": 1})
    weights = draw_weights(_cycled(curves, n_subj, n_images), tcfg)  # by the training crops' subjects
    configs = {m: config_from_profile(params, m) for m in models}
    extra: dict = {"batch_size": tcfg.batch_size, "num_threads": tcfg.num_threads,
                   **{m: {"model": c.describe(), "train_loop_images_per_second": [], "bare_images_per_second": [],
                          "ratio": []} for m, c in configs.items()}}
    state = {"repeat": 0}

    def run() -> int:
        for name, cfg in configs.items():
            train_ds, val_ds = _throughput_datasets(scans, curves, cfg.in_chans, n_subj, n_images, int(params["seed"]),
                                                    bool(params["augment_mirror"]))
            out = workdir / f"{name}-{state['repeat']}"
            loop, bare = _loop_and_bare(cfg, train_ds, val_ds, out, tcfg, params, weights)
            for key, value in (("train_loop_images_per_second", loop), ("bare_images_per_second", bare),
                               ("ratio", loop / bare)):
                extra[name][key].append(value)
            shutil.rmtree(out, ignore_errors=True)
        state["repeat"] += 1
        return len(configs) * n_images

    names = ", ".join(f"{m} ({c.backbone})" for m, c in configs.items())
    return BenchWorkload(run=run, unit="images", teardown=lambda: shutil.rmtree(workdir, True), extra=extra,
                         description=f"training, {profile}: {names} at {params['image_size'][0]}x"
                                     f"{params['image_size'][1]}, batch {tcfg.batch_size}, {n_images} images per "
                                     "epoch each (with validation and checkpoints); per model the loop's images/s "
                                     "against the bare step's")
