"""The one fan-out of every per-subject stage: local processes or a Dask cluster.

Synthesis, ingestion, alignment + targets, cohort prediction and 3D evaluation each hand
:func:`fan_out` a picklable function of one item and the items' keys (subject ids).
The contract, whatever the backend:

* **Same results.** Results come back in the items' order, so a run gives the same
  tables and files with 1 process, N processes, a Dask cluster or N shards.
* **Chunks.** Items travel in chunks (:func:`chunk_size`), results are gathered as
  chunks finish, with one progress bar over items.
* **Failures are reported, never fatal.** An item whose function raises comes back as a
  :class:`Failed` with the exception's type and message; the other items go on. A lost
  worker fails the items of its chunk the same way.
* **Resumable.** With a ``store`` folder, each item's result is written there by the
  worker, atomically (:func:`spinelib.util.records.write_record`), as soon as it is computed;
  a rerun reads the stored results instead of computing them again. Failures are not
  stored: a rerun tries them again.
* **Shards.** :class:`Shard` ``I/N`` selects every N-th item starting at I, so the N tasks of
  a SLURM array cover a cohort exactly once; the shards meet in the shared ``store``.

Backends (:class:`Engine`): ``local`` (the default) runs in this process for one job and in
a pool of processes that die with this one otherwise (a ``ProcessPoolExecutor``'s workers
block forever on their task queue when their parent is killed with ``SIGKILL``; on Linux
each worker asks the kernel to kill it when its parent dies, ``prctl(PR_SET_PDEATHSIG)``;
stages whose items run torch ask for spawned workers, see :func:`process_pool`).
``dask`` submits the chunks to a ``dask.distributed`` scheduler at ``scheduler`` (started
elsewhere, e.g. by ``dask-jobqueue`` on SLURM) or, without an address, to a
``LocalCluster`` of ``jobs`` single-threaded worker processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import math
import os
import re
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import ClusterError, InvalidArgumentError
from ..io.checks import check_integer

__all__ = ["ENGINES", "Engine", "Shard", "Failed", "chunk_size", "fan_out", "store_folder", "process_pool"]

log = logging.getLogger(__name__)

#: The fan-out backends.
ENGINES: tuple[str, ...] = ("local", "dask")

_PR_SET_PDEATHSIG = 1
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}$")


@dataclass(frozen=True)
class Engine:
    """Where the items of a fan-out run.

    Attributes
    ----------
    jobs : worker processes (``local``), or workers of the ``LocalCluster`` (``dask``
        without ``scheduler``). 1 with ``local`` runs in this process.
    kind : ``"local"`` or ``"dask"``.
    scheduler : address of a running Dask scheduler (``tcp://host:8786``); implies ``dask``.
    chunk : items per task; 0 chooses :func:`chunk_size`.
    """

    jobs: int = 1
    kind: str = "local"
    scheduler: str | None = None
    chunk: int = 0

    def __post_init__(self) -> None:
        check_integer(self.jobs, "jobs", 1)
        if self.kind not in ENGINES:
            raise InvalidArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or not self.scheduler.strip()):
            raise InvalidArgumentError(f"scheduler must be a non-empty address, got {self.scheduler!r}")
        if self.scheduler is not None and self.kind != "dask":
            raise InvalidArgumentError(f"a scheduler address ({self.scheduler}) needs engine 'dask'")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 0:
            raise InvalidArgumentError(f"chunk must be a non-negative integer, got {self.chunk!r}")

    @classmethod
    def of(cls, jobs: "int | Engine") -> "Engine":
        """``jobs`` as an Engine: an int is that many local processes."""
        return jobs if isinstance(jobs, Engine) else cls(jobs=jobs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Engine":
        """The run's engine from its parameters ``jobs``, ``engine`` and ``scheduler``."""
        scheduler = params.get("scheduler") or None
        kind = params.get("engine") or ("dask" if scheduler else "local")
        return cls(jobs=params.get("jobs", 1), kind=kind, scheduler=scheduler)

    def describe(self) -> str:
        """One line for logs: ``2 local processes``, ``dask at tcp://...``."""
        if self.kind == "dask":
            return f"dask scheduler {self.scheduler}" if self.scheduler else f"dask LocalCluster of {self.jobs} workers"
        return "this process" if self.jobs == 1 else f"{self.jobs} local processes"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the items at positions ``index, index + count, ...``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        check_integer(self.count, "shard count", 1)
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < self.count:
            raise InvalidArgumentError(f"shard index must be in 0..{self.count - 1}, got {self.index!r}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` (0-based I, as SLURM's ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-(N-1)``)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not m:
            raise InvalidArgumentError(f"shard must be I/N (e.g. 0/8), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    def positions(self, n: int) -> list[int]:
        """Positions of this shard among ``n`` items."""
        return list(range(self.index, int(n), self.count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Failed:
    """An item whose function raised: its key and ``"ExceptionType: message"``."""

    key: str
    reason: str


def chunk_size(n_items: int, workers: int) -> int:
    """Items per task: about four tasks per worker (load balance), at most 16 items.

    >>> chunk_size(1000, 2), chunk_size(10, 4), chunk_size(0, 2)
    (16, 1, 1)
    """
    return max(1, min(16, math.ceil(int(n_items) / (4 * max(1, int(workers))))))


def store_folder(root: str | Path, stage: str, settings: Mapping[str, Any]) -> Path:
    """The folder under ``root`` that caches ``stage``'s results for ``settings``.

    Results made with other settings live in another folder, so a changed parameter
    never reads a stale result.
    """
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(root) / f"{stage}-{digest}"


def _store_name(key: str) -> str:
    if _SAFE_KEY.match(key):
        return f"{key}.npz"
    return f"k{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _run_chunk(fn: Callable[[Any], Any], chunk: list[tuple[int, str, Any]], store: str | None) -> list[tuple[int, Any]]:
    """Run ``fn`` on each item of a chunk; runs in a worker."""
    from .records import write_record

    out: list[tuple[int, Any]] = []
    for pos, key, item in chunk:
        try:
            res = fn(item)
            if store is not None:
                write_record(Path(store) / _store_name(key), res)
        except Exception as exc:  # any failure of one subject is reported, the others go on
            res = Failed(key, f"{type(exc).__name__}: {exc}")
        out.append((pos, res))
    return out


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: SIGKILL this worker when its parent process goes away."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc to ask: the pool still works
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def process_pool(max_workers: int, *, spawn: bool = False) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``max_workers`` processes that die with this process.

    The pool must be created (and used) from a thread that lives as long as the pool:
    Linux reports the death of the *thread* that started a worker as its parent's death.
    With ``spawn``, the workers start as fresh interpreters instead of forks of this
    process: needed when they run torch, because a child forked from a process whose
    OpenMP threads have run hangs in its first parallel region.

    Raises
    ------
    InvalidArgumentError
        If ``max_workers`` is not a positive integer.
    """
    import multiprocessing

    check_integer(max_workers, "max_workers", 1)
    context = multiprocessing.get_context("spawn") if spawn else None
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=context, initializer=_die_with_parent,
                               initargs=(os.getpid(),))


@contextmanager
def _dask_client(engine: Engine) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ClusterError("engine 'dask' needs dask.distributed (pip install 'dask[distributed]')") from exc
    if engine.scheduler:
        try:
            client = Client(engine.scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {engine.scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    # distributed sets OMP_NUM_THREADS=1, PYTHONHASHSEED, ... in this process's environment to
    # hand them to its workers: they must not leak into what this process runs afterwards
    # (a notebook's torch would compute on one thread, and give other last bits)
    saved = dict(os.environ)
    try:
        with LocalCluster(n_workers=engine.jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def fan_out(fn: Callable[[Any], Any], items: Sequence[Any], *, keys: Sequence[str], engine: "Engine | int" = 1,
            desc: str, unit: str = "subject", progress: bool = True,
            store: str | Path | None = None, spawn: bool = False) -> list[Any]:
    """``[fn(item) for item in items]`` on ``engine``, a :class:`Failed` where ``fn`` raised.

    Parameters
    ----------
    fn : a picklable (module-level) function of one item; with ``store``, its result must
        be a record (:mod:`spinelib.util.records`).
    items : the work, in the order of the result.
    keys : one unique id per item (subject ids): names failures and stored results.
    engine : an :class:`Engine`, or a number of local processes.
    desc, unit : the progress bar's label and unit.
    progress : show a tqdm progress bar over items.
    store : folder of stored results (created): items found there are read, not computed;
        new results are written there by the workers.
    spawn : local workers start as fresh interpreters (:func:`process_pool`); for items that
        run torch.

    Returns
    -------
    list, one result (or :class:`Failed`) per item, in the order of ``items``.

    Raises
    ------
    InvalidArgumentError
        ``keys`` does not match ``items`` or repeats a key.
    ClusterError
        The Dask scheduler cannot be reached.
    """
    from tqdm import tqdm  # console bars: no notebook-widget detection

    engine = Engine.of(engine)
    keys = [str(k) for k in keys]
    if len(keys) != len(items):
        raise InvalidArgumentError(f"{len(keys)} keys for {len(items)} items")
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError("fan_out keys must be unique")
    if store is not None:
        from .atomic import ensure_writable_dir

        store = ensure_writable_dir(store)
    results, todo = _read_stored(items, keys, store, desc)
    store_arg = None if store is None else str(store)
    bar = tqdm(total=len(todo), desc=desc, unit=unit, disable=None if progress else True)
    try:
        for n_done, done in _compute(engine, fn, todo, store_arg, spawn):
            for pos, res in done:
                results[pos] = res
            bar.update(n_done)
    finally:
        bar.close()
    return results


def _read_stored(items: Sequence[Any], keys: list[str], store: Path | None,
                 desc: str) -> tuple[list[Any], list[tuple[int, str, Any]]]:
    """The results found in ``store`` (None elsewhere) and the ``(position, key, item)`` still to do."""
    results: list[Any] = [None] * len(items)
    todo: list[tuple[int, str, Any]] = []
    if store is not None:
        from ..errors import SpineLibError
        from .records import read_record
    for pos, (key, item) in enumerate(zip(keys, items)):
        path = None if store is None else Path(store) / _store_name(key)
        if path is not None and path.is_file():
            try:
                results[pos] = read_record(path)
                continue
            except SpineLibError as exc:  # a damaged cache entry is computed again
                log.warning("stored result %s unreadable (%s): computing it again", path, exc)
        todo.append((pos, key, item))
    if store is not None and len(todo) < len(items):
        log.info("%s: %d of %d results read from %s", desc, len(items) - len(todo), len(items), store)
    return results, todo


def _compute(engine: Engine, fn: Callable[[Any], Any], todo: list[tuple[int, str, Any]], store: str | None,
             spawn: bool) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """Yield ``(items done, [(position, result), ...])``: in this process item by item, else chunk by chunk."""
    if engine.kind == "local" and (engine.jobs == 1 or len(todo) < 2):
        for job in todo:
            yield 1, _run_chunk(fn, [job], store)
        return
    size = engine.chunk or chunk_size(len(todo), engine.jobs)
    chunks = [todo[k:k + size] for k in range(0, len(todo), size)]
    for chunk, done in _submit(engine, fn, chunks, store, spawn):
        yield len(chunk), done


def _lost(chunk: list[tuple[int, str, Any]], exc: BaseException) -> list[tuple[int, Failed]]:
    reason = f"worker lost: {type(exc).__name__}: {exc}"
    return [(pos, Failed(key, reason)) for pos, key, _ in chunk]


def _submit(engine: Engine, fn, chunks, store: str | None, spawn: bool) -> Iterator[tuple[list, list]]:
    """Yield ``(chunk, [(position, result), ...])`` as the chunks finish."""
    if not chunks:
        return
    if engine.kind == "local":
        from concurrent.futures import as_completed

        with process_pool(min(engine.jobs, len(chunks)), spawn=spawn) as ex:
            futures = {ex.submit(_run_chunk, fn, c, store): c for c in chunks}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:  # a worker died: its chunk fails, the rest go on
                    yield futures[fut], _lost(futures[fut], exc)
        return
    from distributed import as_completed as dask_completed

    with _dask_client(engine) as client:
        futures = {client.submit(_run_chunk, fn, c, store, pure=False): k for k, c in enumerate(chunks)}
        for fut in dask_completed(list(futures)):
            chunk = chunks[futures[fut]]
            try:
                yield chunk, fut.result()
            except Exception as exc:  # KilledWorker and friends
                yield chunk, _lost(chunk, exc)
