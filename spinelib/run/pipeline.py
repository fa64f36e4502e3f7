"""The papermill runner: one run folder, the paper's sections as notebooks, in order.

A run executes the notebooks of :data:`spinelib.run.sections.SECTIONS` in order with papermill
(:mod:`spinelib.run.kernel`), injecting the profile's parameters (overridable one by one) plus
``run_dir``, ``data`` and ``profile`` (:mod:`spinelib.run.parameters`). Executed notebooks go to
``<run>/notebooks/``; ``params.json`` and ``provenance.json`` (:mod:`spinelib.run.provenance`)
record what ran, with what, where and how long. What a section's kernel, and the processes it
starts, log goes to ``<run>/logs/<notebook stem>.log`` and, as it is written, to the terminal
(:mod:`spinelib.util.section_log`).

Caching
-------
Each section that completed leaves a record in ``<run>/pipeline_state.json``
(:mod:`spinelib.run.state`): the hash of its notebook source, of the parameters its
``parameters`` cell declares, of the data manifest, and the run tokens of the records of the
sections before it. A section is skipped when the record it would write equals the one on disk
(and its executed notebook is present); every execution draws a new run token, so re-running
section ``k`` makes sections ``k+1 ...`` out of date while sections before ``k`` stay as they are::

    spinelib run --profile smoke --data cohort/manifest.csv --out results/smoke
    spinelib run --out results/smoke --sections training -p epochs 3   # training + later

A run folder remembers its profile, data and overrides (``params.json``); a later call
on the same folder starts from them and applies its own options on top.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

from ..errors import PipelineError
from ..io.runfolder import run_paths
from ..util.atomic import ensure_writable_dir, write_json_atomic
from .kernel import execute_notebook
from .parameters import resolve_params
from .plan import PlannedSection, plan_run
from .progress import Progress, fmt_duration, time_hint
from .provenance import utc_now, write_provenance
from .sections import NOTEBOOKS_DIR, SECTIONS, Section
from ..util.hashing import file_sha256
from .state import SectionRecord, read_state, save_state, section_key, stale_reason, upstream_chain

__all__ = ["SectionOutcome", "RunResult", "run_pipeline", "estimate_run_mb"]


@dataclass
class SectionOutcome:
    """What happened to one section: ``ran``, ``skipped`` (up to date), ``failed`` or ``missing``
    (a later section whose notebook does not exist yet)."""

    section: str
    status: str
    elapsed_s: float = 0.0
    notebook: Path | None = None
    reason: str = ""


@dataclass
class RunResult:
    """The outcome of :func:`run_pipeline`."""

    run_dir: Path
    params: dict[str, Any]
    outcomes: list[SectionOutcome] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [o.section for o in self.outcomes if o.status == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [o.section for o in self.outcomes if o.status == "skipped"]


def estimate_run_mb(params: Mapping[str, Any]) -> float:
    """Disk space a run folder needs, in MiB: the checkpoints dominate.

    Each trained model keeps ``best.pt`` (weights) and ``last.pt`` (weights and Adam's two
    moments): 4 copies of the weights per model, for three trained models, plus room for
    the one file being rewritten beside its old version (3 copies), plus 50 MiB of tables,
    figures and notebooks.
    Backbone sizes are the timm models' parameter counts (unknown ones: 30 M).
    """
    million = {"resnet10t": 4.9, "resnet14t": 10.1, "resnet18": 11.7, "resnet18d": 11.7,
               "resnet26d": 16.0, "resnet34": 21.8, "resnet34d": 21.8, "resnet50": 25.6,
               "resnet50d": 25.6}.get(str(params.get("backbone", "")), 30.0)
    head = 4.0 * int(params.get("bot_blocks", 3)) * int(params.get("bot_heads", 4)) * \
        int(params.get("bot_dim_head", 64)) ** 2 / 1e6 + 3.0
    return (3 * 4 + 3) * 4 * (million + head) + 50.0


@dataclass
class _Run:
    """What the sections of one invocation share; ``upstream`` grows as sections pass."""

    run_dir: Path
    params: dict[str, Any]
    data_sha: str
    state: dict[str, Any]
    upstream: list[list[str]]
    progress: Progress
    result: RunResult
    force: bool
    progress_bar: bool
    execution_timeout: float | None

    @property
    def records(self) -> dict[str, SectionRecord]:
        return self.state["sections"]


def _open_run(run_dir: Path, params: dict[str, Any], planned: Sequence[PlannedSection],
              table: Sequence[Section], *, stream: TextIO | None, progress_bar: bool | None,
              force: bool, execution_timeout: float | None) -> _Run:
    """Check the folder, read its state and the earlier sections' chain, write ``params.json``."""
    # before any work: a folder that cannot be written, or too little room for the run
    ensure_writable_dir(run_dir, min_free_mb=estimate_run_mb(params), probe=True)
    run_dir = run_dir.resolve()
    data_sha = file_sha256(params["data"])
    if progress_bar is None:
        progress_bar = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
    state = read_state(run_dir)
    upstream = upstream_chain(state["sections"], table, planned[0].section, run_dir)
    write_json_atomic(run_paths(run_dir)["params"], params)
    progress = Progress(stream, len(planned))
    progress.say(f"run folder {run_dir}, profile {params['profile']}, "
                 f"{len(planned)} section(s): {', '.join(p.section.name for p in planned)}")
    return _Run(run_dir, params, data_sha, state, upstream, progress, RunResult(run_dir=run_dir, params=params),
                force, progress_bar, execution_timeout)


