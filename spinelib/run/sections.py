"""The paper's sections, declared as data: each a name and the notebook that runs it, in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InvalidArgumentError
from .sources import source_dir

__all__ = ["Section", "SECTIONS", "SECTION_NAMES", "NOTEBOOKS_DIR", "resolve_sections"]

#: The notebook sources (never overwritten; executed copies go to the run folder): the
#: checkout's notebooks/, or the copy installed in the package (spinelib.run.sources).
NOTEBOOKS_DIR = source_dir("notebooks")


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
