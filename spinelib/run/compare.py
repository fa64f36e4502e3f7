"""Comparing the numbers of two run folders: every leaf of ``metrics.json`` and every cell of
``tables/*.csv`` that differs.

Two runs of the same profile, data and seed on the same machine must give the same
``metrics.json`` and the same ``tables/*.csv``. :func:`compare_runs` lists every number
that differs -- each leaf of ``metrics.json`` (by its dotted path) and each cell of each
table (by table, row and column).

Measurements of the machine -- wall clock (``seconds``, ``images_per_second``, ...), and
the scaling page's memory, I/O and their multiples (``peak_rss_*``, ``mib_*``,
``core_hours``, ...) -- differ from one run to the next by nature; they are listed in
:data:`TIMING_KEYS` and left out of the comparison (reported as ``ignored``) unless the
caller passes ``ignore=()``.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from ..io.runfolder import read_json, run_paths
from ..util.atomic import TMP_PREFIX

__all__ = [
    "TIMING_KEYS",
    "CHECK_REPORT",
    "Difference",
    "CheckReport",
    "check_tolerance",
    "finished_run",
    "flatten_json",
    "compare_values",
    "compare_metrics",
    "compare_tables",
    "compare_runs",
]

#: Names (fnmatch patterns, matched against a metrics key or a table column) of wall-clock
#: measurements: they are not results and are not compared by default.
TIMING_KEYS: tuple[str, ...] = ("seconds", "*_seconds", "seconds_*", "images_per_second", "elapsed_s",
                                 "core_hours", "days_*", "hours_*", "mib_*", "tib_*", "peak_rss_*")
#: The report :func:`spinelib.run.repro.check_run` writes into the new run folder.
CHECK_REPORT = "check_report.json"


@dataclass(frozen=True)
class Difference:
    """One number (or structure) that differs between run ``a`` and run ``b``.

    ``where`` is ``"metrics"`` or ``"tables/<name>.csv"``; ``key`` is the dotted metrics
    path, or ``"row <i>, column <name>"`` for a table cell, or a description of a
    structural difference (missing key, table, row or column); ``a`` and ``b`` are the two
    values (``None`` where one side lacks it).
    """

    where: str
    key: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return f"{self.where}: {self.key}: {self.a!r} != {self.b!r}"


@dataclass
class CheckReport:
    """The outcome of a comparison: every difference, and what was compared and ignored."""

    run_a: str
    run_b: str
    rtol: float
    atol: float
    differences: list[Difference] = field(default_factory=list)
    n_metrics: int = 0
    n_cells: int = 0
    tables: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no number differs."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON value (for ``check_report.json``)."""
        d = asdict(self)
        d["ok"] = self.ok
        d["n_differences"] = len(self.differences)
        d["differences"] = [{"where": x.where, "key": x.key, "a": _jsonable(x.a), "b": _jsonable(x.b)}
                            for x in self.differences]
        return d

    def summary(self, *, limit: int = 20) -> str:
        """A few lines for the terminal: the verdict and the first ``limit`` differences."""
        head = (f"compared {self.n_metrics} metrics and {self.n_cells} table cells "
                f"({len(self.tables)} tables; rtol {self.rtol:g}, atol {self.atol:g}) of "
                f"{self.run_a} and {self.run_b}: ")
        if self.ok:
            return head + "no difference"
        lines = [head + f"{len(self.differences)} difference(s)"]
        lines += [f"  {d}" for d in self.differences[:limit]]
        if len(self.differences) > limit:
            lines.append(f"  ... and {len(self.differences) - limit} more (see {CHECK_REPORT})")
        return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    """A value as JSON can hold it (non-finite floats and other objects as text)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def check_tolerance(rtol: float, atol: float) -> None:
    """Raise InvalidArgumentError unless both tolerances are finite numbers >= 0."""
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {v!r}")


def _ignored(name: str, ignore: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the fnmatch patterns ``ignore``."""
    return any(fnmatch.fnmatchcase(name, pat) for pat in ignore)


