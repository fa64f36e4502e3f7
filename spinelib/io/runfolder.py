"""The run folder: one place per run for parameters, metrics, tables and figures.

Notebooks resolve every path from a single run folder. ``metrics.json``
is shared by several notebooks, each writing its own block; updates are merged
and written atomically so that an interrupted section never leaves it broken.
"""

from __future__ import annotations

import fcntl
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..util.atomic import atomic_path, ensure_writable_dir, write_json_atomic
from ..errors import InvalidArgumentError, NonFiniteError, UnreadableFileError

__all__ = [
    "METRICS_FILE",
    "read_metrics",
    "update_metrics",
    "write_table",
    "read_json",
    "run_paths",
]

METRICS_FILE = "metrics.json"


def run_paths(run_dir: str | Path) -> dict[str, Path]:
    """The standard locations inside a run folder (created on demand by writers)."""
    root = Path(run_dir)
    return {
        "root": root,
        "metrics": root / METRICS_FILE,
        "params": root / "params.json",
        "provenance": root / "provenance.json",
        "targets": root / "targets.npz",
        # every model's curves on the test split (evaluated) and the validation split (which
        # chooses the scoliosis operating point); spinelib.study.prediction writes them
        "predictions_test": root / "predictions_test.npz",
        "predictions_val": root / "predictions_val.npz",
        "alignment": root / "alignment.csv",
        "tables": root / "tables",
        "figures": root / "figures",
        "checkpoints": root / "checkpoints",
        "notebooks": root / "notebooks",
        # one log per section, what its kernel and the processes it spawned logged
        # (spinelib.util.section_log); the runner prints it on the terminal as it grows
        "logs": root / "logs",
        "cache": root / "cache",  # per-subject results of the fan-outs (spinelib.util.workers); safe to delete
    }


def read_json(path: str | Path) -> Any:
    """Read a JSON file with a clear error for a missing or corrupt file."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        from ..errors import MissingFileError

        raise MissingFileError(f"{p} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"{p} is not valid JSON: {exc}") from None


def read_metrics(run_dir: str | Path) -> dict:
    """The run's ``metrics.json`` as a dict (empty when not yet written)."""
    p = run_paths(run_dir)["metrics"]
    return read_json(p) if p.exists() else {}


def _merge(base: dict, patch: Mapping) -> dict:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_finite(obj: Any, where: str = "") -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise NonFiniteError(f"metric {where} is {obj}; metrics.json holds finite numbers only")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    ensure_writable_dir(path.parent)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_metrics(run_dir: str | Path, patch: Mapping[str, Any]) -> dict:
    """Deep-merge ``patch`` into the run's ``metrics.json`` and write it atomically.

    Nested dicts are merged key by key (so the evaluation notebooks can each add
    their own models or blocks); other values replace what was there. Every float
    must be finite.

    Returns
    -------
    The merged metrics dict as written.
    """
    if not isinstance(patch, Mapping):
        raise InvalidArgumentError(f"metrics patch must be a mapping, got {type(patch).__name__}")
    _check_finite(patch)
    path = run_paths(run_dir)["metrics"]
    with _locked(path):
        merged = _merge(read_metrics(run_dir), patch)
        write_json_atomic(path, merged)
    return merged


def write_table(run_dir: str | Path, name: str, table: "Any") -> Path:
    """Write a pandas DataFrame as ``<run>/tables/<name>.csv`` atomically; returns the path."""
    if not name or "/" in name or name.startswith("."):
        raise InvalidArgumentError(f"table name must be a plain file stem, got {name!r}")
    path = run_paths(run_dir)["tables"] / f"{name}.csv"
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return path
