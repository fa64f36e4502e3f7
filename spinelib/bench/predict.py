"""Benchmark entries of prediction (issue 4): warm and cold prediction, cohort against cold commands.

Entries (registered in :data:`spinelib.bench.harness.ENTRIES`):

``predict_warm_default`` / ``predict_warm_paper``
    one scan in a warm process -- read the DXA file, crop, forward pass, 3D
    reconstruction, clinical measures -- at the ``default`` and ``paper`` model
    configurations (``resnet_bot``, random weights: timing does not depend on them).
    Each repeat predicts ``N_WARM_SCANS`` scans; the entry also reports the per-scan
    median and the bare forward pass (``forward_ms``).
``predict_cold``
    the ``spinelib predict`` command as a subprocess (interpreter start, imports,
    checkpoint load, prediction, the four output files).

:func:`cohort_speedup` compares cohort prediction (``spinelib predict FOLDER``: one warm
model) with one cold ``spinelib predict DXA`` process per scan.

The synthetic scans come from :func:`synthetic_examples`: subjects of
:func:`spinelib.synth.subject.make_subject` with their targets read through the true
DXA -> MRI transform (no alignment needed), also used by the tests and by the training
entry (:mod:`spinelib.bench.train`).
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from .harness import BenchWorkload
from ..errors import InvalidArgumentError
from ..profiles import get_profile
from ..run.sources import PACKAGE_DIR

log = logging.getLogger(__name__)

__all__ = [
    "N_WARM_SCANS",
    "synthetic_examples",
    "write_synthetic_dxa",
    "random_checkpoint",
    "warm_default_workload",
    "warm_paper_workload",
    "cold_workload",
    "cohort_speedup",
]

#: Scans predicted per repeat of a warm entry.
N_WARM_SCANS = 10
#: Distinct subjects cycled through by the warm entries (different crops, same sizes).
_N_SUBJECTS = 3


def synthetic_examples(n: int, params: Mapping, *, start: int = 0):
    """``n`` synthetic subjects as DXA images and true targets.

    Parameters
    ----------
    n : number of subjects (>= 1), indices ``start .. start + n - 1`` of the cohort
        described by ``params`` (a profile: ``seed``, sizes, ``n_levels``).

    Returns
    -------
    (list of :class:`spinelib.io.DXAImage` with lateral views, list of
    :class:`spinelib.shape.curves.SpineCurves` with ``K = params["n_levels"]``), the targets
    read off each subject's MRI spine column through the TRUE transform and table plane.
    """
    from ..shape.extract import column_curves
    from ..shape.frame import SubjectFrame
    from ..io import DXAImage
    from ..synth.config import SynthConfig
    from ..synth.subject import make_subject
    from ..geometry.transform import PlanarTransform

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidArgumentError(f"n must be an integer >= 1, got {n!r}")
    dxas, curves = [], []
    config = SynthConfig.from_profile(params)
    for i in range(int(start), int(start) + int(n)):
        s = make_subject(i, config)
        dxas.append(DXAImage(s.bone, s.tissue, np.asarray(s.pixel_spacing_mm, float),
                             s.lateral_bone, s.lateral_tissue, np.asarray(s.lateral_pixel_spacing_mm, float)))
        frame = SubjectFrame(PlanarTransform.from_dict(s.truth["transform"]), s.bone.shape,
                             tuple(s.pixel_spacing_mm), float(s.truth["table_y_mm"]))
        curves.append(column_curves(s.seg, s.affine, frame, int(params["n_levels"])))
    return dxas, curves


def write_synthetic_dxa(path: str | Path, params: Mapping, *, index: int = 0, lateral: bool = True) -> Path:
    """Write synthetic subject ``index`` of ``params``'s cohort as a ``dxa.npz``; returns the path."""
    from ..io import write_dxa
    from ..synth.config import SynthConfig
    from ..synth.subject import make_subject

    s = make_subject(int(index), SynthConfig.from_profile(params))
    extra = dict(lateral_bone=s.lateral_bone, lateral_tissue=s.lateral_tissue,
                 lateral_pixel_spacing_mm=s.lateral_pixel_spacing_mm) if lateral else {}
    return write_dxa(path, s.bone, s.tissue, s.pixel_spacing_mm, **extra)


