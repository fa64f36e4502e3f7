"""Executing one section's notebook with papermill, in a kernel of this very interpreter.

Execution uses the interpreter running this code (``sys.executable``) as the kernel,
whatever kernelspecs the user has installed elsewhere: see :class:`VenvKernelManager`.
The kernel runs with :data:`KERNEL_ENV` (no tqdm bars: the executed notebooks become
book pages, where a bar is only noise); the terminal keeps papermill's per-cell bar and
gets the kernel's log records through the section's log file (:mod:`spinelib.util.section_log`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import PipelineError
from ..util.atomic import TMP_PREFIX, ensure_writable_dir
from ..util.section_log import SECTION_LOG_ENV
from .sections import Section

__all__ = [
    "KERNEL_NAME",
    "KERNEL_ENV",
    "kernel_env",
    "kernel_argv",
    "VenvKernelManager",
    "execute_notebook",
]

#: Kernel name recorded in the executed notebooks; the command always comes from sys.executable.
KERNEL_NAME = "python3"

#: Environment added to the notebook kernel's (see :func:`kernel_env`).
#: ``TQDM_DISABLE`` is tqdm's own switch for bars that do not choose ``disable``
#: themselves (spinelib's bars pass ``disable=None``: shown on a terminal only, and a
#: kernel's stderr is not one). ``PYTHONWARNINGS`` ignores exactly one warning, by its
#: message: tqdm's "IProgress not found", raised when a third-party package imports
#: ``tqdm.auto`` in a kernel without ipywidgets (timm imports huggingface_hub, which does).
#: It says notebook bars would fall back to text; with bars off it has nothing to warn about.
KERNEL_ENV: dict[str, str] = {"TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore:IProgress not found"}


def kernel_env(environ: Mapping[str, str] | None = None, *, log_path: Path | None = None) -> dict[str, str]:
    """:data:`KERNEL_ENV`, with the user's own ``PYTHONWARNINGS`` (from ``environ``,
    default ``os.environ``) kept in front of ours instead of replaced, and ``log_path`` as
    the section's log (:data:`spinelib.util.section_log.SECTION_LOG_ENV`) when given."""
    env = dict(KERNEL_ENV)
    if log_path is not None:
        env[SECTION_LOG_ENV] = str(log_path)
    prior = (os.environ if environ is None else environ).get("PYTHONWARNINGS", "").strip()
    if prior:
        env["PYTHONWARNINGS"] = f"{prior},{KERNEL_ENV['PYTHONWARNINGS']}"
    return env


def kernel_argv() -> list[str]:
    """The command that starts a notebook kernel: this interpreter's ipykernel."""
    return [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def _venv_kernel_manager_class(log_path: Path | None = None):
    """A KernelManager class that always launches ``sys.executable -m ipykernel_launcher``,
    logging into ``log_path`` when given (:func:`kernel_env`)."""
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
                    env=kernel_env(log_path=log_path),
                )
            return self._kernel_spec

    return VenvKernelManager


def __getattr__(name: str):  # lazy: importing this module does not import jupyter_client
    if name == "VenvKernelManager":
        return _venv_kernel_manager_class()
    raise AttributeError(name)


def _failure_message(sec: Section, source: Path, out: Path, exc: BaseException) -> str:
    """The error of a failed section: notebook, cell (or kernel), exception, and where the
    executed notebook with the traceback is."""
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


def execute_notebook(sec: Section, source: Path, out: Path, params: Mapping[str, Any], run_dir: Path,
                     *, progress_bar: bool, execution_timeout: float | None, log_path: Path | None = None) -> None:
    """Execute ``source`` with ``params`` injected into ``out`` (written whole, or not at all),
    with ``run_dir`` as the working folder; the kernel and the processes it starts log into
    ``log_path`` when given (:mod:`spinelib.util.section_log`).

    Raises
    ------
    PipelineError
        When a cell or the kernel fails (:func:`_failure_message`); ``out`` then holds the
        executed notebook with the traceback. ``KeyboardInterrupt`` (which leaves no partial
        notebook behind) and ``SystemExit`` pass through.
    """
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
            kernel_manager_class=_venv_kernel_manager_class(log_path),
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