def _visit_sections(run: _Run, planned: Sequence[PlannedSection]) -> None:
    """Skip each planned section that is up to date and execute the others, in order; stop
    before a missing notebook. Raises the PipelineError of a failed section."""
    upstream_changed = False
    for idx, pl in enumerate(planned, 1):
        name, tag = pl.section.name, f"[{idx}/{len(planned)}] {pl.section.name}"
        if pl.missing:
            run.result.outcomes.append(SectionOutcome(name, "missing", 0.0, None,
                                                      f"notebook {pl.source} does not exist yet"))
            run.progress.say(f"{tag}: notebook {pl.source} does not exist yet; this and later sections not run")
            break
        out = run_paths(run.run_dir)["notebooks"] / pl.section.notebook
        key = section_key(pl.nb_sha, pl.params_sha, run.data_sha, run.upstream)
        reason = stale_reason(run.records.get(name), key=key, nb_sha=pl.nb_sha, params_sha=pl.params_sha,
                              data_sha=run.data_sha, executed=out.is_file(), forced=run.force and pl.selected,
                              upstream_changed=upstream_changed)
        if not reason:
            run.result.outcomes.append(SectionOutcome(name, "skipped", 0.0, out, "up to date"))
            run.progress.say(f"{tag}: up to date, skipped")
        else:
            remaining = [p.section.name for p in planned[idx - 1:] if not p.missing]
            run.progress.say(f"{tag}: running {pl.source.name} ({reason})"
                             + time_hint(run.state["timings"], name, remaining))
            pending = SectionRecord(name, str(out), str(pl.source), pl.nb_sha, pl.params_sha, run.data_sha,
                                    tuple(tuple(u) for u in run.upstream), key, started=utc_now())
            _execute_section(run, pl, out, pending, reason, tag)
            upstream_changed = True
        run.upstream.append([name, run.records[name].run_token])


def _fresh_section_log(run_dir: Path, section: Section) -> Path:
    """A fresh, empty log file for ``section`` in the run's ``logs/`` folder
    (``<notebook stem>.log``, :mod:`spinelib.util.section_log`): an earlier execution's log is removed."""
    logs = run_paths(run_dir)["logs"]
    ensure_writable_dir(logs)
    path = logs / f"{Path(section.notebook).stem}.log"
    path.unlink(missing_ok=True)
    return path