def random_checkpoint(path: str | Path, params: Mapping, name: str = "resnet_bot", *, seed: int = 0) -> Path:
    """A checkpoint of model ``name`` at ``params``'s configuration with seeded random weights.

    Prediction-ready: it records the input recipe as training does (mirror averaging included,
    so a network is timed as the book's is read). ``mean_shape`` gets the mean of nothing in
    particular (0.5 everywhere), so it is only good for timing.
    """
    import torch

    from ..learn.checkpoint import save_checkpoint
    from ..learn.config import config_from_profile
    from ..learn.networks import build_model
    from ..learn.recipe import input_recipe
    from ..study.experiment import mirror_averaged

    cfg = config_from_profile(dict(params), name)
    torch.manual_seed(int(seed))
    model = build_model(cfg)
    if cfg.head == "mean":
        model.fit(np.full((1, cfg.output_size), 0.5))
    recipe = input_recipe(float(params["crop_pixel_mm"]), mirror_average=mirror_averaged(params, name))
    return save_checkpoint(path, model, cfg, {**recipe, "profile": str(params.get("profile", ""))})


def _ms_stats(seconds: list[float]) -> dict[str, float]:
    """Median, min and 90th percentile of durations in seconds, in milliseconds."""
    return {"median": 1e3 * statistics.median(seconds), "min": 1e3 * min(seconds),
            "p90": 1e3 * float(np.percentile(seconds, 90))}


def _warm_workload(workdir: Path, profile: str) -> BenchWorkload:
    import torch

    from ..io import read_dxa
    from ..learn.config import config_from_profile
    from ..learn.networks import build_model
    from ..learn.predict import Predictor
    from ..study.experiment import mirror_averaged

    params = get_profile(profile)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = [write_synthetic_dxa(workdir / f"dxa{i}.npz", params, index=i, lateral=False) for i in range(_N_SUBJECTS)]
    cfg = config_from_profile(params, "resnet_bot")
    torch.manual_seed(int(params["seed"]))
    predictor = Predictor(build_model(cfg), cfg, pixel_mm=float(params["crop_pixel_mm"]),
                          mirror_average=mirror_averaged(params, "resnet_bot"))
    predictor.warmup()
    threads = torch.get_num_threads()
    crop = np.zeros((cfg.in_chans, *cfg.image_size), np.float32)
    extra: dict = {"profile_params": {k: params[k] for k in ("backbone", "image_size", "crop_pixel_mm", "n_levels",
                                                             "bot_blocks", "bot_heads", "bot_dim_head", "pool",
                                                             "feature_stride_by_model")},
                   "model": cfg.describe(), "mirror_average": predictor.mirror_average, "torch_threads": threads,
                   "scans_per_repeat": N_WARM_SCANS,
                   "load_average_1min_at_setup": os.getloadavg()[0]}

    def timed(fn, n: int) -> dict:
        ts = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            ts.append(time.perf_counter() - t0)
        return _ms_stats(ts)

    # outside the timed repeats: the bare forward pass, and everything at one thread (on a
    # machine shared with other busy processes one thread is often faster than several)
    extra["forward_ms"] = timed(lambda i: predictor.forward(crop), 2 * N_WARM_SCANS)
    torch.set_num_threads(1)
    predictor.warmup()
    extra["forward_ms_1thread"] = timed(lambda i: predictor.forward(crop), 2 * N_WARM_SCANS)
    extra["scan_ms_1thread"] = timed(lambda i: predictor.predict(read_dxa(files[i % len(files)])), N_WARM_SCANS)
    torch.set_num_threads(threads)
    predictor.warmup()
    scan_s: list[float] = []

    def run() -> int:
        for i in range(N_WARM_SCANS):
            t0 = time.perf_counter()
            pred = predictor.predict(read_dxa(files[i % len(files)]))
            scan_s.append(time.perf_counter() - t0)
            if not pred.mask.any():
                raise InvalidArgumentError("warm prediction produced an empty 3D spine")
        extra["scan_ms"] = _ms_stats(scan_s)
        extra["load_average_1min_after"] = os.getloadavg()[0]
        return N_WARM_SCANS

    return BenchWorkload(run=run, unit="scans", extra=extra, teardown=lambda: shutil.rmtree(workdir, True),
                         description=f"warm single-scan prediction, {profile} configuration ({cfg.backbone}, "
                                     f"{cfg.image_size[0]}x{cfg.image_size[1]}, K={cfg.n_levels})")


