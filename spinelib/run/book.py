"""The Jupyter Book of a run: executed notebooks + the book's pages -> offline HTML.

:func:`build_book` stages the book sources (``book/``) and the run's executed notebooks into
``book/_build/_src``, renders the generated parts (table of contents of the chapters present,
results summary glued from the notebooks, provenance page from ``params.json`` and
``provenance.json``), ships ``plotly.min.js`` in ``_static``, builds the HTML with Jupyter
Book 1.x (execution off) into ``book/_build/html`` and checks that no page loads a script,
stylesheet or font from the network.

Notebook authors use two helpers so that their outputs work offline in the book:
:func:`plotly_html` (a Plotly figure as HTML that uses the book's own plotly.js) and
:func:`glue_number` (a number for the prose, glued as a plain float).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

from ..errors import InvalidArgumentError, MissingFileError, PipelineError
from ..paper import paper_text, substitutions
from .pipeline import SECTIONS, STATE_FILE, Section
from ..io.runfolder import read_json, run_paths
from .sources import is_checkout, source_dir

__all__ = [
    "BOOK_DIR",
    "SummaryRow",
    "SUMMARY_ROWS",
    "build_book",
    "stage_book",
    "external_assets",
    "glued_keys",
    "plotly_html",
    "glue_number",
    "glue_text",
]

#: The book sources: the checkout's book/, or the copy installed in the package (spinelib.run.sources).
BOOK_DIR = source_dir("book")
#: Folder (inside the book) where chapters from the run's notebooks are staged.
CHAPTERS = "notebooks"
_MARKER = re.compile(r"^<!--[ \t]*spinelib:(?P<name>[a-z0-9_]+)[ \t]*-->[ \t]*$", re.M)


@dataclass(frozen=True)
class SummaryRow:
    """One line of the results summary: a glued number beside the paper's value.

    ``section`` names the pipeline section whose notebook glues ``key`` (a plain float);
    ``of_key``, when given, is a total glued by the same notebook, shown as "``key`` of
    ``of_key``" (e.g. evaluated k of n test subjects); ``fmt`` is the format spec applied in
    the page; ``paper`` is the paper's reported value as text ("" when the paper
    does not report it; the library's rows take it from :mod:`spinelib.paper`, never typed).
    ``optional`` rows may be absent from a run (a second row that needs ground truth, a
    score the test set cannot define) without it being an error of the notebook.
    """

    label: str
    section: str
    key: str
    fmt: str
    unit: str = ""
    paper: str = ""
    optional: bool = False
    of_key: str = ""


#: The numbers of the summary page. The science notebooks glue these keys (see glue_number).
#: The model metrics are the headline ones: against truth targets (true transform, DXA-session
#: anatomy) on a synthetic cohort, the paper's way on real data; rows "as the paper measures"
#: repeat a number against the targets of the estimated alignment.
SUMMARY_ROWS: tuple[SummaryRow, ...] = (
    SummaryRow("Alignment error, mean (stage 1 + 2)", "alignment", "alignment_error_mm_mean", ".2f", "mm",
               optional=True),
    SummaryRow("Alignment error, 95th percentile", "alignment", "alignment_error_mm_p95", ".2f", "mm", optional=True),
    SummaryRow("Alignment error after stage 1 only, mean", "alignment", "alignment_stage1_error_mm_mean", ".2f", "mm",
               optional=True),
    SummaryRow("Manifest rows left out as bad data (listed in the alignment chapter)", "alignment",
               "n_bad_subjects", "d"),
    SummaryRow("Test subjects in the manifest", "training", "n_test", "d"),
    SummaryRow("Test subjects evaluated, headline (truth targets on a synthetic cohort)", "curve_accuracy",
               "n_eval_test", "d", of_key="n_test_total"),
    SummaryRow("Test subjects evaluated as the paper measures (trusted alignments)", "curve_accuracy",
               "n_eval_test_estimated_alignment", "d", optional=True, of_key="n_test_total"),
    SummaryRow("Curve MAE, coronal centre (paper's model)", "curve_accuracy", "curve_mae_mm_coronal_centre", ".2f", "mm"),
    SummaryRow("Curve MAE, sagittal centre (paper's model)", "curve_accuracy", "curve_mae_mm_sagittal_centre", ".2f", "mm"),
    SummaryRow("Curve MAE, all six curves (paper's model)", "curve_accuracy", "curve_mae_mm_mean", ".2f", "mm"),
    SummaryRow("Curve MAE, all six curves, as the paper measures (estimated alignment)", "curve_accuracy",
               "curve_mae_mm_mean_estimated_alignment", ".2f", "mm", optional=True),
    SummaryRow("3D spine curve deviation at the same rows, the paper's definition (paper's model)",
               "reconstruction", "centerline_3d_same_row_mm", ".2f", "mm", paper_text("centerline_3d_mm")),
    SummaryRow("3D spine curve deviation at the same rows, as the paper measures (estimated alignment)",
               "reconstruction", "centerline_3d_same_row_mm_estimated_alignment", ".2f", "mm",
               paper_text("centerline_3d_mm"), optional=True),
    SummaryRow("3D centreline deviation level by level, extent included (paper's model)", "reconstruction",
               "centerline_3d_mm", ".2f", "mm"),
    SummaryRow("Error of the spine's top, T1 superior (paper's model)", "reconstruction", "extent_top_mm", ".1f", "mm"),
    SummaryRow("Error of the spine's bottom, L5 inferior (paper's model)", "reconstruction", "extent_bottom_mm",
               ".1f", "mm"),
    SummaryRow("3D IoU (paper's model)", "reconstruction", "iou_3d_pct", ".1f", "%", paper_text("iou_3d")),
    SummaryRow("3D IoU, as the paper measures (estimated alignment)", "reconstruction",
               "iou_3d_pct_estimated_alignment", ".1f", "%", paper_text("iou_3d"), optional=True),
    SummaryRow("3D Dice (paper's model)", "reconstruction", "dice_3d_pct", ".1f", "%"),
    SummaryRow("3D IoU, CNN baseline (ResNet)", "reconstruction", "iou_3d_pct_resnet", ".1f", "%"),
    SummaryRow("3D IoU, visible-summaries baseline (ridge on body habitus)", "reconstruction",
               "iou_3d_pct_visible_summaries", ".1f", "%", optional=True),
    SummaryRow("3D IoU, mean-shape baseline", "reconstruction", "iou_3d_pct_mean_shape", ".1f", "%"),
    SummaryRow("3D IoU, biplanar upper bound (cohorts with lateral views)", "reconstruction", "iou_3d_pct_biplanar",
               ".1f", "%", optional=True),
    SummaryRow("3D IoU ceiling of the ellipse model (true curves)", "reconstruction", "iou_3d_pct_ceiling", ".1f", "%"),
    SummaryRow("Empty reconstructed masks, failures (paper's model)", "reconstruction", "n_empty_masks", "d"),
    SummaryRow("Cobb angle MAE (paper's model)", "reconstruction", "cobb_mae_deg", ".1f", "deg"),
    SummaryRow("Scoliosis prevalence (Cobb >= 10 deg) among the evaluated subjects", "reconstruction",
               "scoliosis_prevalence_pct", ".0f", "%"),
    SummaryRow("Scoliosis sensitivity (paper's model)", "reconstruction", "scoliosis_sensitivity_pct_resnet_bot",
               ".0f", "%", optional=True),
    SummaryRow("Scoliosis specificity (paper's model)", "reconstruction", "scoliosis_specificity_pct_resnet_bot",
               ".0f", "%", optional=True),
    SummaryRow("Scoliosis balanced accuracy (paper's model)", "reconstruction",
               "scoliosis_balanced_accuracy_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis balanced accuracy, mean-shape baseline", "reconstruction",
               "scoliosis_balanced_accuracy_pct_mean_shape", ".0f", "%", optional=True),
)


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


# --------------------------------------------------------------------------- scanning
_ASSET_TAG = re.compile(r"<(script|link|img|iframe|source|audio|video|embed)\b[^>]*>", re.I)
_ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])(?P<u>(?:https?:)?//[^"')\s]+)""", re.I)


