"""Re-running a finished run from what it recorded, to check that it reproduces.

:func:`check_run` re-runs a finished run folder from what it recorded (``params.json``:
profile, data, every parameter) into a new folder and compares the two with
:func:`spinelib.run.compare.compare_runs`::

    spinelib run --check results/smoke            # -> results/smoke-check/check_report.json
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from ..io.runfolder import read_json, run_paths
from ..util.atomic import write_json_atomic
from .compare import CHECK_REPORT, TIMING_KEYS, CheckReport, check_tolerance, compare_runs, finished_run
from .parameters import RUN_PARAMETERS

__all__ = ["check_run"]

log = logging.getLogger(__name__)


def _recorded_run(run_dir: Path) -> dict[str, Any]:
    """The run's ``params.json``, which must record its profile and data."""
    p = run_paths(run_dir)["params"]
    if not p.is_file():
        raise MissingFileError(f"{p} does not exist: {run_dir} is not a run folder written by `spinelib run`")
    params = read_json(p)
    if not isinstance(params, dict) or not params.get("profile") or not params.get("data"):
        raise UnreadableFileError(f"{p} does not record the run's profile and data")
    return params


def _provenance_summary(run_dir: Path) -> dict[str, Any]:
    """Commit, data, seeds and version from the run's ``provenance.json`` (empty if unreadable)."""
    p = run_paths(run_dir)["provenance"]
    if not p.is_file():
        return {}
    try:
        prov = read_json(p)
    except UnreadableFileError:
        return {}
    return {"git": prov.get("git"), "data": prov.get("data"), "seeds": prov.get("seeds"),
            "spinelib_version": prov.get("spinelib_version")}


def check_run(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    ignore: Sequence[str] = TIMING_KEYS,
    sections: str | Iterable[str] | None = None,
    stream: TextIO | None = sys.stderr,
    progress_bar: bool | None = None,
) -> CheckReport:
    """Re-run a finished run from scratch with what it recorded, and compare the two.

    The profile, data manifest and every parameter come from ``<run_dir>/params.json``; the
    new run goes to ``out`` (default ``<run_dir>-check``), every section executed even if
    ``out`` holds an earlier check. The comparison (:func:`compare_runs`) is written to
    ``<out>/check_report.json``.

    Parameters
    ----------
    run_dir : a run folder written by ``spinelib run`` (``params.json``, ``metrics.json``).
    out : the new run folder (must not be ``run_dir``).
    rtol, atol, ignore : see :func:`compare_runs`.
    sections : sections to re-run (default all); sections not re-run are not compared
        meaningfully, so this is for tests and partial runs.
    stream, progress_bar : progress output (see :func:`spinelib.run.pipeline.run_pipeline`).

    Returns
    -------
    CheckReport (``ok`` when no number differs); its ``extra`` holds both runs' provenance.

    Raises
    ------
    MissingFileError
        If ``run_dir`` is not a finished run folder or its data manifest is gone.
    InvalidArgumentError
        If ``out`` is ``run_dir`` or a tolerance is invalid.
    PipelineError, OutputError
        When the re-run fails or cannot write ``out``.
    """
    from .pipeline import run_pipeline

    check_tolerance(rtol, atol)
    src = finished_run(run_dir, "run_dir").expanduser().resolve()
    recorded = _recorded_run(src)
    dest = Path(out).expanduser() if out is not None else src.with_name(src.name + "-check")
    if dest.resolve() == src:
        raise InvalidArgumentError(f"out: the check must go to another folder than the run {src}")
    overrides = {k: v for k, v in recorded.items() if k not in RUN_PARAMETERS}
    log.info("re-running %s into %s (profile %s, data %s)", src, dest, recorded["profile"], recorded["data"])
    run_pipeline(dest, profile=recorded["profile"], data=recorded["data"], overrides=overrides,
                 sections=sections, force=True, stream=stream, progress_bar=progress_bar)
    report = compare_runs(src, dest, rtol=rtol, atol=atol, ignore=ignore)
    report.extra = {"provenance_a": _provenance_summary(src), "provenance_b": _provenance_summary(dest)}
    write_json_atomic(Path(dest) / CHECK_REPORT, report.to_dict())
    return report
