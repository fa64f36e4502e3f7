"""Shared fixtures of the pipeline, book and browser tests (imported by path, not collected).

A fixture section list over the tiny notebooks of ``tests/data/notebooks`` runs through the
very same :func:`spinelib.run.pipeline.run_pipeline` and :func:`spinelib.run.book.build_book` as the
real run; the book is built once per test session and shared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from spinelib.run.book import build_book
from spinelib.run.book_pages import SummaryRow
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import Section

DATA = Path(__file__).resolve().parent
NOTEBOOKS = DATA / "notebooks"
MANIFEST = DATA / "manifest.csv"
BOOK_SRC = DATA.parents[1] / "book"

FIXTURE_SECTIONS = (
    Section("first", "a_first.ipynb", "First"),
    Section("second", "b_second.ipynb", "Second"),
    Section("spine3d", "c_spine3d.ipynb", "Spine 3D"),
)
FIXTURE_SUMMARY = (
    SummaryRow("3D IoU (fixture)", "spine3d", "fixture_iou_pct", ".1f", "%", "83.8 %"),
    SummaryRow("First value (fixture)", "first", "fixture_first", ".2f", "mm", "3.12 mm"),
    SummaryRow("Never glued", "second", "not_glued", ".1f"),
)

_BOOK: dict[str, Path] = {}


def make_run(run_dir: Path, *, table=FIXTURE_SECTIONS, manifest: Path | None = None, **kw):
    """Run the fixture sections into ``run_dir`` (smoke profile, a copy of the fixture manifest)."""
    run_dir = Path(run_dir)
    if manifest is None:
        manifest = run_dir.parent / f"{run_dir.name}-manifest.csv"
        if not manifest.exists():
            manifest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(MANIFEST, manifest)
    kw.setdefault("profile", "smoke")
    kw.setdefault("stream", None)
    return run_pipeline(run_dir, data=manifest, notebooks_dir=NOTEBOOKS, table=table, **kw)


def fixture_book(base: Path) -> tuple[Path, Path]:
    """(run folder, index.html) of the fixture book, built once per session under ``base``."""
    if "index" not in _BOOK:
        run = Path(base) / "run"
        make_run(run)
        book = Path(base) / "book"
        shutil.copytree(BOOK_SRC, book, ignore=shutil.ignore_patterns("_build"))
        _BOOK["run"] = run
        _BOOK["index"] = build_book(run, book_dir=book, table=FIXTURE_SECTIONS,
                                    summary_rows=FIXTURE_SUMMARY, stream=None)
    return _BOOK["run"], _BOOK["index"]
