"""A run folder's per-subject alignment and its training, as single calls (``spinelib align``, ``train``).

Each resolves the run's parameters as ``spinelib run`` does
(:func:`spinelib.run.parameters.resolve_params`: the profile, the run's earlier values, the
overrides), reads the cohort's manifest under the ids the run publishes
(:func:`spinelib.run.privacy.run_manifest`), builds the typed settings once and hands them to
the study layer. The command line is then argument parsing and one call each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from ..util.workers import Engine, Shard

__all__ = ["align_step", "train_step"]


def _run_inputs(run_dir: Path, profile: str | None, data: str | Path | None,
                overrides: Mapping[str, Any] | None) -> tuple[dict[str, Any], "pd.DataFrame"]:
    """The run's resolved parameters and its manifest (ids as the run publishes them)."""
    from .parameters import resolve_params, run_profile
    from .privacy import run_manifest

    params = resolve_params(run_dir, profile=run_profile(run_dir, profile), data=data, overrides=overrides)
    manifest, _, _ = run_manifest(run_dir, params["data"], show_ids=bool(params["show_ids"]))
    return params, manifest


def align_step(run_dir: str | Path, *, profile: str | None = None, data: str | Path | None = None,
               overrides: Mapping[str, Any] | None = None, jobs: "int | Engine" = 1,
               shard: "Shard | None" = None, progress: bool = True) -> str:
    """Align and target the subjects of ``shard`` into the run's store, where its alignment
    section reads them back (:func:`spinelib.study.cohort_targets.align_into_store`).

    Parameters
    ----------
    run_dir : the run folder.
    profile, data, overrides : as :func:`spinelib.run.parameters.resolve_params` takes them
        (unset: the run's recorded ones).
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine`.
    shard : the manifest rows to do (all by default).

    Returns
    -------
    One line saying how many subjects were aligned, trusted and failed.

    Raises
    ------
    ProfileError, MissingFileError
        An unknown profile or parameter; no manifest.
    """
    from ..study.cohort_targets import align_into_store
    from ..study.config import TargetConfig

    run_dir = Path(run_dir)
    params, manifest = _run_inputs(run_dir, profile, data, overrides)
    return align_into_store(run_dir, manifest, TargetConfig.from_profile(params), jobs=jobs, shard=shard,
                            progress=progress)


def train_step(run_dir: str | Path, *, names: Sequence[str] | None = None, profile: str | None = None,
               data: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> "pd.DataFrame | None":
    """Train ``names`` on the run's targets, alone or as one rank under torchrun
    (:func:`spinelib.study.experiment.train_run`).

    Parameters
    ----------
    run_dir : the run folder, holding ``targets.npz`` (written by its alignment section).
    names : models of :data:`spinelib.learn.config.TRAINED_MODELS`, all of them if None
        (``mean_shape`` and ``visible_summaries`` are always fitted).
    profile, data, overrides : as :func:`align_step`.

    Returns
    -------
    The training summary on rank 0; None on the other ranks.

    Raises
    ------
    InvalidArgumentError
        A name that is not a trained model.
    MissingFileError
        No targets in the run, or no manifest.
    """
    from ..learn.config import TRAINED_MODELS
    from ..study.experiment import train_run
    from ..study.targets import read_run_targets

    run_dir = Path(run_dir)
    params, manifest = _run_inputs(run_dir, profile, data, overrides)
    # the run's targets name subjects as the run publishes them (spinelib.run.privacy)
    targets = read_run_targets(run_dir, params["n_levels"])
    return train_run(run_dir, manifest, targets, params, names=TRAINED_MODELS if names is None else names)
