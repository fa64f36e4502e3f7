"""The training section as functions: scans and targets in, trained models out.

``train_section`` trains ``resnet_bot``, ``resnet`` and ``biplanar`` (and fits
``mean_shape`` and the ``visible_summaries`` ridge regression) on a run's targets
(``train_run``: the same under torchrun, summary recorded, as ``spinelib train`` does);
:mod:`spinelib.study.prediction` runs the trained models on a split. Notebooks call these; the algorithms live in :mod:`spinelib.learn.data`,
:mod:`spinelib.learn.networks`, :mod:`spinelib.learn.ridge`, :mod:`spinelib.learn.train`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import as_completed
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..learn.data import AP_CHANNELS, PreparedScan, SpineDataset, prepare_scan
from ..learn.recipe import input_recipe
from ..errors import InvalidArgumentError
from ..io import read_dxa
from ..io.checks import check_integer
from ..learn.checkpoint import save_checkpoint
from ..learn.config import TRAINED_MODELS, config_from_profile
from ..learn.networks import build_model, count_parameters
from ..io.runfolder import run_paths, update_metrics, write_table
from ..learn.ridge import CHECKPOINT_FILE as SUMMARIES_FILE
from ..learn.ridge import MODEL_NAME as SUMMARIES
from ..learn.ridge import VisibleSummariesModel
from .targets import TargetSet
from ..learn.loss import evaluate_loss, l1_loss
from ..learn.sampling import severity_weights
from ..learn.train import BEST, TrainConfig, dist_info, train_model
from ..metrics.clinical import SEVERITY_EDGES_DEG, cobb_angle
from ..util.workers import process_pool

log = logging.getLogger(__name__)

__all__ = ["TRAINED_MODELS", "load_scans", "train_section", "train_jobs", "draw_weights", "record_training",
           "train_run", "checkpoint_path", "mirror_averaged"]


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    """Best checkpoint of model ``name`` in a run folder (``visible_summaries``: its ridge file)."""
    return run_paths(run_dir)["checkpoints"] / name / (SUMMARIES_FILE if name == SUMMARIES else BEST)


def load_scans(manifest_df: pd.DataFrame, subject_ids: Sequence[str], *, pixel_mm: float,
               image_size: Sequence[int], lateral: bool | None, allow_pickle: bool = False,
               progress: bool = True) -> list[PreparedScan]:
    """Read and prepare the DXA of each listed subject (crop found from the image alone).

    ``pixel_mm`` and ``image_size`` (rows, cols) are the crop's
    (:func:`spinelib.learn.data.prepare_scan`). ``lateral``: True, prepare the lateral view
    too (an error where a DXA has none); False, the AP view only; None, the lateral view of
    each DXA that has one (the stacks then have 2 or 4 channels). ``allow_pickle``: read DXA
    pickles (:func:`spinelib.io.read_dxa`).
    """
    by_id = manifest_df.set_index("subject_id")
    missing = [s for s in subject_ids if s not in by_id.index]
    if missing:
        raise InvalidArgumentError(f"subjects {missing[:5]} are not in the manifest")
    scans = []
    for sid in tqdm(subject_ids, desc="loading scans", unit="scan", disable=None if progress else True, leave=False):
        dxa = read_dxa(by_id.loc[sid, "dxa_path"], allow_pickle=allow_pickle)
        scans.append(prepare_scan(dxa, pixel_mm=pixel_mm, image_size=image_size,
                                  lateral=dxa.has_lateral if lateral is None else lateral))
    return scans


def _views(scans: Sequence[PreparedScan], n_channels: int) -> list[PreparedScan]:
    return [PreparedScan(s.stack[:n_channels], s.crop) for s in scans]


def _split_scans(manifest_df: pd.DataFrame, train_t: TargetSet, val_t: TargetSet, params: Mapping,
                 names: list[str], *, progress: bool) -> tuple[list[PreparedScan], list[PreparedScan]]:
    """The training and validation scans; drops ``biplanar`` from ``names`` when they have no lateral view."""
    lateral = None if "biplanar" in names else False  # the lateral views where the DXAs have them
    crop = dict(pixel_mm=float(params["crop_pixel_mm"]), image_size=params["image_size"], lateral=lateral,
                allow_pickle=bool(params.get("allow_pickle", False)), progress=progress)
    tr_scans = load_scans(manifest_df, list(train_t.subject_id), **crop)
    va_scans = load_scans(manifest_df, list(val_t.subject_id), **crop)
    if "biplanar" in names and not all(s.stack.shape[0] > AP_CHANNELS for s in (*tr_scans, *va_scans)):
        # real cohorts (UK Biobank's whole-body DXA) have no lateral view: the upper bound is
        # not trained rather than the section failing; the summary simply has no such row
        log.warning("not training biplanar: the cohort's training and validation DXAs have no lateral view")
        names.remove("biplanar")
        tr_scans, va_scans = _views(tr_scans, AP_CHANNELS), _views(va_scans, AP_CHANNELS)
    return tr_scans, va_scans


def _fit_mean_shape(run_dir: str | Path, tr_scans: Sequence[PreparedScan], tr_curves: Sequence,
                    va_scans: Sequence[PreparedScan], va_curves: Sequence, params: Mapping, cfg: TrainConfig,
                    meta: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """Fit and save the floor, the training set's mean target in crop coordinates.

    Returns its row of the training summary, the training targets (N, 6 K + 2) and their mean.
    """
    mean_cfg = config_from_profile(params, "mean_shape")
    mean_model = build_model(mean_cfg)
    plain = SpineDataset(_views(tr_scans, 2), tr_curves)
    train_targets = np.stack([plain[i][1].numpy() for i in range(len(plain))])
    mean_target = train_targets.mean(axis=0)
    mean_model.fit(mean_target[None])
    out = checkpoint_path(run_dir, "mean_shape")
    if dist_info()[1] == 0:  # under torchrun every rank fits the same mean; rank 0 alone writes it
        save_checkpoint(out, mean_model, mean_cfg, meta)
    row = {"model": "mean_shape", **_count(mean_model), "epochs": 0, "best_epoch": -1,
           "best_val_l1": _val(mean_model, SpineDataset(_views(va_scans, 2), va_curves), cfg),
           "seconds": 0.0, "images_per_second": float("nan")}
    return row, train_targets, mean_target


def _augmentation(params: Mapping) -> dict[str, bool]:
    """The training crops' augmentation switches (:class:`~spinelib.learn.data.SpineDataset`'s
    ``augment`` and ``mirror``) of a profile."""
    return {"augment": bool(params.get("augment", True)), "mirror": bool(params["augment_mirror"])}


def mirror_averaged(params: Mapping, name: str) -> bool:
    """Whether model ``name`` trained at ``params`` is read with mirror averaging
    (:mod:`spinelib.learn.recipe`): a network (:data:`TRAINED_MODELS`; the mean shape is fitted,
    not trained on crops) trained on mirrored crops, ``augment`` and ``augment_mirror`` both on."""
    return name in TRAINED_MODELS and all(_augmentation(params).values())


def _train_network(run_dir: str | Path, name: str, tr_scans: Sequence[PreparedScan], tr_curves: Sequence,
                   va_scans: Sequence[PreparedScan], va_curves: Sequence, mean_target: np.ndarray,
                   params: Mapping, meta: dict, sample_weights: np.ndarray | None, *, progress: bool) -> dict:
    """Train network ``name`` from the run's seed, started at the mean shape, drawing its
    training subjects by ``sample_weights`` (:func:`draw_weights`); its summary row."""
    cfg = TrainConfig.from_profile(params, name)  # the model's own learning rate (lr_by_model)
    mcfg = config_from_profile(params, name)
    n_ch = mcfg.in_chans
    torch.manual_seed(int(params["seed"]))
    model = build_model(mcfg)
    # start every network at the mean shape: it then learns the subject's departure from it
    model.init_output(mean_target)
    train_ds = SpineDataset(_views(tr_scans, n_ch), tr_curves, seed=int(params["seed"]), **_augmentation(params))
    val_ds = SpineDataset(_views(va_scans, n_ch), va_curves)
    log.info("training %s: %s", name, mcfg.describe())
    t0 = time.perf_counter()
    recipe = input_recipe(float(params["crop_pixel_mm"]), mirror_average=mirror_averaged(params, name))
    res = train_model(model, mcfg, train_ds, val_ds, checkpoint_path(run_dir, name).parent, cfg,
                      progress=progress, meta={**meta, **recipe}, sample_weights=sample_weights)
    return {"model": name, **_count(model), "epochs": cfg.epochs, "lr": cfg.lr, "best_epoch": res.best_epoch,
            "best_val_l1": res.best_val_loss, "seconds": time.perf_counter() - t0,
            "images_per_second": res.images_per_second}


def train_section(run_dir: str | Path, manifest_df: pd.DataFrame, targets: TargetSet, params: Mapping, *,
                  names: Sequence[str] = TRAINED_MODELS, progress: bool = True) -> pd.DataFrame:
    """Fit ``mean_shape`` and ``visible_summaries``, train the listed models; one summary row per model.

    Checkpoints and logs go to ``<run>/checkpoints/<name>/``; training resumes from the
    last checkpoint of an interrupted run. Every model starts from weights drawn from the
    run's seed, and sees the same crops (found from the images alone; training jitters them).
    With the profile's ``severity_sampling`` each epoch draws the networks' training subjects
    by :func:`spinelib.learn.sampling.severity_weights` of their target curves' Cobb angles.
    ``visible_summaries`` (:mod:`spinelib.learn.ridge`) is fitted on the training crops
    without jitter, its ridge penalty chosen on the validation split. ``biplanar`` is left
    out (with a warning) when the cohort's DXAs have no lateral view, as real whole-body
    DXAs do not. The networks train one after the other in this process, or side by side
    in ``train_jobs`` processes (:func:`train_jobs`) with the same results.

    Returns
    -------
    DataFrame: model, parameters (total, trunk, transformer, head), epochs, best epoch,
    best validation L1, seconds, images per second.
    """
    unknown = [n for n in names if n not in TRAINED_MODELS]
    if unknown:
        raise InvalidArgumentError(f"cannot train {unknown}; trainable models are {TRAINED_MODELS}")
    train_t, val_t = targets.select("train"), targets.select("val")
    if len(train_t) == 0 or len(val_t) == 0:
        raise InvalidArgumentError(
            f"need training and validation subjects, got {len(train_t)} and {len(val_t)} with targets"
        )
    names = list(names)
    tr_scans, va_scans = _split_scans(manifest_df, train_t, val_t, params, names, progress=progress)
    tr_curves = [train_t.curves(i) for i in range(len(train_t))]
    va_curves = [val_t.curves(i) for i in range(len(val_t))]
    cfg = TrainConfig.from_profile(params)
    meta = {**input_recipe(float(params["crop_pixel_mm"])), "profile": str(params.get("profile", ""))}
    mean_row, train_targets, mean_target = _fit_mean_shape(run_dir, tr_scans, tr_curves, va_scans, va_curves,
                                                           params, cfg, meta)
    rows = [mean_row, _fit_summaries(run_dir, tr_scans, train_targets, va_scans, va_curves, params, cfg,
                                     progress=progress)]
    jobs = train_jobs(params, len(names))
    data = dict(tr_scans=tr_scans, tr_curves=tr_curves, va_scans=va_scans, va_curves=va_curves,
                mean_target=mean_target, params=params, meta=meta, sample_weights=draw_weights(tr_curves, cfg))
    if jobs == 1:
        rows += [_train_network(run_dir, name, **data, progress=progress) for name in names]
    else:
        rows += _train_side_by_side(run_dir, names, data, jobs, progress=progress)
    return pd.DataFrame(rows)


def draw_weights(tr_curves: Sequence, cfg: TrainConfig) -> np.ndarray | None:
    """How often each training subject is drawn: by the severity class of its target curves'
    Cobb angle with the profile's ``severity_sampling``.

    Trained on the population's mix, the networks flatten the rare large curves toward the
    average spine (``TUNED_ON["severity_sampling"]``).

    Parameters
    ----------
    tr_curves : the N training subjects' target :class:`~spinelib.shape.curves.SpineCurves`.
    cfg : the training settings (``severity_sampling`` in [0, 1]).

    Returns
    -------
    (N,) relative draw weights for :func:`spinelib.learn.train.train_model`'s
    ``sample_weights`` (:func:`spinelib.learn.sampling.severity_weights`), or None when
    ``severity_sampling`` is 0 (each subject once per epoch).
    """
    if cfg.severity_sampling == 0:
        return None
    cobb = np.array([cobb_angle(c.curve("coronal_centre"), c.levels_mm).angle_deg for c in tr_curves])
    return severity_weights(cobb, SEVERITY_EDGES_DEG, cfg.severity_sampling)


def train_jobs(params: Mapping, n_networks: int) -> int:
    """How many networks :func:`train_section` trains at once: the profile's ``train_jobs``,
    at most one per network, and 1 under torchrun (its ranks already share every network).

    Raises
    ------
    InvalidArgumentError
        ``train_jobs`` is not an integer >= 1.
    """
    jobs = check_integer(params["train_jobs"], "train_jobs", 1)
    return 1 if dist_info()[0] > 1 else max(1, min(jobs, n_networks))


def _train_side_by_side(run_dir: str | Path, names: Sequence[str], data: Mapping, jobs: int, *,
                        progress: bool) -> list[dict]:
    """Train ``names`` in ``jobs`` spawned processes, each with the profile's ``num_threads``;
    their summary rows in ``names`` order. ``data`` holds :func:`_train_network`'s keyword
    arguments but ``run_dir``, ``name`` and ``progress``.

    On a small CPU two single-threaded trainings side by side finish sooner than the same two
    one after the other on two threads each (convolutions at batch 8 keep a second thread
    only partly busy). Each network's numbers depend on its own seed and thread count, never
    on which process or order it ran in. The two-view network starts first: it is the
    longest, and starting it first evens out the processes' loads.
    """
    params = data["params"]
    order = sorted(names, key=lambda n: -config_from_profile(params, n).views)
    log.info("training %s side by side in %d processes of %d thread(s)", ", ".join(order), jobs,
             int(params["num_threads"]))
    rows: dict[str, dict] = {}
    with process_pool(jobs, spawn=True) as pool, tqdm(total=len(order), desc="networks trained", unit="network",
                                                       disable=None if progress else True) as bar:
        futures = {pool.submit(_train_network, run_dir, name, **data, progress=False): name for name in order}
        try:
            for done in as_completed(futures):
                rows[futures[done]] = done.result()  # a training that failed raises here, as it would alone
                bar.update()
        except BaseException:
            for f in futures:  # trainings not yet started are dropped; running ones finish first
                f.cancel()
            raise
    return [rows[name] for name in names]


def record_training(run_dir: str | Path, summary: pd.DataFrame) -> None:
    """Record :func:`train_section`'s summary in the run: ``tables/training_summary.csv`` and
    the ``training`` block of ``metrics.json`` (seconds and parameters per model)."""
    write_table(run_dir, "training_summary", summary)
    update_metrics(run_dir, {"training": {r["model"]: {"seconds": float(r["seconds"]), "params": int(r["params_total"])}
                                          for _, r in summary.iterrows()}})


def train_run(run_dir: str | Path, manifest_df: pd.DataFrame, targets: TargetSet, params: dict, *,
              names: Sequence[str] = TRAINED_MODELS) -> pd.DataFrame | None:
    """Train on a run's targets as ``spinelib train`` does, alone or as one rank under torchrun.

    :func:`train_section` (progress bars on rank 0 only), then :func:`record_training` on
    rank 0; every rank waits until rank 0 has recorded the summary, and the process group is
    closed, on failure too (then without waiting). Several processes on one machine without
    CUDA share its cores: ``params["num_threads"]`` is lowered to each one's share, in place.

    Returns
    -------
    The training summary on rank 0; None on the other ranks.
    """
    import os

    import torch.distributed as dist

    world, rank, _ = dist_info()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_world > 1 and not torch.cuda.is_available():
        # processes of one machine share its cores: more threads than cores only thrash
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        params["num_threads"] = max(1, min(int(params["num_threads"]), cores // local_world))
    log.info("training %s on %d process%s (rank %d), profile %s", ",".join(names), world,
             "es" if world > 1 else "", rank, params["profile"])
    try:
        summary = train_section(run_dir, manifest_df, targets, params, names=names, progress=rank == 0)
        if rank == 0:
            record_training(run_dir, summary)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank leaves before rank 0 has written the summaries
    finally:
        # no barrier on failure: a rank that raised must not wait for the others forever
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return summary if rank == 0 else None


def _fit_summaries(run_dir: str | Path, tr_scans: Sequence[PreparedScan], train_targets: np.ndarray,
                   va_scans: Sequence[PreparedScan], va_curves: Sequence, params: Mapping, cfg: TrainConfig, *,
                   progress: bool) -> dict:
    """Fit and save the ``visible_summaries`` ridge; its row of the training summary."""
    t0 = time.perf_counter()
    model = VisibleSummariesModel(int(params["n_levels"]), crop_pixel_mm=float(params["crop_pixel_mm"]),
                                  image_size=tuple(params["image_size"]))
    val_ds = SpineDataset(_views(va_scans, 2), va_curves)
    val_targets = np.stack([val_ds[i][1].numpy() for i in range(len(val_ds))])
    val_features = model.features(va_scans, progress=progress)
    model.fit(model.features(tr_scans, progress=progress), train_targets, val_features, val_targets)
    # the training summary's loss is the networks' (extent outputs weighted as they train)
    weights = cfg.loss_weights(val_targets.shape[1])
    val_l1 = float(l1_loss(torch.from_numpy(model.predict(val_features)), torch.from_numpy(val_targets), weights))
    log.info("fitted %s (alpha chosen on validation from %s)", model.describe(), model.alphas)
    if dist_info()[1] == 0:
        model.save(checkpoint_path(run_dir, SUMMARIES))
    n = model.n_parameters
    return {"model": SUMMARIES, "params_trunk": 0, "params_transformer": 0, "params_head": n, "params_total": n,
            "epochs": 0, "best_epoch": -1, "best_val_l1": val_l1,
            "seconds": time.perf_counter() - t0, "images_per_second": float("nan")}


def _count(model: torch.nn.Module) -> dict[str, int]:
    return {f"params_{k}": v for k, v in count_parameters(model).items()}


@torch.no_grad()
def _val(model: torch.nn.Module, ds: SpineDataset, cfg: TrainConfig) -> float:
    return evaluate_loss(model, ds, batch_size=cfg.batch_size, device=torch.device("cpu"),
                         weights=cfg.loss_weights(model.config.output_size))
