"""The built book in headless Chromium: every chapter renders, nothing leaves the machine,
the Plotly 3D spine is drawn with WebGL; screenshots go to the run folder.

Needs Debian's ``chromium`` (``make browser``, part of ``make test``), driven by the
``playwright`` package with ``executable_path``; no browser is downloaded.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import spinelib_tests_pipeline_fixtures as fx


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run `make browser`"),
]


def _is_local(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in LOCAL_SCHEMES or (u.scheme in {"http", "https", "ws", "wss"}
                                         and u.hostname in LOCAL_HOSTS)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    run, index = fx.fixture_book(tmp_path_factory.mktemp("fixture_book"))
    return run, index.parent


@pytest.fixture(scope="module")
def browser_page(book):
    sync_api = pytest.importorskip("playwright.sync_api")
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def guard(route):
            if _is_local(route.request.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.on("request", lambda req: None if _is_local(req.url) else outside.append(req.url))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, outside, errors
        context.close()
        browser.close()


def _pages(html: Path) -> list[Path]:
    pages = [html / f"{p}.html" for p in
             ("intro", "summary", "synthetic_cohort", "provenance", "bibliography")]
    return pages + sorted((html / "notebooks").glob("*.html"))


def test_every_chapter_renders_offline(book, browser_page):
    run, html = book
    page, outside, errors = browser_page
    pages = _pages(html)
    assert len(pages) == 5 + len(fx.FIXTURE_SECTIONS)
    for path in pages:
        page.goto(path.as_uri(), wait_until="load")
        title = page.locator("article h1").first
        assert title.is_visible(), path.name
        assert title.inner_text().strip(), path.name
        # the theme's own scripts ran (the sidebar navigation is built)
        assert page.locator("nav.bd-links a").count() >= 5, path.name
    assert outside == [], f"requests left the machine: {outside}"
    assert errors == [], f"JavaScript errors: {errors}"
    shots = run / "screenshots"
    shots.mkdir(exist_ok=True)
    page.goto((html / "summary.html").as_uri(), wait_until="load")
    assert "83.2" in page.locator("article").inner_text()
    page.screenshot(path=str(shots / "summary.png"), full_page=True)
    assert (shots / "summary.png").stat().st_size > 10_000


def _nonblank(png: bytes) -> float:
    from PIL import Image, ImageStat

    img = Image.open(io.BytesIO(png)).convert("L")
    return max(ImageStat.Stat(img).stddev)


def test_plotly_spine_drawn_with_webgl_and_rotates(book, browser_page):
    run, html = book
    page, outside, errors = browser_page
    page.goto((html / "notebooks" / "c_spine3d.html").as_uri(), wait_until="load")
    assert page.evaluate("typeof window.Plotly") == "object"
    plot = page.locator("#fixture-spine-3d")
    plot.wait_for(state="attached", timeout=30_000)
    page.wait_for_function(
        "() => { const d = document.getElementById('fixture-spine-3d');"
        " return d && d._fullLayout && d.querySelector('canvas'); }", timeout=30_000)
    webgl = page.evaluate(
        "() => Array.from(document.querySelectorAll('#fixture-spine-3d canvas')).some(c => {"
        " try { return !!(c.getContext('webgl2') || c.getContext('webgl')); }"
        " catch (e) { return false; } })")
    assert webgl, "no WebGL canvas in the Plotly 3D figure"
    plot.scroll_into_view_if_needed()
    shots = run / "screenshots"
    shots.mkdir(exist_ok=True)
    frames = []
    for i, angle in enumerate((0, 60, 120, 180, 240, 300)):
        page.evaluate(
            "(a) => Plotly.relayout('fixture-spine-3d', {'scene.camera.eye':"
            " {x: 2.2 * Math.cos(a), y: 2.2 * Math.sin(a), z: 0.6}})",
            angle * 3.14159265 / 180)
        page.wait_for_timeout(300)
        png = plot.screenshot(path=str(shots / f"spine_rotation_{i:02d}.png"))
        frames.append(png)
    # the spine is drawn (not a blank canvas) and the views differ as it rotates
    assert min(_nonblank(f) for f in frames) > 5.0
    assert len(set(frames)) >= 3
    assert outside == [], f"requests left the machine: {outside}"
    assert errors == [], f"JavaScript errors: {errors}"


# --------------------------------------------------------------------------- the real smoke book
@pytest.fixture(scope="module")
def smoke_book(smoke_run):
    """The book of the session's real smoke run (every section), built by ``spinelib book``."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "spinelib.cli", "book", "--run", str(smoke_run)],
                          check=True, capture_output=True, text=True)
    index = Path(done.stdout.strip().splitlines()[-1])
    assert index.name == "index.html" and index.is_file(), done.stdout
    return smoke_run, index.parent


def test_real_smoke_book_renders_offline_with_a_drawn_3d_spine(smoke_book, browser_page):
    run, html = smoke_book
    page, outside, errors = browser_page
    chapters = sorted((html / "notebooks").glob("*.html"))
    assert [p.stem for p in chapters] == ["01_alignment", "02_training", "03_curve_accuracy_2d",
                                          "04_reconstruction_3d", "05_qualitative"]
    for path in _pages(html):
        page.goto(path.as_uri(), wait_until="load")
        assert page.locator("article h1").first.inner_text().strip(), path.name
    shots = run / "screenshots"
    shots.mkdir(exist_ok=True)
    page.goto((html / "summary.html").as_uri(), wait_until="load")
    page.screenshot(path=str(shots / "summary.png"), full_page=True)
    page.goto((html / "notebooks" / "05_qualitative.html").as_uri(), wait_until="load")
    assert page.evaluate("typeof window.Plotly") == "object"
    page.wait_for_function("() => document.querySelector('.js-plotly-plot canvas') !== null", timeout=30_000)
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    png = plot.screenshot(path=str(shots / "rotating_spine.png"))
    assert _nonblank(png) > 5.0
    assert outside == [], f"requests left the machine: {outside}"
    assert errors == [], f"JavaScript errors: {errors}"
