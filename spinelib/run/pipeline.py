"""The papermill runner: one run folder, the paper's sections as notebooks, in order.

A run executes the notebooks of :data:`SECTIONS` in order with papermill, injecting the
profile's parameters (overridable one by one) plus ``run_dir``, ``data`` and ``profile``.
Executed notebooks go to ``<run>/notebooks/``; ``params.json`` and ``provenance.json``
record what ran, with what, where and how long.

Caching
-------
Each section that completed leaves a *record* in ``<run>/pipeline_state.json``: the hash
of its notebook source, of the parameters its ``parameters`` cell declares, of the data
manifest, and the run tokens of the records of the sections before it. A section is
skipped when the record it would write equals the one on disk (and its executed notebook
is present); every execution draws a new run token, so re-running section ``k`` makes
sections ``k+1 ...`` out of date while sections before ``k`` stay as they are::

    spinelib run --profile smoke --data cohort/manifest.csv --out results/smoke
    spinelib run --out results/smoke --sections training -p epochs 3   # training + later

A run folder remembers its profile, data and overrides (``params.json``); a later call
on the same folder starts from them and applies its own options on top.

Execution uses the interpreter running this code (``sys.executable``) as the kernel,
whatever kernelspecs the user has installed elsewhere: see :class:`VenvKernelManager`.
The kernel runs with :data:`KERNEL_ENV` (no tqdm bars: the executed notebooks become
book pages, where a bar is only noise); the terminal keeps papermill's per-cell bar.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

from ..util.atomic import TMP_PREFIX, ensure_writable_dir, write_json_atomic
from ..errors import InvalidArgumentError, MissingFileError, PipelineError, ProfileError
from ..profiles import get_profile
from ..io.runfolder import read_json, run_paths
from .sources import PACKAGE_DIR, source_dir

__all__ = [
    "Section",
    "SECTIONS",
    "SECTION_NAMES",
    "NOTEBOOKS_DIR",
    "run_profile",
    "stale_reason",
    "RUN_PARAMETERS",
    "KERNEL_NAME",
    "KERNEL_ENV",
    "kernel_env",
    "STATE_FILE",
    "SectionOutcome",
    "RunResult",
    "VenvKernelManager",
    "resolve_sections",
    "notebook_parameters",
    "plan_run",
    "run_pipeline",
    "file_sha256",
    "estimate_run_mb",
]

#: The notebook sources (never overwritten; executed copies go to the run folder): the
#: checkout's notebooks/, or the copy installed in the package (spinelib.run.sources).
NOTEBOOKS_DIR = source_dir("notebooks")
#: Parameters every notebook receives besides the profile's.
RUN_PARAMETERS: tuple[str, ...] = ("run_dir", "data", "profile")
#: Kernel name recorded in the executed notebooks; the command always comes from sys.executable.
KERNEL_NAME = "python3"
#: Per-section records (the cache) inside the run folder.
STATE_FILE = "pipeline_state.json"
_STATE_VERSION = 1

#: Packages whose versions go into provenance.json (looked up without importing them).
_PROVENANCE_PACKAGES: tuple[str, ...] = (
    "spinelib", "numpy", "scipy", "pandas", "scikit-image", "nibabel", "matplotlib", "plotly",
    "torch", "torchvision", "timm", "papermill", "nbclient", "nbformat", "ipykernel",
    "jupyter-client", "jupyter-book", "myst-nb", "sphinx", "sphinx-book-theme",
)


@dataclass(frozen=True)
class Section:
    """One step of the pipeline: a name and the notebook (file name in the notebooks folder)."""

    name: str
    notebook: str
    title: str = ""

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


#: The paper's sections, in the order they run (declared as data).
SECTIONS: tuple[Section, ...] = (
    Section("alignment", "01_alignment.ipynb", "DXA-MRI alignment"),
    Section("training", "02_training.ipynb", "Training"),
    Section("curve_accuracy", "03_curve_accuracy_2d.ipynb", "2D curve accuracy"),
    Section("reconstruction", "04_reconstruction_3d.ipynb", "3D reconstruction"),
    Section("qualitative", "05_qualitative.ipynb", "Qualitative results"),
    Section("scaling", "06_scaling.ipynb", "Scaling to UK Biobank"),
)
SECTION_NAMES: tuple[str, ...] = tuple(s.name for s in SECTIONS)


# --------------------------------------------------------------------------- small helpers
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def resolve_sections(
    names: str | Iterable[str] | None, table: Sequence[Section] = SECTIONS
) -> list[Section]:
    """The sections named (comma-separated string or iterable), in pipeline order.

    ``None`` or an empty selection means every section.

    Raises
    ------
    InvalidArgumentError
        For a name that is not a section of ``table``.
    """
    by_name = {s.name: s for s in table}
    if names is None:
        return list(table)
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    wanted = [n.strip() for n in names if n and n.strip()]
    if not wanted:
        return list(table)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise InvalidArgumentError(
            f"unknown section {unknown[0]!r}; sections are, in order: {', '.join(by_name)}"
        )
    return [s for s in table if s.name in set(wanted)]


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and defaults declared in the notebook's single cell tagged ``parameters``.

    Raises
    ------
    PipelineError
        If the notebook has no ``parameters`` cell, more than one, or one papermill cannot read.
    """
    import nbformat
    import papermill

    p = Path(path)
    try:
        nb = nbformat.read(p, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the notebook's fault
        raise PipelineError(f"notebook {p} cannot be read: {exc}") from None
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise PipelineError(
            f"notebook {p} must have exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    try:
        params = papermill.inspect_notebook(str(p))
    except Exception as exc:  # noqa: BLE001
        raise PipelineError(f"notebook {p}: the parameters cell cannot be parsed: {exc}") from None
    return {name: info.get("default") for name, info in params.items()}


# --------------------------------------------------------------------------- kernel
#: Environment added to the notebook kernel's (see :func:`kernel_env`).
#: ``TQDM_DISABLE`` is tqdm's own switch for bars that do not choose ``disable``
#: themselves (spinelib's bars pass ``disable=None``: shown on a terminal only, and a
#: kernel's stderr is not one). ``PYTHONWARNINGS`` ignores exactly one warning, by its
#: message: tqdm's "IProgress not found", raised when a third-party package imports
#: ``tqdm.auto`` in a kernel without ipywidgets (timm imports huggingface_hub, which does).
#: It says notebook bars would fall back to text; with bars off it has nothing to warn about.
KERNEL_ENV: dict[str, str] = {"TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore:IProgress not found"}


def kernel_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`KERNEL_ENV`, with the user's own ``PYTHONWARNINGS`` (from ``environ``,
    default ``os.environ``) kept in front of ours instead of replaced."""
    env = dict(KERNEL_ENV)
    prior = (os.environ if environ is None else environ).get("PYTHONWARNINGS", "").strip()
    if prior:
        env["PYTHONWARNINGS"] = f"{prior},{KERNEL_ENV['PYTHONWARNINGS']}"
    return env


def _venv_kernel_manager_class():
    """A KernelManager class that always launches ``sys.executable -m ipykernel_launcher``."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class VenvKernelManager(AsyncKernelManager):
        """Launches the kernel with the interpreter running the pipeline.

        Jupyter picks kernelspecs by name from several folders (the user's own first), so
        ``python3`` may point to another Python. This manager ignores the search and uses
        ``sys.executable``, so the notebooks see exactly the packages of this environment.
        """

        @default("transport_encryption")
        def _transport_encryption_default(self) -> str:
            # CurveZMQ keys when this jupyter_client and ipykernel support them (silences the
            # kernel's "running over TCP without encryption" warning); plain TCP otherwise.
            return "auto"

        @property
        def kernel_spec(self):  # type: ignore[override]
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=kernel_argv(),
                    display_name=f"Python {platform.python_version()} (spinelib)",
                    language="python",
                    metadata={"debugger": False, "supported_encryption": ["curve"]},
                    resource_dir="",
                    env=kernel_env(),
                )
            return self._kernel_spec

    return VenvKernelManager