#: Hosts of script/style/font CDNs: named anywhere in a page (inline configuration included)
#: they mean the page may load from the network.
CDN_HOSTS: tuple[str, ...] = (
    "unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "cdn.plot.ly",
    "fonts.googleapis.com", "fonts.gstatic.com", "use.fontawesome.com", "code.jquery.com",
    "polyfill.io", "googletagmanager.com", "plausible.io",
)


def _is_external(url: str) -> bool:
    u = url.strip().lower()
    return u.startswith(("http://", "https://", "//"))


def external_assets(html_dir: str | Path) -> list[tuple[str, str]]:
    """Every network reference that a browser would *load* from the built book.

    Looks at ``src``/``href`` of script, link (stylesheets, fonts, preloads), img, iframe and
    media tags in every HTML file, at ``url(...)``/``@import`` in every CSS file, and for the
    hosts of :data:`CDN_HOSTS` named anywhere in a page (an inline loader configuration).
    Plain ``<a href>`` links are not loads and are not listed.

    Returns
    -------
    ``(file relative to html_dir, url)`` pairs; empty when the book is fully offline.
    """
    root = Path(html_dir)
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.html")):
        text = path.read_text(errors="replace")
        for tag in _ASSET_TAG.finditer(text):
            element = tag.group(0)
            if tag.group(1).lower() == "link" and re.search(
                    r"""rel\s*=\s*["'](?:canonical|next|prev|index|search|author|license)""",
                    element, re.I):
                continue
            for _, url in _ATTR.findall(element):
                if _is_external(url):
                    found.append((str(path.relative_to(root)), url))
        low = text.lower()
        for host in CDN_HOSTS:
            if host in low:
                found.append((str(path.relative_to(root)), f"(mentions {host})"))
    for path in sorted(root.rglob("*.css")):
        for m in _CSS_URL.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(root)), m.group("u")))
    return found


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


