"""The Jupyter Book of a run: executed notebooks + the book's pages -> offline HTML.

:func:`build_book` stages the book sources (``book/``) and the run's executed notebooks into
``book/_build/_src``, renders the generated parts (table of contents of the chapters present;
results summary, provenance and other tables: :mod:`spinelib.run.book_pages`), ships
``plotly.min.js`` in ``_static``, builds the HTML with Jupyter Book 1.x (execution off) into
``book/_build/html`` and checks that no page loads a script, stylesheet or font from the
network (:mod:`spinelib.run.book_offline`).

Notebook authors use a few helpers so that their outputs work offline in the book:
:func:`plotly_html` (a Plotly figure as HTML that uses the book's own plotly.js),
:func:`glue_number` (a number for the prose, glued as a plain float) and :func:`glue_text`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from ..errors import InvalidArgumentError, MissingFileError, PipelineError
from ..io.runfolder import run_paths
from ..paper import substitutions
from .book_offline import external_assets
from .book_pages import SUMMARY_ROWS, SummaryRow, fill_pages
from .sections import SECTIONS, Section
from .sources import is_checkout, source_dir

__all__ = [
    "BOOK_DIR",
    "build_book",
    "stage_book",
    "glued_keys",
    "plotly_html",
    "glue_number",
    "glue_text",
]

#: The book sources: the checkout's book/, or the copy installed in the package (spinelib.run.sources).
BOOK_DIR = source_dir("book")
#: Folder (inside the book) where chapters from the run's notebooks are staged.
CHAPTERS = "notebooks"


# --------------------------------------------------------------------------- notebook helpers
def plotly_html(fig: Any, *, height: int | None = None, div_id: str | None = None):
    """A Plotly figure as an ``IPython.display.HTML`` object that works offline in the book.

    The HTML holds the figure's data and a call to ``Plotly.newPlot`` but not plotly.js itself
    (``include_plotlyjs=False``): the book loads its own copy from ``_static``. Display it with
    ``display(plotly_html(fig))`` or as the last expression of a cell.
    """
    from IPython.display import HTML

    if height is not None:
        fig.update_layout(height=height)
    text = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       div_id=div_id, config={"displaylogo": False, "responsive": True})
    return HTML(text)


def glue_number(name: str, value: Any, *, display: bool = False) -> float | int:
    """Glue ``value`` as a plain Python number under ``name`` (myst-nb), for the book's prose.

    numpy scalars are converted first: their repr (``np.float64(3.1)``) cannot be formatted
    by ``{glue:text}`name:.2f```. Returns the number glued.
    """
    from myst_nb import glue

    number: float | int
    if isinstance(value, bool):
        number = int(value)
    elif hasattr(value, "item"):
        number = value.item()
    else:
        number = value
    if not isinstance(number, (int, float)):
        number = float(number)
    glue(name, number, display=display)
    return number


def glue_text(name: str, text: str) -> str:
    """Glue a sentence (Markdown) under ``name`` for the prose: ``{glue:md}`name``` renders it
    without the quotes a plain string's repr would bring. Returns the text glued."""
    from IPython.display import Markdown
    from myst_nb import glue

    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(f"glue_text needs a non-empty string for {name!r}, got {text!r}")
    glue(name, Markdown(text), display=False)
    return text


def glued_keys(notebook: str | Path) -> set[str]:
    """Names glued (myst-nb ``glue``) in an executed notebook."""
    nb = json.loads(Path(notebook).read_text())
    keys = set()
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            meta = out.get("metadata", {}) or {}
            scrap = meta.get("scrapbook")
            if isinstance(scrap, dict) and scrap.get("name"):
                keys.add(scrap["name"])
    return keys


# --------------------------------------------------------------------------- staging
def _tag_notebook(src: Path, dest: Path) -> None:
    """Copy an executed notebook, tagging cells for the book.

    The parameters and injected-parameters cells are collapsed whole (``hide-cell``: readable
    in a dropdown); other code cells get ``hide-input`` (source collapsible, outputs shown)
    unless the author already chose a hide/remove tag.
    """
    nb = json.loads(src.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.setdefault("metadata", {})
        tags = list(meta.get("tags", []))
        if any(t.startswith(("hide-", "remove-")) for t in tags):
            pass
        elif "parameters" in tags or "injected-parameters" in tags:
            tags.append("hide-cell")
        else:
            tags.append("hide-input")
        meta["tags"] = tags
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1))