def warm_default_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``predict_warm_default``: always the ``default`` configuration, whatever ``profile``."""
    return _warm_workload(workdir, "default")


def warm_paper_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``predict_warm_paper``: always the ``paper`` configuration, whatever ``profile``."""
    return _warm_workload(workdir, "paper")


def _spinelib_predict(args: list[str]) -> None:
    """Run ``spinelib predict ARGS`` as a subprocess of this interpreter, this package first on its path.

    Raises
    ------
    InvalidArgumentError
        The command failed (its exit status and the end of its stderr).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run([sys.executable, "-m", "spinelib.cli", "predict", *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise InvalidArgumentError(f"spinelib predict failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def cold_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``predict_cold``: ``python -m spinelib.cli predict`` as a subprocess, at ``profile``'s model."""
    params = get_profile(profile)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dxa = write_synthetic_dxa(workdir / "dxa.npz", params, lateral=False)
    ckpt = random_checkpoint(workdir / "best.pt", params, "resnet_bot", seed=int(params["seed"]))
    out = workdir / "out"

    def run() -> int:
        shutil.rmtree(out, ignore_errors=True)
        _spinelib_predict([str(dxa), "--checkpoint", str(ckpt), "--out", str(out)])
        return 1

    return BenchWorkload(run=run, unit="commands", teardown=lambda: shutil.rmtree(workdir, True),
                         extra={"command": "spinelib predict DXA --checkpoint CKPT --out DIR", "profile": profile},
                         description=f"`spinelib predict` as a subprocess, {profile} resnet_bot, four outputs written")


def cohort_speedup(workdir: str | Path, *, profile: str = "default", n_scans: int = 200, n_cold: int = 5,
                   batch_size: int = 8, n_distinct: int = 4) -> dict:
    """Seconds per scan of cohort prediction versus cold single-scan commands.

    Writes ``n_scans`` DXA files (``n_distinct`` synthetic subjects of ``profile``, copied)
    and a random-weight ``resnet_bot`` checkpoint at ``profile``'s configuration, then times

    - ``spinelib predict FOLDER`` once, as a subprocess (one warm model, four outputs per
      scan, ``measures.csv``), and
    - ``spinelib predict DXA`` as a subprocess for ``n_cold`` scans; 200 cold calls are
      estimated as ``n_scans`` times their mean.

    Returns
    -------
    dict with ``cohort_s_per_scan``, ``cold_s_per_scan``, ``speedup`` (cold / cohort),
    ``cohort_total_s``, ``cold_estimated_total_s``, ``cold_runs_s``, ``n_scans``, ``n_failed``.
    """
    import pandas as pd

    for name, v, lo in (("n_scans", n_scans, 1), ("n_cold", n_cold, 1), ("n_distinct", n_distinct, 1),
                        ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InvalidArgumentError(f"{name} must be an integer >= {lo}, got {v!r}")
    params = get_profile(profile)
    workdir = Path(workdir)
    scans = workdir / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    sources = [write_synthetic_dxa(workdir / f"subject{i}.npz", params, index=i, lateral=False)
               for i in range(min(n_distinct, n_scans))]
    for i in range(n_scans):
        shutil.copyfile(sources[i % len(sources)], scans / f"scan{i:04d}.npz")
    ckpt = random_checkpoint(workdir / "best.pt", params, "resnet_bot", seed=int(params["seed"]))

    def run(args: list[str]) -> float:
        t0 = time.perf_counter()
        _spinelib_predict(args)
        return time.perf_counter() - t0

    cold = [run([str(scans / f"scan{i:04d}.npz"), "--checkpoint", str(ckpt), "--out", str(workdir / f"cold{i}")])
            for i in range(n_cold)]
    cohort_s = run([str(scans), "--checkpoint", str(ckpt), "--out", str(workdir / "cohort"),
                    "--batch-size", str(batch_size), "--no-progress"])
    measured = pd.read_csv(workdir / "cohort" / "measures.csv")
    cold_mean = float(np.mean(cold))
    return {"profile": profile, "n_scans": n_scans, "n_cold": n_cold, "batch_size": batch_size,
            "cohort_total_s": cohort_s, "cohort_s_per_scan": cohort_s / n_scans,
            "cold_runs_s": cold, "cold_s_per_scan": cold_mean, "cold_estimated_total_s": cold_mean * n_scans,
            "speedup": cold_mean / (cohort_s / n_scans), "n_predicted": int(len(measured)),
            "n_failed": n_scans - int(len(measured)), "load_average_1min": os.getloadavg()[0]}