def flatten_json(obj: Any, *, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by dotted path (list items as ``[i]``).

    >>> flatten_json({"a": {"b": 1, "c": [2, 3]}})
    {'a.b': 1, 'a.c[0]': 2, 'a.c[1]': 3}
    """
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten_json(v, prefix=f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            out.update(flatten_json(v, prefix=f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def _as_number(v: Any) -> float | None:
    """``v`` as a float when it is a number or numeric text (never a bool), else ``None``."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    try:  # numpy scalars
        return float(v)
    except (TypeError, ValueError):
        return None


def compare_values(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """True when two leaves are equal: numbers within ``|a - b| <= atol + rtol * |b|``
    (NaN equals NaN, an empty CSV cell is NaN), anything else exactly."""
    if isinstance(a, bool) or isinstance(b, bool):  # True is not the number 1 here
        return type(a) is type(b) and a == b
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if x == y:
            return True
        return abs(x - y) <= atol + rtol * abs(y)
    return a == b


def compare_metrics(a: Mapping, b: Mapping, *, rtol: float = 0.0, atol: float = 0.0,
                    ignore: Sequence[str] = TIMING_KEYS) -> tuple[list[Difference], int, list[str]]:
    """Compare two ``metrics.json`` dicts leaf by leaf.

    Returns
    -------
    (differences, number of leaves compared, dotted paths ignored as timings)
    """
    check_tolerance(rtol, atol)
    fa, fb = flatten_json(a), flatten_json(b)
    diffs: list[Difference] = []
    ignored: list[str] = []
    n = 0
    for key in sorted(set(fa) | set(fb)):
        last = key.rsplit(".", 1)[-1].split("[", 1)[0]
        if any(_ignored(part.split("[", 1)[0], ignore) for part in key.split(".")) or _ignored(last, ignore):
            ignored.append(f"metrics:{key}")
            continue
        if key not in fa:
            diffs.append(Difference("metrics", f"{key} (only in b)", None, fb[key]))
        elif key not in fb:
            diffs.append(Difference("metrics", f"{key} (only in a)", fa[key], None))
        else:
            n += 1
            if not compare_values(fa[key], fb[key], rtol=rtol, atol=atol):
                diffs.append(Difference("metrics", key, fa[key], fb[key]))
    return diffs, n, ignored


def _read_csv(path: Path):
    """The table as text cells (an empty file as an empty frame)."""
    import pandas as pd

    try:
        # everything as text: numbers are compared by value, anything else as written
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UnreadableFileError(f"table {path} cannot be read as CSV: {exc}") from None


def _cell(v: str) -> Any:
    """A CSV cell as compared: empty is NaN."""
    return float("nan") if v == "" else v


def compare_tables(path_a: str | Path, path_b: str | Path, *, rtol: float = 0.0, atol: float = 0.0,
                   ignore: Sequence[str] = TIMING_KEYS,
                   where: str | None = None) -> tuple[list[Difference], int, list[str]]:
    """Compare two CSV tables cell by cell (rows in file order, columns by name).

    Returns
    -------
    (differences, number of cells compared, columns ignored as timings)
    """
    check_tolerance(rtol, atol)
    pa, pb = Path(path_a), Path(path_b)
    where = where or pa.name
    ta, tb = _read_csv(pa), _read_csv(pb)
    diffs: list[Difference] = []
    cols_a, cols_b = list(ta.columns), list(tb.columns)
    ignored = [f"{where}:{c}" for c in dict.fromkeys(cols_a + cols_b) if _ignored(str(c), ignore)]
    for c in cols_a:
        if c not in cols_b:
            diffs.append(Difference(where, f"column {c} (only in a)", c, None))
    for c in cols_b:
        if c not in cols_a:
            diffs.append(Difference(where, f"column {c} (only in b)", None, c))
    if len(ta) != len(tb):
        diffs.append(Difference(where, "number of rows", len(ta), len(tb)))
    common = [c for c in cols_a if c in cols_b and not _ignored(str(c), ignore)]
    n = 0
    for i in range(min(len(ta), len(tb))):
        ra, rb = ta.iloc[i], tb.iloc[i]
        for c in common:
            n += 1
            va, vb = _cell(ra[c]), _cell(rb[c])
            if not compare_values(va, vb, rtol=rtol, atol=atol):
                diffs.append(Difference(where, f"row {i}, column {c}", ra[c], rb[c]))
    return diffs, n, ignored


def _tables(run_dir: Path) -> dict[str, Path]:
    """The run's ``tables/*.csv`` by file name."""
    folder = run_paths(run_dir)["tables"]
    if not folder.is_dir():
        return {}
    # temporary files of an interrupted writer are not outputs
    return {p.name: p for p in sorted(folder.glob("*.csv")) if not p.name.startswith(TMP_PREFIX)}


def finished_run(path: str | Path, name: str) -> Path:
    """``path`` as a finished run folder (one with a ``metrics.json``).

    Raises
    ------
    MissingFileError
        Naming the argument ``name``, when the folder or its ``metrics.json`` does not exist.
    """
    p = Path(path)
    if not p.is_dir():
        raise MissingFileError(f"{name}: run folder {p} does not exist")
    if not run_paths(p)["metrics"].is_file():
        raise MissingFileError(f"{name}: {run_paths(p)['metrics']} does not exist (not a finished run)")
    return p


def compare_runs(run_a: str | Path, run_b: str | Path, *, rtol: float = 0.0, atol: float = 0.0,
                 ignore: Sequence[str] = TIMING_KEYS) -> CheckReport:
    """Every number that differs between two run folders' ``metrics.json`` and ``tables/*.csv``.

    Parameters
    ----------
    run_a, run_b : run folders (each with a ``metrics.json``).
    rtol, atol : tolerance; two numbers are equal when ``|a - b| <= atol + rtol * |b|``
        (default 0: exact equality).
    ignore : fnmatch patterns of metrics keys and table columns not compared (default: the
        wall-clock measurements :data:`TIMING_KEYS`); ``()`` compares everything.

    Returns
    -------
    CheckReport; ``report.ok`` is True when nothing differs. A table present in only one
    run is one difference.

    Raises
    ------
    MissingFileError
        If a folder or its ``metrics.json`` does not exist.
    UnreadableFileError
        For a corrupt ``metrics.json`` or table.
    InvalidArgumentError
        For a negative or non-finite tolerance.
    """
    check_tolerance(rtol, atol)
    a, b = finished_run(run_a, "run_a"), finished_run(run_b, "run_b")
    ignore = tuple(ignore)
    report = CheckReport(str(a), str(b), float(rtol), float(atol))
    ma, mb = read_json(run_paths(a)["metrics"]), read_json(run_paths(b)["metrics"])
    diffs, n, ign = compare_metrics(ma, mb, rtol=rtol, atol=atol, ignore=ignore)
    report.differences += diffs
    report.n_metrics = n
    report.ignored += ign
    tabs_a, tabs_b = _tables(a), _tables(b)
    for name in sorted(set(tabs_a) | set(tabs_b)):
        where = f"tables/{name}"
        if name not in tabs_b:
            report.differences.append(Difference(where, "table only in a", name, None))
            continue
        if name not in tabs_a:
            report.differences.append(Difference(where, "table only in b", None, name))
            continue
        diffs, n, ign = compare_tables(tabs_a[name], tabs_b[name], rtol=rtol, atol=atol,
                                       ignore=ignore, where=where)
        report.differences += diffs
        report.n_cells += n
        report.ignored += ign
        report.tables.append(name)
    return report