def _notebook_title(path: Path) -> str | None:
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell.get("source", []))
            m = re.search(r"^#\s+(.+)$", src, re.M)
            if m:
                return m.group(1).strip()
    return None


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, dict)):
        return "`" + json.dumps(v) + "`"
    if isinstance(v, str):
        return f"`{v}`" if v else "(empty)"
    return f"`{v!r}`"


def _render_summary(chapters: Mapping[str, str], keys: Mapping[str, set[str]],
                    rows: Sequence[SummaryRow]) -> str:
    """The summary table: glued values where the notebook glued them, beside the paper's."""
    out = []
    for r in rows:
        doc = chapters.get(r.section)
        if doc is not None and r.key in keys.get(r.section, set()):
            value = f"{{glue:text}}`{doc}.ipynb::{r.key}:{r.fmt}`" + (f" {r.unit}" if r.unit else "")
            if r.of_key and r.of_key in keys.get(r.section, set()):
                value += f" of {{glue:text}}`{doc}.ipynb::{r.of_key}:{r.fmt}`"
        elif doc is None:
            value = f"not run (section `{r.section}` absent)"
        else:
            value = f"not reported by `{r.section}`"
        out.append((r.label, value, r.paper or "--"))
    return _md_table(["Quantity", "This run", "Paper"], out)


def _render_provenance(run_dir: Path) -> str:
    paths = run_paths(run_dir)
    parts = []
    params = read_json(paths["params"]) if paths["params"].exists() else {}
    prov = read_json(paths["provenance"]) if paths["provenance"].exists() else {}
    state = read_json(run_dir / STATE_FILE) if (run_dir / STATE_FILE).exists() else {}
    if prov:
        git = prov.get("git", {})
        machine = prov.get("machine", {})
        data = prov.get("data", {})
        parts.append("## Run\n")
        parts.append(_md_table(["Item", "Value"], [
            ("Profile", _fmt_value(prov.get("profile"))),
            ("Git commit", _fmt_value(git.get("commit"))),
            ("Uncommitted changes", _fmt_value(git.get("dirty"))),
            ("Data manifest", _fmt_value(data.get("manifest"))),
            ("Manifest SHA-256", _fmt_value(data.get("sha256"))),
            ("Seeds", _fmt_value(prov.get("seeds"))),
            ("Kernel", _fmt_value(" ".join(prov.get("kernel", {}).get("argv", [])))),
            ("Last invocation", _fmt_value(prov.get("last_invocation", {}).get("finished"))),
            ("Subjects left out as bad data", _bad_subjects_note(run_dir)),
        ]))
        parts.append("\n\n## Sections and timings\n")
        sec_rows = []
        for name, rec in (prov.get("sections") or {}).items():
            el = rec.get("elapsed_s")
            sec_rows.append((name, rec.get("status"), rec.get("started"),
                             f"{el:.1f} s" if isinstance(el, (int, float)) else "--"))
        parts.append(_md_table(["Section", "Status", "Started (UTC)", "Time"], sec_rows))
        parts.append("\n\n## Machine\n")
        parts.append(_md_table(["Item", "Value"], [(k, _fmt_value(v)) for k, v in machine.items()]))
        parts.append("\n\n## Package versions\n")
        parts.append(_md_table(["Package", "Version"],
                               [(k, _fmt_value(v)) for k, v in (prov.get("packages") or {}).items()]))
    else:
        parts.append("This run folder has no `provenance.json`.")
    parts.append("\n\n## Parameters\n")
    if params:
        parts.append("Every parameter injected into the notebooks (`params.json`):\n\n")
        parts.append(_md_table(["Parameter", "Value"], [(k, _fmt_value(v)) for k, v in params.items()]))
    else:
        parts.append("This run folder has no `params.json`.")
    if state and state.get("sections"):
        parts.append("\n\nSection records (the cache keys of `spinelib run`) are in "
                     f"`{STATE_FILE}` in the run folder.")
    return "\n".join(parts) + "\n"


