"""The plan of a run: which sections it visits, their notebooks checked, and the hashes of what
each section's record depends on (notebook source, declared parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import MissingFileError
from .parameters import notebook_parameters, validate_declared
from .sections import NOTEBOOKS_DIR, SECTIONS, Section, resolve_sections
from ..util.hashing import canonical_json, file_sha256, sha256_bytes

__all__ = ["PlannedSection", "plan_run"]

#: Parameters that locate a run rather than define a section's result: not in its hash.
_UNHASHED = ("run_dir", "data")


@dataclass
class PlannedSection:
    """A section a run visits: its notebook ``source``, the parameters it ``declared``, the
    SHA-256 of the notebook and of its parameters' values, whether the user ``selected`` it,
    and ``missing`` for a later, unselected section whose notebook does not exist yet."""

    section: Section
    source: Path
    declared: dict[str, Any]
    nb_sha: str
    params_sha: str
    selected: bool
    missing: bool = False


def plan_run(
    params: Mapping[str, Any],
    *,
    sections: str | Iterable[str] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    table: Sequence[Section] = SECTIONS,
) -> list[PlannedSection]:
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
    for sec in table[first:]:
        source = nb_dir / sec.notebook
        if not source.is_file() and sec.name not in chosen:
            planned.append(PlannedSection(sec, source, {}, "", "", False, missing=True))
            break
        if not source.is_file():
            raise MissingFileError(
                f"section {sec.name!r}: notebook {source} does not exist (yet); "
                f"choose sections whose notebooks exist with --sections"
            )
        declared = notebook_parameters(source)
        validate_declared(sec, source, declared, params)
        used = {k: params[k] for k in sorted(declared) if k not in _UNHASHED}
        planned.append(PlannedSection(sec, source, declared, file_sha256(source),
                                      sha256_bytes(canonical_json(used)), sec.name in chosen))
    return planned
