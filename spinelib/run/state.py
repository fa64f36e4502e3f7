"""The run's cache: the per-section records of ``pipeline_state.json``, their keys, and the pure
decision whether a section is up to date.

Each section that completed leaves a :class:`SectionRecord`: the SHA-256 of its notebook source,
of the parameters its ``parameters`` cell declares and of the data manifest, and the run tokens
of the records of the sections before it, all folded into one key (:func:`section_key`).
:func:`stale_reason` compares the record with what the section would record now.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import PipelineError
from ..io.runfolder import read_json
from ..util.atomic import write_json_atomic
from ..util.hashing import canonical_json, sha256_bytes
from .sections import Section

__all__ = [
    "STATE_FILE",
    "SectionRecord",
    "section_key",
    "read_state",
    "save_state",
    "stale_reason",
    "upstream_chain",
]

#: Per-section records (the cache) inside the run folder.
STATE_FILE = "pipeline_state.json"
_STATE_VERSION = 1


@dataclass(frozen=True)
class SectionRecord:
    """One section's record in ``pipeline_state.json`` (its JSON keys are the field names).

    ``upstream`` holds ``(name, run_token)`` of every earlier section; ``key`` is
    :func:`section_key` of the hashes and ``upstream``. ``status`` is ``"ok"`` or ``"failed"``;
    ``run_token`` is drawn anew by every successful execution (``None`` after a failure).
    """

    section: str
    notebook: str | None = None
    source: str | None = None
    notebook_sha256: str | None = None
    params_sha256: str | None = None
    data_sha256: str | None = None
    upstream: tuple[tuple[str, str], ...] = ()
    key: str | None = None
    started: str | None = None
    status: str | None = None
    finished: str | None = None
    elapsed_s: float | None = None
    run_token: str | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SectionRecord:
        """The record as read from the state file (a missing key reads as ``None``)."""
        values = {f.name: record.get(f.name) for f in fields(cls)}
        values["upstream"] = tuple(tuple(u) for u in values["upstream"] or ())
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The record as the state file keeps it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["upstream"] = [list(u) for u in self.upstream]
        return out


def section_key(nb_sha: str, params_sha: str, data_sha: str | None, upstream: Sequence) -> str:
    """The one hash a section's record is keyed on: notebook, parameters, data and the
    ``[name, run_token]`` of every earlier section."""
    return sha256_bytes(canonical_json({"notebook": nb_sha, "params": params_sha, "data": data_sha,
                                        "upstream": upstream}))


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run folder's state: ``version``, ``sections`` (name -> :class:`SectionRecord`) and
    ``timings`` (name -> seconds of its last execution).

    A missing file, or one of another version, gives no records (keeping its timings).
    """
    p = run_dir / STATE_FILE
    if not p.exists():
        return {"version": _STATE_VERSION, "sections": {}, "timings": {}}
    state = read_json(p)
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        return {"version": _STATE_VERSION, "sections": {}, "timings": state.get("timings", {})
                if isinstance(state, dict) else {}}
    state.setdefault("sections", {})
    state.setdefault("timings", {})
    state["sections"] = {name: SectionRecord.from_json(rec) for name, rec in state["sections"].items()}
    return state


def save_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (as :func:`read_state` returns it) back to the run folder, atomically."""
    records = {name: rec.to_json() for name, rec in state["sections"].items()}
    write_json_atomic(run_dir / STATE_FILE, {**state, "sections": records})


def stale_reason(rec: SectionRecord | None, *, key: str, nb_sha: str, params_sha: str, data_sha: str,
                 executed: bool, forced: bool = False, upstream_changed: bool = False) -> str:
    """Why a section must run, from its record in the run's state; ``""`` when it is up to date.

    Parameters
    ----------
    rec : the section's record (``None``: never run).
    key : the section's key now (:func:`section_key` of notebook, parameters, data, upstream).
    nb_sha, params_sha, data_sha : SHA-256 of its notebook source, its parameters and the manifest now.
    executed : whether its executed notebook is in the run folder.
    forced : ``--force`` on a selected section.
    upstream_changed : an earlier section of this run has just executed.
    """
    if forced:
        return "forced"
    if rec is None:
        return "never run"
    if rec.status != "ok":
        return "failed last time"
    if not executed:
        return "executed notebook missing"
    if rec.key == key:
        return ""
    if rec.notebook_sha256 != nb_sha:
        return "notebook changed"
    if rec.params_sha256 != params_sha:
        return "parameters changed"
    if rec.data_sha256 != data_sha:
        return "data manifest changed"
    return "an earlier section re-ran" if upstream_changed else "an earlier section changed"


def upstream_chain(records: Mapping[str, SectionRecord], table: Sequence[Section], first: Section,
                   run_dir: Path) -> list[list[str]]:
    """``[name, run_token]`` of every section before ``first``; each must have completed.

    Raises
    ------
    PipelineError
        Naming the first earlier section without a successful record.
    """
    upstream = []
    for sec in table[:table.index(first)]:
        rec = records.get(sec.name)
        if rec is None or rec.status != "ok":
            raise PipelineError(
                f"section {first.name!r} needs section {sec.name!r}, which has not "
                f"completed in {run_dir}; include it: --sections {sec.name},{first.name}"
            )
        upstream.append([sec.name, rec.run_token])
    return upstream