def _bad_subjects_note(run_dir: Path) -> str:
    """How many subjects the run left out (``tables/bad_subjects.csv``, spinelib.io.quality)."""
    block = (read_json(run_paths(run_dir)["metrics"]).get("data_quality")
             if run_paths(run_dir)["metrics"].exists() else None)
    if not isinstance(block, dict) or "n_bad" not in block:
        return "not recorded (the alignment section has not run)"
    stages = ", ".join(f"{n} at {s}" for s, n in (block.get("bad_by_stage") or {}).items())
    return (f"{block['n_bad']} of {block.get('n_rows', '?')} manifest rows"
            + (f" ({stages})" if stages else "") + "; listed with reasons in the alignment chapter "
            "and `tables/bad_subjects.csv`")


def _render_cohort_parameters(run_dir: Path) -> str:
    p = run_paths(run_dir)["params"]
    params = read_json(p) if p.exists() else {}
    names = ("n_subjects", "split_fractions", "seed", "mri_voxel_mm", "dxa_pixel_mm",
             "scoliosis_severity", "posture_change_mm", "n_levels")
    rows = [(n, _fmt_value(params[n])) for n in names if n in params]
    if not rows:
        return "This run folder records no parameters."
    return ("The run's cohort parameters (from `params.json`; the cohort itself was written by "
            "`spinelib synth` with the profile's values unless overridden):\n\n"
            + _md_table(["Parameter", "Value"], rows))


#: The rows of the visible-summaries table: (key in ``metrics["visible_summaries_r2"]``, label).
_SUMMARY_R2_ROWS = (("kyphosis", "Kyphosis"), ("lordosis", "Lordosis"),
                    ("anterior_depth", "Mean anterior depth (sagittal anterior curve)"))


def _render_visible_summaries_r2(run_dir: Path) -> str:
    """The R2 of the ``visible_summaries`` baseline on the test split (``metrics.json``
    block ``visible_summaries_r2``: ``kyphosis``, ``lordosis``, ``anterior_depth``, ``n``),
    or a line saying it was not run."""
    p = run_paths(run_dir)["metrics"]
    block = read_json(p).get("visible_summaries_r2") if p.exists() else None
    if not isinstance(block, Mapping):
        return ("Visible-summaries baseline: not run (the run's `metrics.json` has no "
                "`visible_summaries_r2`; the evaluation section writes it).")

    def cell(key: str) -> str:
        v = block.get(key)
        return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "--"

    n = block.get("n")
    n_text = f"{n}" if isinstance(n, int) and not isinstance(n, bool) else "--"
    return _md_table(["Measure", "R² of `visible_summaries` (test split)", "Test subjects"],
                     [(label, cell(key), n_text) for key, label in _SUMMARY_R2_ROWS])


def _fill(text: str, fills: Mapping[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group("name")
        return fills.get(name, m.group(0))

    return _MARKER.sub(repl, text)


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
    # chapters: the executed notebooks present in the run
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
    # generated pages
    fills = {
        "summary_table": _render_summary(chapters, keys, summary_rows),
        "provenance": _render_provenance(run_dir),
        "cohort_parameters": _render_cohort_parameters(run_dir),
        "visible_summaries_r2": _render_visible_summaries_r2(run_dir),
        "chapters": "\n".join(
            f"- {{doc}}`{doc}`" for doc in chapters.values()) or "(no executed notebook in this run)",
        "run_dir": f"`{run_dir}`",
    }
    for page in staging.rglob("*.md"):
        text = page.read_text()
        if _MARKER.search(text):
            page.write_text(_fill(text, fills))
    _write_toc(book_dir / "_toc.yml", staging / "_toc.yml", list(chapters.values()))
    _write_substitutions(staging / "_config.yml", substitutions())
    # plotly.js, shipped with the book (no CDN)
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not js.is_file():
        raise MissingFileError(f"plotly.min.js not found in the plotly package ({js})")
    (staging / "_static").mkdir(exist_ok=True)
    shutil.copy2(js, staging / "_static" / "plotly.min.js")
    return staging


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
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = ([str(exe)] if exe.is_file() else [sys.executable, "-m", "jupyter_book.cli.main"])
    cmd += ["build", str(staging), "--path-output", str(out), "--builder", "html"]
    if strict:
        cmd.append("--warningiserror")
    html_dir = out / "_build" / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)
    if stream is not None:
        print(f"[spinelib book] building {staging} -> {html_dir}", file=stream, flush=True)
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
    if stream is not None:
        for ln in warnings[:20]:
            print(f"[spinelib book] {ln}", file=stream)
        print(f"[spinelib book] built in {time.monotonic() - t0:.0f}s with {len(warnings)} "
              f"warning(s); log {out / '_build' / 'build.log'}", file=stream, flush=True)
    return html_dir / "index.html"