def _execute_section(run: _Run, pl: PlannedSection, out: Path, pending: SectionRecord, reason: str,
                     tag: str) -> None:
    """Execute one section's notebook, recording the result in the state (saved before and
    after) and in the run's outcomes; raises the PipelineError of a failure once recorded."""
    name = pl.section.name
    run.records.pop(name, None)  # a section being re-run is not up to date any more
    save_state(run.run_dir, run.state)
    log_path = _fresh_section_log(run.run_dir, pl.section)
    t0 = time.monotonic()
    try:
        with run.progress.following(log_path, tag):
            execute_notebook(pl.section, pl.source, out, run.params, run.run_dir, progress_bar=run.progress_bar,
                             execution_timeout=run.execution_timeout, log_path=log_path)
    except PipelineError as exc:
        elapsed = time.monotonic() - t0
        run.records[name] = replace(pending, status="failed", finished=utc_now(), elapsed_s=round(elapsed, 3),
                                    run_token=None, error=str(exc))
        save_state(run.run_dir, run.state)
        run.result.outcomes.append(SectionOutcome(name, "failed", elapsed, out, str(exc)))
        run.progress.say(f"{tag}: FAILED after {fmt_duration(elapsed)}")
        raise
    elapsed = time.monotonic() - t0
    run.records[name] = replace(pending, status="ok", finished=utc_now(), elapsed_s=round(elapsed, 3),
                                run_token=uuid.uuid4().hex, error=None)
    run.state["timings"][name] = round(elapsed, 3)
    save_state(run.run_dir, run.state)
    run.result.outcomes.append(SectionOutcome(name, "ran", elapsed, out, reason))
    run.progress.say(f"{tag}: done in {fmt_duration(elapsed)}")


def run_pipeline(
    run_dir: str | Path, *, profile: str | None = None, data: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None, sections: str | Iterable[str] | None = None,
    force: bool = False, notebooks_dir: str | Path = NOTEBOOKS_DIR, table: Sequence[Section] = SECTIONS,
    stream: TextIO | None = sys.stderr, progress_bar: bool | None = None,
    execution_timeout: float | None = None,
) -> RunResult:
    """Run the selected sections' notebooks into ``run_dir``, skipping those up to date.

    Parameters
    ----------
    run_dir : the run folder (created).
    profile, data, overrides : the parameters (see :func:`spinelib.run.parameters.resolve_params`);
        ``overrides`` maps profile parameter names to values (use
        :func:`spinelib.profiles.parse_override` for text).
    sections : names (list or comma-separated) to run; ``None`` runs every section. Sections
        after a section that executes are out of date and run too; earlier ones are not run.
    force : execute the selected sections even when their record is up to date.
    notebooks_dir, table : where the notebook sources are and the section list (tests use a
        fixture list; the command uses :data:`~spinelib.run.sections.SECTIONS` and ``notebooks/``).
    stream : where progress lines go (``None``: silent).
    progress_bar : papermill's per-cell bar (default: when ``stream`` is a terminal).
    execution_timeout : seconds one cell may run (default: no limit).

    Returns
    -------
    RunResult with one :class:`SectionOutcome` per planned section.

    Raises
    ------
    PipelineError
        When a section fails (naming notebook, cell and error; the executed notebook with the
        traceback is kept in ``<run>/notebooks/``; earlier sections' outputs are untouched), or
        a selected section needs an earlier one that never completed.
    InvalidArgumentError, ProfileError, MissingFileError
        For unknown sections or parameters, or a missing notebook or manifest, before anything runs.
    """
    started = utc_now()
    run_dir, table, notebooks_dir = Path(run_dir).expanduser(), tuple(table), Path(notebooks_dir)
    params = resolve_params(run_dir, profile=profile, data=data, overrides=overrides)
    planned = plan_run(params, sections=sections, notebooks_dir=notebooks_dir, table=table)
    run = _open_run(run_dir, params, planned, table, stream=stream, progress_bar=progress_bar, force=force,
                    execution_timeout=execution_timeout)
    try:
        _visit_sections(run, planned)
    finally:
        write_provenance(run.run_dir, params, run.state, run.data_sha, table, notebooks_dir, started)
    run.progress.say(f"done: ran {len(run.result.ran)}, skipped {len(run.result.skipped)}; "
                     f"executed notebooks in {run_paths(run.run_dir)['notebooks']}")
    return run.result
