"""The built book in headless Chromium: every chapter renders, nothing leaves the machine,
the Plotly 3D spine is drawn with WebGL and framed whole, and no page carries progress-bar
text or warnings; screenshots go to the run folder.

Needs Debian's ``chromium`` (``make browser``, part of ``make test``), driven by the
``playwright`` package with ``executable_path``; no browser is downloaded.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import spinelib_tests_pipeline_fixtures as fx
from spinelib.profiles import TUNED_ON


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


#: Text of a tqdm bar (``45%|####  | 9/20 [00:01<00:02, 4.5it/s]``), of a printed warning, or
#: of a Python object's repr in the prose (a glued Markdown value cited with ``{glue:text}``
#: instead of ``{glue:md}`` renders as ``<IPython.core.display.Markdown object>``).
NOISE = re.compile(r"\d+%\||it/s\]|s/it\]|TqdmWarning|IProgress not found|Warning:|<IPython\.[\w.]+ object>")


def _page_noise(page) -> list[str]:
    """Progress-bar, warning or object-repr text on the current page, and its stderr output blocks."""
    text = page.locator("article").first.inner_text()
    found = [m.group(0) for m in NOISE.finditer(text)]
    found += [f"stderr block: {t[:120]!r}" for t in page.locator("article .stderr").all_inner_texts()]
    return found


def _drawn_pixels(png: bytes):
    """Boolean (H, W) mask of the pixels that are not the white background."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return (255 - rgb).max(axis=2) > 30


def _hide_axes_and_overlays(plot) -> None:
    """Leave only the meshes in a Plotly figure's 3D canvases: axes off (the ranges are fixed,
    so the projection does not change) and the SVG layers hidden (legend, titles, slider)."""
    plot.evaluate(
        "(gd) => { const u = {};"
        " for (const k of Object.keys(gd._fullLayout).filter(k => /^scene\\d*$/.test(k)))"
        "   for (const a of ['xaxis', 'yaxis', 'zaxis']) u[k + '.' + a + '.visible'] = false;"
        " return Plotly.relayout(gd, u).then(() =>"
        "   gd.querySelectorAll('.main-svg').forEach(s => s.style.visibility = 'hidden')); }")


def _wait_still(page, plot) -> None:
    """Wait until a Plotly figure plays no animation (the book's figures turn once on load;
    interrupting that leaves an unhandled promise rejection on the page)."""
    idle = ("(gd) => { const t = gd._transitionData;"
            " return !t || (!t._animationRaf && !(t._frameQueue && t._frameQueue.length)); }")
    for _ in range(60):
        if plot.evaluate(idle):
            page.wait_for_timeout(400)
            if plot.evaluate(idle):
                return
        page.wait_for_timeout(500)
    raise AssertionError("the Plotly figure is still animating after 54 s")


def _check_framed(plot, shots: Path, tag: str) -> list[str]:
    """Screenshot every 3D scene canvas of a Plotly figure (after :func:`_hide_axes_and_overlays`)
    and report scenes whose spine is missing or touches an edge of the canvas."""
    import numpy as np

    problems = []
    canvases = plot.locator("canvas")
    for i in range(canvases.count()):
        canvas = canvases.nth(i)
        box = canvas.bounding_box()
        if not box or box["width"] < 20 or box["height"] < 20:
            continue
        mask = _drawn_pixels(canvas.screenshot(path=str(shots / f"{tag}_scene{i}.png")))
        if mask.sum() < 200:
            problems.append(f"{tag} scene {i}: no spine drawn ({int(mask.sum())} pixels)")
            continue
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        h, w = mask.shape
        edge = 3
        if rows[0] < edge or rows[-1] >= h - edge or cols[0] < edge or cols[-1] >= w - edge:
            problems.append(f"{tag} scene {i}: spine touches the canvas edge (rows {rows[0]}-{rows[-1]} of {h}, "
                            f"columns {cols[0]}-{cols[-1]} of {w})")
    return problems


def test_real_smoke_book_renders_offline_with_a_drawn_3d_spine(smoke_book, browser_page):
    run, html = smoke_book
    page, outside, errors = browser_page
    chapters = sorted((html / "notebooks").glob("*.html"))
    assert [p.stem for p in chapters] == ["01_alignment", "02_training", "03_curve_accuracy_2d",
                                          "04_reconstruction_3d", "05_qualitative", "06_scaling"]
    noise = {}
    for path in _pages(html):
        page.goto(path.as_uri(), wait_until="load")
        assert page.locator("article h1").first.inner_text().strip(), path.name
        if found := _page_noise(page):
            noise[path.name] = found[:5]
    assert noise == {}, f"progress bars, warnings or object reprs on the book's pages: {noise}"
    # what each choice was tuned on is read in full, not cut to a column width
    page.goto((html / "notebooks" / "02_training.html").as_uri(), wait_until="load")
    shown = " ".join(page.locator("article").inner_text().split())
    cut = [choice for choice, (_, how) in TUNED_ON.items() if " ".join(how.split()) not in shown]
    assert cut == [], f"tuning records not shown in full: {cut}"
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
    _wait_still(page, plot)
    png = plot.screenshot(path=str(shots / "rotating_spine.png"))
    assert _nonblank(png) > 5.0
    # the whole spine stays in view as it turns: a quarter turn at a time, and in the picker
    names = plot.evaluate("(gd) => (gd._transitionData && gd._transitionData._frames || []).map(f => f.name)")
    assert len(names) >= 4, names
    problems = []
    _hide_axes_and_overlays(plot)
    for name in names[:: max(1, len(names) // 4)]:
        # the frame's cameras, set the way the animation sets them (only the cameras)
        plot.evaluate("(gd, n) => { const f = gd._transitionData._frames.find(f => f.name === n), u = {};"
                      " for (const k of Object.keys(f.layout)) u[k + '.camera'] = f.layout[k].camera;"
                      " return Plotly.relayout(gd, u); }", name)
        page.wait_for_timeout(800)
        problems += _check_framed(plot, shots, f"rotating_spine_{name}deg")
    plots = page.locator(".js-plotly-plot")
    if plots.count() > 1:
        picker = plots.nth(1)
        picker.scroll_into_view_if_needed()
        _wait_still(page, picker)
        _hide_axes_and_overlays(picker)
        page.wait_for_timeout(800)
        problems += _check_framed(picker, shots, "subject_picker")
    assert problems == [], problems
    assert outside == [], f"requests left the machine: {outside}"
    assert errors == [], f"JavaScript errors: {errors}"