def kernel_argv() -> list[str]:
    """The command that starts a notebook kernel: this interpreter's ipykernel."""
    return [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def __getattr__(name: str):  # lazy: importing the pipeline does not import jupyter_client
    if name == "VenvKernelManager":
        return _venv_kernel_manager_class()
    raise AttributeError(name)


# --------------------------------------------------------------------------- records
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


def _read_state(run_dir: Path) -> dict:
    p = run_dir / STATE_FILE
    if not p.exists():
        return {"version": _STATE_VERSION, "sections": {}, "timings": {}}
    state = read_json(p)
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        return {"version": _STATE_VERSION, "sections": {}, "timings": state.get("timings", {})
                if isinstance(state, dict) else {}}
    state.setdefault("sections", {})
    state.setdefault("timings", {})
    return state


def _section_key(nb_sha: str, params_sha: str, data_sha: str | None, upstream: list) -> str:
    return _sha256_bytes(_canonical({"notebook": nb_sha, "params": params_sha, "data": data_sha,
                                     "upstream": upstream}))


# --------------------------------------------------------------------------- parameters
def _previous_params(run_dir: Path) -> dict[str, Any] | None:
    p = run_paths(run_dir)["params"]
    if not p.exists():
        return None
    prev = read_json(p)
    return prev if isinstance(prev, dict) else None


def run_profile(run_dir: str | Path, profile: str | None = None) -> str:
    """The profile a command on ``run_dir`` uses: ``profile`` when given, else the one the run
    recorded in ``params.json``, else ``"default"``."""
    return profile or (_previous_params(Path(run_dir)) or {}).get("profile") or "default"


def resolve_params(
    run_dir: str | Path,
    *,
    profile: str | None = None,
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full parameter set a run injects: profile + overrides + ``run_dir``/``data``/``profile``.

    Unset options come from the run folder's previous ``params.json`` (its profile, data and
    the values that differ from that profile) so that re-running one section needs only the
    option that changes. A different ``profile`` drops the previous overrides.

    Raises
    ------
    ProfileError
        For an unknown profile or parameter.
    MissingFileError
        When no data manifest is known or it does not exist.
    """
    run_dir = Path(run_dir)
    prev = _previous_params(run_dir) or {}
    prev_profile = prev.get("profile")
    name = profile or prev_profile or "default"
    merged: dict[str, Any] = {}
    if prev and prev_profile == name and prev_profile in _profile_names():
        base = get_profile(name)
        merged = {k: v for k, v in prev.items()
                  if k in base and k not in RUN_PARAMETERS and base[k] != v}
    bad = [k for k in (overrides or {}) if k in RUN_PARAMETERS]
    if bad:
        raise ProfileError(f"{bad[0]!r} is set by its own option, not as a parameter override")
    merged.update(overrides or {})
    params = get_profile(name, merged)
    data_path = data if data is not None else prev.get("data")
    if not data_path:
        raise MissingFileError(
            "no data manifest: pass --data MANIFEST (e.g. a cohort written by `spinelib synth`)"
        )
    data_path = Path(data_path).expanduser().resolve()
    if not data_path.is_file():
        raise MissingFileError(f"data manifest {data_path} does not exist")
    params["run_dir"] = str(run_dir.expanduser().resolve())
    params["data"] = str(data_path)
    params["profile"] = name
    return params


def _profile_names() -> tuple[str, ...]:
    from ..profiles import PROFILE_NAMES

    return PROFILE_NAMES


# --------------------------------------------------------------------------- plan
@dataclass
class _Planned:
    section: Section
    source: Path
    declared: dict[str, Any]
    nb_sha: str
    params_sha: str
    selected: bool
    missing: bool = False


def _validate_declared(section: Section, source: Path, declared: Mapping[str, Any],
                       params: Mapping[str, Any]) -> None:
    unknown = [n for n in declared if n not in params]
    if unknown:
        raise PipelineError(
            f"notebook {source} (section {section.name!r}) declares parameter {unknown[0]!r}, "
            "which is neither a profile parameter nor one of run_dir, data, profile"
        )
    missing = [n for n in RUN_PARAMETERS if n not in declared]
    if missing:
        raise PipelineError(
            f"notebook {source} (section {section.name!r}): its parameters cell must declare "
            f"{', '.join(RUN_PARAMETERS)}; {missing[0]!r} is missing"
        )


def plan_run(
    params: Mapping[str, Any],
    *,
    sections: str | Iterable[str] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    table: Sequence[Section] = SECTIONS,
) -> list[_Planned]:
    """Check the selected sections' notebooks and hash what each section's record depends on.

    Every section from the first selected one to the end of ``table`` is planned (a change
    upstream makes the later ones out of date); sections before it are only read. A later,
    unselected section whose notebook does not exist yet is planned as ``missing``: the run
    stops before it (so that ``--sections alignment`` works while later notebooks are written).

    Raises
    ------
    InvalidArgumentError
        For an unknown section name.
    MissingFileError
        For a section whose notebook does not exist (yet).
    PipelineError
        For a notebook without exactly one valid ``parameters`` cell.
    """
    chosen = {s.name for s in resolve_sections(sections, table)}
    nb_dir = Path(notebooks_dir)
    first = min(i for i, s in enumerate(table) if s.name in chosen)
    planned = []
    for i, sec in enumerate(table):
        if i < first:
            continue
        source = nb_dir / sec.notebook
        if not source.is_file() and sec.name not in chosen:
            planned.append(_Planned(sec, source, {}, "", "", False, missing=True))
            break
        if not source.is_file():
            raise MissingFileError(
                f"section {sec.name!r}: notebook {source} does not exist (yet); "
                f"choose sections whose notebooks exist with --sections"
            )
        declared = notebook_parameters(source)
        _validate_declared(sec, source, declared, params)
        used = {k: params[k] for k in sorted(declared) if k not in ("run_dir", "data")}
        planned.append(_Planned(sec, source, declared, file_sha256(source),
                                _sha256_bytes(_canonical(used)), sec.name in chosen))
    return planned


# --------------------------------------------------------------------------- provenance
def _git_info(repo: Path) -> dict[str, Any]:
    import subprocess

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                 timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    info: dict[str, Any] = {"commit": commit, "dirty": bool(status) if status is not None else None}
    if status:
        # a dirty tree is only repeatable with its changes: record which changes they were
        diff = git("diff", "HEAD")
        info["diff_sha256"] = _sha256_bytes(diff.encode()) if diff is not None else None
        info["changed_files"] = sorted(line[3:] for line in status.splitlines() if len(line) > 3)
    return info


def _package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _machine() -> dict[str, Any]:
    desc: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    desc["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as fh:
            desc["memory_gb"] = round(int(fh.readline().split()[1]) / 1024**2, 1)
    return desc


def _cohort_info(manifest: str | None) -> dict[str, Any]:
    """Checksum of the cohort description next to the manifest (synthetic cohorts)."""
    if not manifest:
        return {}
    cohort = Path(manifest).with_name("cohort.json")
    return {"cohort_json_sha256": file_sha256(cohort)} if cohort.is_file() else {}


def _overrides_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters whose values differ from the run's profile."""
    name = params.get("profile")
    if name not in _profile_names():
        return {}
    base = get_profile(name)
    return {k: v for k, v in params.items() if k not in RUN_PARAMETERS and base.get(k, object()) != v}


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


def _write_provenance(run_dir: Path, params: Mapping[str, Any], state: Mapping, data_sha: str,
                      table: Sequence[Section], notebooks_dir: Path, started: str) -> None:
    path = run_paths(run_dir)["provenance"]
    repo = PACKAGE_DIR.parent
    sections = {}
    for sec in table:
        rec = state["sections"].get(sec.name)
        if rec is None:
            continue
        sections[sec.name] = {k: rec.get(k) for k in (
            "status", "notebook", "source", "started", "finished", "elapsed_s", "run_token",
            "key", "error")}
    prov = {
        "spinelib_version": _package_versions().get("spinelib"),
        "git": _git_info(repo),
        "packages": _package_versions(),
        "machine": _machine(),
        "kernel": {"name": KERNEL_NAME, "argv": kernel_argv()},
        "seeds": {k: v for k, v in params.items() if k == "seed" or k.endswith("_seed")},
        "profile": params.get("profile"),
        "data": {"manifest": params.get("data"), "sha256": data_sha, **_cohort_info(params.get("data"))},
        # everything needed to repeat the run: `spinelib run --check RUN_DIR` uses params.json
        "params": dict(params),
        "overrides": _overrides_of(params),
        "repeat": f"spinelib run --check {run_dir}",
        "notebooks_dir": str(notebooks_dir),
        "last_invocation": {"started": started, "finished": _now(), "argv": list(sys.argv)},
        "timings_s": {name: rec.get("elapsed_s") for name, rec in sections.items()},
        "sections": sections,
    }
    write_json_atomic(path, prov)


# --------------------------------------------------------------------------- progress
class _Progress:
    """One line per event on the terminal: which section, elapsed, estimate."""

    def __init__(self, stream: TextIO | None, total: int):
        self.stream = stream
        self.total = total
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        print(f"[spinelib run {_fmt_duration(time.monotonic() - self.t0):>6}] {text}",
              file=self.stream, flush=True)


# --------------------------------------------------------------------------- the run
def _notebook_output_path(run_dir: Path, sec: Section) -> Path:
    return run_paths(run_dir)["notebooks"] / sec.notebook


def _failure_message(sec: Section, source: Path, out: Path, exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
        where = f"cell {exc.cell_index}"
        if exc.exec_count is not None:
            where += f" (execution count {exc.exec_count})"
        if first:
            where += f" starting {first.strip()[:80]!r}"
        err = f"{exc.ename}: {exc.evalue}"
    else:
        where = "kernel"
        err = f"{type(exc).__name__}: {exc}"
    return (f"section {sec.name!r} failed in notebook {source.name}, {where}: {err}. "
            f"The executed notebook with the traceback is {out}")


class _QuietUnknownParameters:
    """Logging filter: the full parameter set is injected on purpose (ARCHITECTURE.md, notebooks), so papermill's
    "Passed unknown parameter" warning for each profile parameter a notebook does not declare
    is noise."""

    def filter(self, record) -> bool:  # noqa: A003 - logging API
        return not str(record.getMessage()).startswith("Passed unknown parameter")


_QUIET = _QuietUnknownParameters()


def _execute(sec: Section, source: Path, out: Path, params: Mapping[str, Any], run_dir: Path,
             *, progress_bar: bool, execution_timeout: float | None) -> None:
    import logging

    import papermill as pm

    pm_log = logging.getLogger("papermill")
    if _QUIET not in pm_log.filters:
        pm_log.addFilter(_QUIET)
    ensure_writable_dir(out.parent)
    tmp = out.with_name(f"{TMP_PREFIX}{out.name}")
    try:
        pm.execute_notebook(
            str(source), str(tmp), parameters=dict(params), kernel_name=KERNEL_NAME,
            language="python", cwd=str(run_dir), progress_bar=progress_bar,
            request_save_on_cell_execute=True, execution_timeout=execution_timeout,
            kernel_manager_class=_venv_kernel_manager_class(),
        )
    except BaseException as exc:
        if tmp.exists():
            if isinstance(exc, KeyboardInterrupt):
                tmp.unlink()
            else:
                os.replace(tmp, out)  # keep the failed notebook, traceback included, for reading
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise PipelineError(_failure_message(sec, source, out, exc)) from exc
    os.replace(tmp, out)


def run_pipeline(
    run_dir: str | Path,
    *,
    profile: str | None = None,
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    sections: str | Iterable[str] | None = None,
    force: bool = False,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    table: Sequence[Section] = SECTIONS,
    stream: TextIO | None = sys.stderr,
    progress_bar: bool | None = None,
    execution_timeout: float | None = None,
) -> RunResult:
    """Run the selected sections' notebooks into ``run_dir``, skipping those up to date.

    Parameters
    ----------
    run_dir : the run folder (created).
    profile, data, overrides : the parameters (see :func:`resolve_params`); ``overrides`` maps
        profile parameter names to values (use :func:`spinelib.profiles.parse_override` for text).
    sections : names (list or comma-separated) to run; ``None`` runs every section. Sections
        after a section that executes are out of date and run too; earlier ones are not run.
    force : execute the selected sections even when their record is up to date.
    notebooks_dir, table : where the notebook sources are and the section list (tests use a
        fixture list; the command uses :data:`SECTIONS` and ``notebooks/``).
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
    started = _now()
    run_dir = Path(run_dir).expanduser()
    table = tuple(table)
    notebooks_dir = Path(notebooks_dir)
    params = resolve_params(run_dir, profile=profile, data=data, overrides=overrides)
    planned = plan_run(params, sections=sections, notebooks_dir=notebooks_dir, table=table)
    # before any work: a folder that cannot be written, or too little room for the run
    ensure_writable_dir(run_dir, min_free_mb=estimate_run_mb(params), probe=True)
    run_dir = run_dir.resolve()
    data_sha = file_sha256(params["data"])
    if progress_bar is None:
        progress_bar = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    state = _read_state(run_dir)
    records: dict = state["sections"]
    upstream = _upstream_chain(records, table, planned[0].section, run_dir)
    write_json_atomic(run_paths(run_dir)["params"], params)

    # decide what runs (for the estimate); the decision is re-made as sections execute
    progress = _Progress(stream, len(planned))
    result = RunResult(run_dir=run_dir, params=params)
    progress.say(f"run folder {run_dir}, profile {params['profile']}, "
                 f"{len(planned)} section(s): {', '.join(p.section.name for p in planned)}")
    upstream_changed = False
    try:
        for idx, pl in enumerate(planned, 1):
            sec = pl.section
            out = _notebook_output_path(run_dir, sec)
            if pl.missing:
                result.outcomes.append(SectionOutcome(sec.name, "missing", 0.0, None,
                                                      f"notebook {pl.source} does not exist yet"))
                progress.say(f"[{idx}/{len(planned)}] {sec.name}: notebook {pl.source} does not "
                             "exist yet; this and later sections not run")
                break
            key = _section_key(pl.nb_sha, pl.params_sha, data_sha, upstream)
            rec = records.get(sec.name)
            reason = stale_reason(rec, key=key, nb_sha=pl.nb_sha, params_sha=pl.params_sha, data_sha=data_sha,
                                  executed=out.is_file(), forced=force and pl.selected,
                                  upstream_changed=upstream_changed)
            if not reason:
                result.outcomes.append(SectionOutcome(sec.name, "skipped", 0.0, out, "up to date"))
                progress.say(f"[{idx}/{len(planned)}] {sec.name}: up to date, skipped")
                upstream.append([sec.name, rec["run_token"]])
                continue
            remaining = [p.section.name for p in planned[idx - 1:] if not p.missing]
            progress.say(f"[{idx}/{len(planned)}] {sec.name}: running {pl.source.name} ({reason})"
                         + _time_hint(state["timings"], sec.name, remaining))
            rec_new = {
                "section": sec.name, "notebook": str(out), "source": str(pl.source),
                "notebook_sha256": pl.nb_sha, "params_sha256": pl.params_sha,
                "data_sha256": data_sha, "upstream": [list(u) for u in upstream], "key": key,
                "started": _now(),
            }
            outcome, error = _run_section(pl, out, rec_new, reason, params, run_dir, state,
                                          progress_bar=progress_bar, execution_timeout=execution_timeout)
            result.outcomes.append(outcome)
            if error is not None:
                progress.say(f"[{idx}/{len(planned)}] {sec.name}: FAILED after {_fmt_duration(outcome.elapsed_s)}")
                raise error
            upstream.append([sec.name, records[sec.name]["run_token"]])
            upstream_changed = True
            progress.say(f"[{idx}/{len(planned)}] {sec.name}: done in {_fmt_duration(outcome.elapsed_s)}")
    finally:
        _write_provenance(run_dir, params, state, data_sha, table, notebooks_dir, started)
    progress.say(f"done: ran {len(result.ran)}, skipped {len(result.skipped)}; "
                 f"executed notebooks in {run_paths(run_dir)['notebooks']}")
    return result


def stale_reason(rec: Mapping[str, Any] | None, *, key: str, nb_sha: str, params_sha: str, data_sha: str,
                 executed: bool, forced: bool = False, upstream_changed: bool = False) -> str:
    """Why a section must run, from its record in the run's state; ``""`` when it is up to date.

    Parameters
    ----------
    rec : the section's record (``None``: never run).
    key : the section's key now (:func:`_section_key` of notebook, parameters, data, upstream).
    nb_sha, params_sha, data_sha : SHA-256 of its notebook source, its parameters and the manifest now.
    executed : whether its executed notebook is in the run folder.
    forced : ``--force`` on a selected section.
    upstream_changed : an earlier section of this run has just executed.
    """
    if forced:
        return "forced"
    if rec is None:
        return "never run"
    if rec.get("status") != "ok":
        return "failed last time"
    if not executed:
        return "executed notebook missing"
    if rec.get("key") == key:
        return ""
    if rec.get("notebook_sha256") != nb_sha:
        return "notebook changed"
    if rec.get("params_sha256") != params_sha:
        return "parameters changed"
    if rec.get("data_sha256") != data_sha:
        return "data manifest changed"
    return "an earlier section re-ran" if upstream_changed else "an earlier section changed"


def _upstream_chain(records: Mapping[str, Any], table: Sequence[Section], first: Section, run_dir: Path) -> list:
    """``[name, run_token]`` of every section before ``first``; each must have completed."""
    upstream = []
    for sec in table[:table.index(first)]:
        rec = records.get(sec.name)
        if rec is None or rec.get("status") != "ok":
            raise PipelineError(
                f"section {first.name!r} needs section {sec.name!r}, which has not "
                f"completed in {run_dir}; include it: --sections {sec.name},{first.name}"
            )
        upstream.append([sec.name, rec["run_token"]])
    return upstream


def _time_hint(timings: Mapping[str, float], name: str, remaining: Sequence[str]) -> str:
    """``; last time ...; about ... left in the run`` from earlier runs' timings (or nothing)."""
    prev, est = timings.get(name), _estimate(timings, remaining)
    return ((f"; last time {_fmt_duration(prev)}" if prev is not None else "")
            + (f"; about {_fmt_duration(est)} left in the run" if est is not None else ""))


def _run_section(pl: _Planned, out: Path, rec_new: dict, reason: str, params: Mapping[str, Any], run_dir: Path,
                 state: dict, *, progress_bar: bool,
                 execution_timeout: float | None) -> tuple[SectionOutcome, PipelineError | None]:
    """Execute one section's notebook and record the result in ``state`` (saved before and
    after); returns its outcome and, when it failed, the error to raise."""
    sec, records = pl.section, state["sections"]
    records.pop(sec.name, None)  # a section being re-run is not up to date any more
    _save_state(run_dir, state)
    t0 = time.monotonic()
    try:
        _execute(sec, pl.source, out, params, run_dir, progress_bar=progress_bar, execution_timeout=execution_timeout)
    except PipelineError as exc:
        elapsed = time.monotonic() - t0
        records[sec.name] = {**rec_new, "status": "failed", "finished": _now(), "elapsed_s": round(elapsed, 3),
                             "run_token": None, "error": str(exc)}
        _save_state(run_dir, state)
        return SectionOutcome(sec.name, "failed", elapsed, out, str(exc)), exc
    elapsed = time.monotonic() - t0
    records[sec.name] = {**rec_new, "status": "ok", "finished": _now(), "elapsed_s": round(elapsed, 3),
                         "run_token": uuid.uuid4().hex, "error": None}
    state["timings"][sec.name] = round(elapsed, 3)
    _save_state(run_dir, state)
    return SectionOutcome(sec.name, "ran", elapsed, out, reason), None


def _estimate(timings: Mapping[str, float], names: Sequence[str]) -> float | None:
    known = [timings[n] for n in names if n in timings]
    if len(known) != len(names) or not known:
        return None
    return float(sum(known))


def _save_state(run_dir: Path, state: dict) -> None:
    write_json_atomic(run_dir / STATE_FILE, state)


def describe_plan(run_dir: str | Path, table: Sequence[Section] = SECTIONS) -> list[dict]:
    """The records of a run folder's sections (status, timings), for reports and the book."""
    state = _read_state(Path(run_dir))
    return [dict(state["sections"][s.name]) for s in table if s.name in state["sections"]]