def _write_toc(src_toc: Path, dest_toc: Path, chapters: Sequence[str]) -> None:
    """Copy the table of contents with the run's chapters in place of its ``notebooks/`` entries.

    The tracked ``_toc.yml`` lists the paper's notebooks where the chapters go; the staged one
    lists, at that place and in pipeline order, exactly the executed notebooks of the run.
    Parts left without chapters are dropped.
    """
    import yaml

    toc = yaml.safe_load(src_toc.read_text())

    def is_chapter(entry: Any) -> bool:
        return isinstance(entry, dict) and str(entry.get("file", "")).startswith(f"{CHAPTERS}/")

    def fix(entries: list) -> list:
        out, placed = [], False
        for e in entries:
            if is_chapter(e):
                if not placed:
                    out += [{"file": doc} for doc in chapters]
                    placed = True
                continue
            out.append(prune(e))
        return out

    def prune(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = dict(node)
        for key in ("chapters", "sections"):
            if key in node:
                node[key] = fix(node[key])
                if not node[key]:
                    del node[key]
        if "parts" in node:
            parts = [prune(p) for p in node["parts"]]
            node["parts"] = [p for p in parts if p.get("chapters")]
        return node

    dest_toc.write_text(yaml.safe_dump(prune(toc), sort_keys=False))


def _write_substitutions(config: Path, subs: Mapping[str, str]) -> None:
    """Put ``subs`` into the staged ``_config.yml`` as MyST substitutions (``{{ name }}`` in a
    page), so that the pages quote the paper's numbers from :mod:`spinelib.paper`."""
    import yaml

    cfg = yaml.safe_load(config.read_text()) or {}
    parse = cfg.setdefault("parse", {})
    exts = parse.setdefault("myst_enable_extensions", [])
    if "substitution" not in exts:
        exts.append("substitution")
    parse["myst_substitutions"] = {**(parse.get("myst_substitutions") or {}), **dict(subs)}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _stage_chapters(run_dir: Path, staging: Path,
                    table: Sequence[Section]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Stage the run's executed notebooks of ``table`` as chapters; returns, by section name,
    each chapter's document (``notebooks/<stem>``) and the names its notebook glued."""
    nb_dir = run_paths(run_dir)["notebooks"]
    chapters: dict[str, str] = {}
    keys: dict[str, set[str]] = {}
    for sec in table:
        executed = nb_dir / sec.notebook
        if not executed.is_file():
            continue
        doc = f"{CHAPTERS}/{sec.stem}"
        _tag_notebook(executed, staging / CHAPTERS / sec.notebook)
        chapters[sec.name] = doc
        keys[sec.name] = glued_keys(executed)
    return chapters, keys


def _ship_plotly(staging: Path) -> None:
    """Copy the plotly package's ``plotly.min.js`` into the book's ``_static`` (no CDN)."""
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not js.is_file():
        raise MissingFileError(f"plotly.min.js not found in the plotly package ({js})")
    (staging / "_static").mkdir(exist_ok=True)
    shutil.copy2(js, staging / "_static" / "plotly.min.js")


def stage_book(run_dir: str | Path, *, book_dir: str | Path = BOOK_DIR,
               staging: str | Path | None = None,
               table: Sequence[Section] = SECTIONS,
               summary_rows: Sequence[SummaryRow] = SUMMARY_ROWS) -> Path:
    """Copy the book sources and the run's executed notebooks into ``staging``; returns it.

    Chapters are the run's executed notebooks of ``table`` that exist (``<run>/notebooks/``);
    the table of contents lists exactly those. Raises MissingFileError for a missing run folder.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    book_dir = Path(book_dir).resolve()
    if not run_dir.is_dir():
        raise MissingFileError(f"run folder {run_dir} does not exist; run `spinelib run` first")
    for needed in ("_config.yml", "_toc.yml"):
        if not (book_dir / needed).is_file():
            raise MissingFileError(f"book source {book_dir / needed} does not exist")
    staging = Path(staging) if staging is not None else book_dir / "_build" / "_src"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(book_dir, staging, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints",
                                                                      "__pycache__"))
    chapters, keys = _stage_chapters(run_dir, staging, table)
    fill_pages(staging, run_dir, chapters, keys, summary_rows)
    _write_toc(book_dir / "_toc.yml", staging / "_toc.yml", list(chapters.values()))
    _write_substitutions(staging / "_config.yml", substitutions())
    _ship_plotly(staging)
    return staging


def _jupyter_book_command(staging: Path, out: Path, strict: bool) -> list[str]:
    """The ``jupyter-book build`` command line of this environment (HTML into ``out/_build``)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = ([str(exe)] if exe.is_file() else [sys.executable, "-m", "jupyter_book.cli.main"])
    cmd += ["build", str(staging), "--path-output", str(out), "--builder", "html"]
    if strict:
        cmd.append("--warningiserror")
    return cmd


def _run_build(cmd: Sequence[str], out: Path, html_dir: Path) -> list[str]:
    """Run the build, keeping its log in ``out/_build/build.log``; returns its warning lines.

    Raises
    ------
    PipelineError
        When the build fails, or the built HTML would load anything from the network.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = proc.stdout + proc.stderr
    (out / "_build").mkdir(parents=True, exist_ok=True)
    (out / "_build" / "build.log").write_text(log)
    warnings = [ln for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln]
    if proc.returncode != 0 or not (html_dir / "index.html").is_file():
        tail = "\n".join(log.splitlines()[-25:])
        raise PipelineError(f"the book build failed (exit {proc.returncode}); log in "
                            f"{out / '_build' / 'build.log'}:\n{tail}")
    leaks = external_assets(html_dir)
    if leaks:
        listing = "; ".join(f"{f}: {u}" for f, u in leaks[:10])
        raise PipelineError(f"the built book would load {len(leaks)} resource(s) from the network: "
                            f"{listing}")
    return warnings


def build_book(
    run_dir: str | Path,
    *,
    book_dir: str | Path = BOOK_DIR,
    table: Sequence[Section] = SECTIONS,
    summary_rows: Sequence[SummaryRow] = SUMMARY_ROWS,
    stream: TextIO | None = sys.stderr,
    strict: bool = False,
    out_dir: str | Path | None = None,
) -> Path:
    """Build the book of ``run_dir`` into ``<out_dir>/_build/html``; returns ``index.html``.

    Parameters
    ----------
    run_dir : a run folder written by :func:`spinelib.run.pipeline.run_pipeline`.
    book_dir : the book sources (``_config.yml``, ``_toc.yml``, pages, ``references.bib``).
    strict : turn Sphinx warnings into errors.
    out_dir : where ``_build/`` goes; default ``book_dir`` in a source checkout, else
        ``<run_dir>/book`` (an installed package's folder is not the user's to write).

    Raises
    ------
    PipelineError
        When the build fails, or the built HTML would load anything from the network.
    """
    t0 = time.monotonic()
    book_dir = Path(book_dir).resolve()
    if out_dir is None:
        out_dir = book_dir if is_checkout() else Path(run_dir) / "book"
    out = Path(out_dir).resolve()
    staging = stage_book(run_dir, book_dir=book_dir, staging=out / "_build" / "_src", table=table,
                         summary_rows=summary_rows)
    cmd = _jupyter_book_command(staging, out, strict)
    html_dir = out / "_build" / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)
    if stream is not None:
        print(f"[spinelib book] building {staging} -> {html_dir}", file=stream, flush=True)
    warnings = _run_build(cmd, out, html_dir)
    if stream is not None:
        for ln in warnings[:20]:
            print(f"[spinelib book] {ln}", file=stream)
        print(f"[spinelib book] built in {time.monotonic() - t0:.0f}s with {len(warnings)} "
              f"warning(s); log {out / '_build' / 'build.log'}", file=stream, flush=True)
    return html_dir / "index.html"
