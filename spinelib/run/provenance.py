"""``provenance.json``: what a run ran, with what, where and how long (commit, package versions,
machine, kernel, seeds, data checksums, parameters, per-section timings)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io.runfolder import run_paths
from ..util.atomic import write_json_atomic
from .kernel import KERNEL_NAME, kernel_argv
from .parameters import profile_overrides
from .sections import Section
from .sources import PACKAGE_DIR
from ..util.hashing import file_sha256, sha256_bytes

__all__ = ["utc_now", "write_provenance"]

#: Packages whose versions go into provenance.json (looked up without importing them).
_PROVENANCE_PACKAGES: tuple[str, ...] = (
    "spinelib", "numpy", "scipy", "pandas", "scikit-image", "nibabel", "matplotlib", "plotly",
    "torch", "torchvision", "timm", "papermill", "nbclient", "nbformat", "ipykernel",
    "jupyter-client", "jupyter-book", "myst-nb", "sphinx", "sphinx-book-theme",
)
#: The fields of a section's record that provenance.json repeats.
_RECORD_FIELDS = ("status", "notebook", "source", "started", "finished", "elapsed_s", "run_token",
                  "key", "error")


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git_info(repo: Path) -> dict[str, Any]:
    """Commit of the checkout ``repo``, whether it has uncommitted changes, and which."""
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
        info["diff_sha256"] = sha256_bytes(diff.encode()) if diff is not None else None
        info["changed_files"] = sorted(line[3:] for line in status.splitlines() if len(line) > 3)
    return info


def _package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`_PROVENANCE_PACKAGES` (``None``: not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _machine() -> dict[str, Any]:
    """Host, platform, Python, CPU model and count, memory in GB (where Linux tells)."""
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


def write_provenance(run_dir: Path, params: Mapping[str, Any], state: Mapping, data_sha: str,
                     table: Sequence[Section], notebooks_dir: Path, started: str) -> None:
    """Write ``<run_dir>/provenance.json`` from the run's parameters and its state's records
    (as :func:`spinelib.run.state.read_state` returns it); ``started`` is the invocation's start."""
    path = run_paths(run_dir)["provenance"]
    repo = PACKAGE_DIR.parent
    sections = {}
    for sec in table:
        rec = state["sections"].get(sec.name)
        if rec is None:
            continue
        sections[sec.name] = {k: getattr(rec, k) for k in _RECORD_FIELDS}
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
        "overrides": profile_overrides(params),
        "repeat": f"spinelib run --check {run_dir}",
        "notebooks_dir": str(notebooks_dir),
        "last_invocation": {"started": started, "finished": utc_now(), "argv": list(sys.argv)},
        "timings_s": {name: rec.get("elapsed_s") for name, rec in sections.items()},
        "sections": sections,
    }
    write_json_atomic(path, prov)
