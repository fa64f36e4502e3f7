"""spinelib.run.book: the Jupyter Book of a run, built offline from executed notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import spinelib_tests_pipeline_fixtures as fx
import yaml

from spinelib.run.book import BOOK_DIR, glued_keys, stage_book
from spinelib.run.book_offline import external_assets
from spinelib.errors import MissingFileError


_TAG = re.compile(r"<(script|link)\b[^>]*>", re.I)
_URL = re.compile(r"""\b(?:src|href)\s*=\s*["'](https?:)?//""", re.I)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    run, index = fx.fixture_book(tmp_path_factory.mktemp("fixture_book"))
    return run, index.parent


def test_config_is_offline_and_not_executing():
    cfg = yaml.safe_load((BOOK_DIR / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert "dollarmath" not in cfg["parse"]["myst_enable_extensions"]
    assert "plotly.min.js" in cfg["sphinx"]["config"]["html_js_files"]
    assert cfg["sphinx"]["config"]["nb_ipywidgets_js"] == {}
    bib = (BOOK_DIR / "references.bib").read_text()
    for key in ("bourigault2024spine", "windsor2021alignment", "cobb1948", "blandaltman1986",
                "taha2015metrics", "nikolov2021surface", "srinivas2021botnet", "he2016resnet",
                "wightman2019timm"):
        assert "{" + key + "," in bib


@pytest.mark.slow
def test_every_chapter_and_page_built(book):
    _, html = book
    assert (html / "index.html").is_file()
    for sec in fx.FIXTURE_SECTIONS:
        assert (html / "notebooks" / f"{Path(sec.notebook).stem}.html").is_file()
    for page in ("intro", "summary", "synthetic_cohort", "provenance", "bibliography"):
        assert (html / f"{page}.html").is_file(), page
    # the paper's chapters absent from this run are not in the book
    assert not (html / "notebooks" / "01_alignment.html").exists()
    assert (html / "_static" / "plotly.min.js").stat().st_size > 1_000_000


@pytest.mark.slow
def test_no_script_style_or_font_from_the_network(book):
    _, html = book
    files = list(html.rglob("*.html"))
    assert len(files) >= 8
    for f in files:
        for tag in _TAG.finditer(f.read_text()):
            assert not _URL.search(tag.group(0)), f"{f}: {tag.group(0)}"
    assert external_assets(html) == []
    # the plotly figure relies on the shipped plotly.js, never a CDN copy
    spine = (html / "notebooks" / "c_spine3d.html").read_text()
    assert "Plotly.newPlot" in spine and "plotly.min.js" in spine
    assert "cdn.plot.ly" not in spine


@pytest.mark.slow
def test_summary_glues_numbers_beside_the_paper(book):
    _, html = book
    text = re.sub(r"<[^>]+>", " ", (html / "summary.html").read_text())
    text = re.sub(r"\s+", " ", text)
    assert "3D IoU (fixture) 83.2 % 83.8 %" in text
    assert "First value (fixture) 1.50 mm 3.12 mm" in text
    assert "not reported by second" in text


@pytest.mark.slow
def test_provenance_and_parameter_cells(book):
    run, html = book
    prov = re.sub(r"<[^>]+>", " ", (html / "provenance.html").read_text())
    assert "epochs" in prov and "papermill" in prov and "Manifest SHA-256" in prov
    spine = (html / "notebooks" / "c_spine3d.html").read_text()
    # injected parameters: collapsed but present; code cells collapsible
    assert "tag_injected-parameters tag_hide-cell" in spine
    assert "tag_hide-input" in spine
    assert "n_levels = 32" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", spine))
    assert glued_keys(run / "notebooks" / "c_spine3d.ipynb") >= {"fixture_iou_pct"}


def test_external_assets_scanner(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=X">'
        '<script src="_static/local.js"></script><a href="https://doi.org/1">doi</a>'
        '<script src="//cdn.example.org/x.js"></script><link rel="canonical" href="https://x/">')
    (tmp_path / "s.css").write_text("@font-face{src:url(https://fonts.gstatic.com/f.woff2)}")
    found = external_assets(tmp_path)
    urls = [u for _, u in found]
    assert "https://fonts.googleapis.com/css?family=X" in urls
    assert "//cdn.example.org/x.js" in urls
    assert "https://fonts.gstatic.com/f.woff2" in urls
    assert "https://doi.org/1" not in urls and "https://x/" not in urls


def test_stage_lists_only_present_chapters(tmp_path):
    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)
    src = (fx.NOTEBOOKS / "b_second.ipynb").read_text()
    (run / "notebooks" / "02_training.ipynb").write_text(src)
    staging = stage_book(run, staging=tmp_path / "stage")
    toc = yaml.safe_load((staging / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files[0] == "notebooks/02_training"
    assert not any(f.startswith("notebooks/0") and f != "notebooks/02_training" for f in files)
    summary = (staging / "summary.md").read_text()
    assert "<!-- spinelib:" not in summary and "3.12 mm" in summary
    assert "not run (section `reconstruction` absent)" in summary
    with pytest.raises(MissingFileError, match="run folder"):
        stage_book(tmp_path / "nope", staging=tmp_path / "stage2")


def test_paper_numbers_come_from_one_constant():
    from spinelib.run.book_pages import SUMMARY_ROWS
    from spinelib.paper import PAPER_RESULTS, paper_text, substitutions

    # never typed in the book's pages or the notebooks: they quote the constant
    typed = {paper_text(k).split()[0] for k in PAPER_RESULTS}
    sources = [*BOOK_DIR.glob("*.md"), *(BOOK_DIR.parent / "notebooks").glob("*.ipynb")]
    for path in sources:
        text = path.read_text()
        for number in typed:
            assert number not in text, (path.name, number)
    assert "{{ paper_centerline_3d_mm }}" in (BOOK_DIR / "intro.md").read_text()
    papers = {r.key: r.paper for r in SUMMARY_ROWS if r.paper}
    assert papers["centerline_3d_same_row_mm"] == paper_text("centerline_3d_mm") == "3.12 mm"
    assert papers["iou_3d_pct"] == substitutions()["paper_iou_3d"]


def test_stage_fills_the_paper_substitutions(tmp_path):
    from spinelib.paper import substitutions

    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)
    staging = stage_book(run, staging=tmp_path / "stage")
    cfg = yaml.safe_load((staging / "_config.yml").read_text())
    assert cfg["parse"]["myst_substitutions"] == substitutions()
    assert "substitution" in cfg["parse"]["myst_enable_extensions"]
    assert cfg["execute"]["execute_notebooks"] == "off"


def test_summary_row_of_a_total_and_optional_rows():
    from spinelib.run.book_pages import SummaryRow, _render_summary

    rows = [SummaryRow("Evaluated", "curve_accuracy", "n_eval", "d", of_key="n_all"),
            SummaryRow("Second row", "curve_accuracy", "n_second", "d", optional=True)]
    text = _render_summary({"curve_accuracy": "notebooks/03"}, {"curve_accuracy": {"n_eval", "n_all"}}, rows)
    assert "{glue:text}`notebooks/03.ipynb::n_eval:d` of {glue:text}`notebooks/03.ipynb::n_all:d`" in text
    assert "not reported by `curve_accuracy`" in text
