"""The shifted cohort: a second cohort aligned, targeted and predicted once, cached in the run.

:func:`shifted_set` measures how the run's models generalise to a cohort they never
trained on (another seed, another population). It aligns and targets that cohort, runs
every model on it and keeps the results in ``<run>/shifted/`` (:func:`shifted_paths`)
under a key of their inputs, so that both evaluation notebooks read the same numbers and
a later call recomputes only when an input changed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import pandas as pd

from ..errors import InvalidArgumentError, MissingFileError
from ..io import read_manifest
from ..io.runfolder import run_paths
from ..study.cohort_targets import prepare_cohort_targets
from ..study.config import TargetConfig
from ..study.experiment import checkpoint_path
from ..study.prediction import predict_cohort, read_predictions, trained_models, write_predictions
from ..study.targets import TRUTH_TARGETS_FILE, read_targets, write_targets
from ..util.atomic import atomic_path, write_json_atomic
from ..util.hashing import file_sha256
from .cohort import EvalSet, _check_reference, _read_alignment, _select, _truth_reasons, _untrusted_reasons
from .subject_files import loadable_dxa

if TYPE_CHECKING:
    from ..util.workers import Engine

log = logging.getLogger(__name__)

__all__ = ["shifted_paths", "shifted_set"]

#: Bumped when the shifted cache's content changes (older caches are recomputed).
_SHIFT_CACHE_VERSION = 3
#: The cached files besides the key (``source.json``).
_CACHED = ("targets", "truth_targets", "alignment", "truth_table", "predictions")


def shifted_paths(run_dir: str | Path) -> dict[str, Path]:
    """Files of the shifted cohort's cache inside a run folder."""
    root = run_paths(run_dir)["root"] / "shifted"
    return {"root": root, "targets": root / "targets.npz", "truth_targets": root / TRUTH_TARGETS_FILE,
            "alignment": root / "alignment.csv", "truth_table": root / "truth_targets.csv",
            "predictions": root / "predictions.npz", "key": root / "source.json"}


def _shift_key(run_dir: Path, manifest_path: Path, config: TargetConfig, names: Sequence[str]) -> dict:
    """What the cache was made from: the manifest, the target settings and the checkpoints
    (which record the crops the models read)."""
    ckpts = {}
    for n in names:
        p = checkpoint_path(run_dir, n)
        if not p.is_file():
            raise MissingFileError(f"no checkpoint for model {n!r} at {p} (run the training section first)")
        ckpts[n] = file_sha256(p)
    return {"cache_version": _SHIFT_CACHE_VERSION, "manifest": str(manifest_path),
            "manifest_sha256": file_sha256(manifest_path),
            "params": config.key(), "checkpoints": ckpts}


def _is_cached(sp: Mapping[str, Path], key: dict) -> bool:
    """Whether every cached file is there and was made from the inputs ``key`` records."""
    if not (sp["key"].is_file() and all(sp[k].is_file() for k in _CACHED)):
        return False
    try:
        return json.loads(sp["key"].read_text()) == json.loads(json.dumps(key))
    except (OSError, ValueError):
        return False


def _compute(run: Path, mp: Path, manifest: pd.DataFrame, config: TargetConfig, names: Sequence[str],
             sp: Mapping[str, Path], key: dict, *, jobs: "int | Engine", progress: bool) -> None:
    """Align, target and predict the shifted cohort; write the cache, its key last."""
    log.info("shifted cohort %s: aligning and predicting %d subjects", mp, len(manifest))
    res = prepare_cohort_targets(manifest, config, jobs=jobs, progress=progress)
    if len(res.targets) == 0 and len(res.truth) == 0:
        raise InvalidArgumentError(f"no subject of the shifted cohort {mp} could be aligned")
    ids, _ = loadable_dxa(manifest, list(manifest["subject_id"].astype(str)),
                          allow_pickle=config.allow_pickle, progress=progress)
    pred = predict_cohort(run, manifest, ids, names=names, allow_pickle=config.allow_pickle, progress=progress)
    sp["root"].mkdir(parents=True, exist_ok=True)
    write_targets(sp["targets"], res.targets)
    write_targets(sp["truth_targets"], res.truth)
    for k, df in (("alignment", res.alignment), ("truth_table", res.truth_table)):
        with atomic_path(sp[k]) as tmp:
            df.to_csv(tmp, index=False)
    write_predictions(sp["predictions"], pred)
    write_json_atomic(sp["key"], key)  # last: the cache counts only once all files are there


def _read_cached(sp: Mapping[str, Path], manifest: pd.DataFrame, reference: str) -> EvalSet:
    """The shifted evaluation set from the cache, against ``reference`` (or the headline)."""
    truth = read_targets(sp["truth_targets"])
    ref = ("truth" if len(truth) else "estimated") if reference == "headline" else reference
    targets = truth if ref == "truth" else read_targets(sp["targets"])
    pred = read_predictions(sp["predictions"])
    align = _read_alignment(sp["alignment"])
    reasons = _truth_reasons(sp["truth_table"]) if ref == "truth" else _untrusted_reasons(align)
    wanted = [str(s) for s in manifest["subject_id"]]
    return _select(targets, pred, align, manifest, wanted, ref, reasons, name="shifted")


def shifted_set(run_dir: str | Path, manifest_path: str | Path, config: TargetConfig, *,
                names: Sequence[str] | None = None, jobs: "int | Engine" = 1, progress: bool = True,
                reference: str = "headline") -> EvalSet:
    """Every subject of a second (shifted) cohort as an evaluation set, computed once per run.

    The cohort is aligned and targeted, with truth targets where it is synthetic
    (:func:`spinelib.study.cohort_targets.prepare_cohort_targets`), and every model predicts
    every subject whose DXA loads (:func:`spinelib.study.prediction.predict_cohort`); the
    results go to ``<run>/shifted/`` (``targets.npz``, ``truth_targets.npz``, ``alignment.csv``,
    ``truth_targets.csv``, ``predictions.npz``) with ``source.json`` recording the
    manifest's hash, the parameters used and the checkpoints' hashes. A later call with the
    same inputs reads the cache; any change recomputes it. Every subject counts whatever
    its split column says (the models never trained on this cohort). ``config``: the run's
    target settings (:meth:`~spinelib.study.config.TargetConfig.from_profile`). ``reference`` as in
    :func:`spinelib.evaluate.cohort.test_set` (``"headline"``: truth where the cohort has it).
    ``names``: the models to predict with, by default every model the run trained
    (:func:`spinelib.study.prediction.trained_models`).

    Raises
    ------
    MissingFileError
        The manifest or a checkpoint does not exist.
    InvalidArgumentError
        ``config`` is not a TargetConfig, no subject of the cohort could be aligned, or none
        has targets of the reference.
    """
    if not isinstance(config, TargetConfig):
        raise InvalidArgumentError(f"config must be a TargetConfig, got {type(config).__name__}")
    run = Path(run_dir)
    mp = Path(manifest_path).expanduser()
    if not mp.is_file():
        raise MissingFileError(f"shifted cohort manifest {mp} does not exist")
    _check_reference(reference)
    mp = mp.resolve()
    manifest = read_manifest(mp)
    names = trained_models(run) if names is None else list(names)
    sp = shifted_paths(run)
    key = _shift_key(run, mp, config, names)
    if _is_cached(sp, key):
        log.info("shifted cohort: reusing %s", sp["root"])
    else:
        _compute(run, mp, manifest, config, names, sp, key, jobs=jobs, progress=progress)
    return _read_cached(sp, manifest, reference)
