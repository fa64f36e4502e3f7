"""Notebook kernels of a run print no progress-bar text and no warnings.

The executed notebooks become the book's pages, so whatever the kernel writes to stderr
(a tqdm bar, "TqdmWarning: IProgress not found", any warning raised on import) ends up
on a page. A notebook run through the real pipeline imports every spinelib module and
runs library loops that draw a bar on a terminal; its executed copy must hold no stderr
output at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

from spinelib.run.kernel import KERNEL_ENV, kernel_env
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import Section

DATA = Path(__file__).resolve().parents[2] / "data"

IMPORT_ALL = """\
import importlib, os, pkgutil
import spinelib
names = sorted(m.name for m in pkgutil.walk_packages(spinelib.__path__, "spinelib."))
for name in names:
    importlib.import_module(name)
# third-party packages that spinelib imports lazily, with import-time side effects of their own
import timm, torch, sklearn, plotly.graph_objects, matplotlib.pyplot  # noqa: E401
print(len(names), "modules imported; TQDM_DISABLE =", os.environ.get("TQDM_DISABLE"))
"""

LIBRARY_LOOPS = """\
import numpy as np
from tqdm import tqdm
from spinelib.learn.data import prepare_scans
from spinelib.io import DXAImage

bone = np.zeros((60, 40), np.float32)
bone[5:55, 18:23] = 1.0
scans = prepare_scans([DXAImage(bone, bone * 10, np.array([4.0, 4.0]))] * 3, pixel_mm=4.0, image_size=(32, 16))
# a third-party style bar that leaves ``disable`` at tqdm's default
total = sum(tqdm(range(3)))
print(len(scans), "scans prepared;", total)
"""


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run_dir = ""\ndata = ""\nprofile = "smoke"\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Kernel output"), params,
                nbformat.v4.new_code_cell(IMPORT_ALL), nbformat.v4.new_code_cell(LIBRARY_LOOPS)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _stderr_and_streams(nb_path: Path) -> tuple[list[str], str]:
    nb = json.loads(nb_path.read_text())
    stderr, every = [], []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = "".join(out["text"])
                every.append(text)
                if out.get("name") == "stderr":
                    stderr.append(text)
    return stderr, "".join(every)


def test_kernel_env_disables_tqdm_and_keeps_the_users_warning_filters():
    assert KERNEL_ENV.get("TQDM_DISABLE") == "1"
    assert kernel_env({})["PYTHONWARNINGS"] == "ignore:IProgress not found"
    # the user's filters stay; ours comes last, so it wins for its one message only
    assert kernel_env({"PYTHONWARNINGS": "error::DeprecationWarning"})["PYTHONWARNINGS"] == (
        "error::DeprecationWarning,ignore:IProgress not found")


def test_kernel_warning_filter_is_precise():
    """The filter ignores tqdm's one message and nothing else (run in a fresh interpreter
    with the kernel's environment)."""
    import os
    import subprocess
    import sys

    code = ("import warnings\n"
            "warnings.warn('IProgress not found. Please update jupyter and ipywidgets.')\n"
            "warnings.warn('IProgress was found', UserWarning)\n"
            "warnings.warn('a real problem', RuntimeWarning)\n")
    env = {**os.environ, **kernel_env({})}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "IProgress not found" not in done.stderr
    assert "IProgress was found" in done.stderr and "a real problem" in done.stderr
    assert "Invalid -W option" not in done.stderr


def test_executed_notebook_has_no_progress_bars_or_warnings(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "k_output.ipynb")
    manifest = tmp_path / "manifest.csv"
    shutil.copy(DATA / "manifest.csv", manifest)
    run = tmp_path / "run"
    run_pipeline(run, profile="smoke", data=manifest, notebooks_dir=nbdir,
                 table=(Section("kout", "k_output.ipynb", "Kernel output"),), stream=None, progress_bar=False)
    stderr, text = _stderr_and_streams(run / "notebooks" / "k_output.ipynb")
    assert "modules imported; TQDM_DISABLE = 1" in text
    assert "3 scans prepared; 3" in text
    assert stderr == [], f"the kernel wrote to stderr: {stderr}"
    for pattern in ("it/s]", "%|", "TqdmWarning", "Warning:"):
        assert pattern not in text, pattern


def _spinelib_sources() -> dict[str, str]:
    import spinelib

    root = Path(spinelib.__file__).parent
    return {str(p.relative_to(root.parent)): p.read_text() for p in sorted(root.rglob("*.py"))}


def test_library_bars_show_on_a_terminal_only():
    """Every spinelib bar uses the console tqdm (``tqdm.auto`` warns "IProgress not found" in
    every kernel without ipywidgets) and ``disable=None`` when progress is wanted (tqdm's
    "a bar only if the stream is a terminal"), never ``disable=not progress``, which would
    draw into notebook outputs."""
    bad = {name: [pat for pat in ("tqdm.auto", "tqdm.notebook", "tqdm.autonotebook", "disable=not progress",
                                  "disable=False") if pat in src]
           for name, src in _spinelib_sources().items()}
    # the kernel module's docs name the module whose warning the kernel filter is about
    bad = {k: v for k, v in bad.items() if v and not (k.endswith("run/kernel.py") and v == ["tqdm.auto"])}
    assert bad == {}


LOGGING_CELL = """\
import logging, multiprocessing
import spinelib
from spinelib.util.workers import process_pool

logging.getLogger("spinelib.study.experiment").info("training %s", "resnet")
logging.getLogger("spinelib.learn.train").warning("a slow epoch")
with process_pool(1, spawn=True) as pool:  # the way networks train side by side
    pool.submit(logging.getLogger("spinelib.learn.train").info, "resnet epoch 1/2 from a worker").result()
print("logged")
"""


def test_kernel_and_spawned_workers_log_to_the_terminal_and_the_run_not_the_page(tmp_path):
    """The section's records -- the kernel's and those of the processes it spawns -- are said on
    the terminal while it runs and kept in ``logs/<notebook>.log``; the page gets none."""
    import io

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run_dir = ""\ndata = ""\nprofile = "smoke"\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(LOGGING_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / "k_log.ipynb")
    manifest = tmp_path / "manifest.csv"
    shutil.copy(DATA / "manifest.csv", manifest)
    run, terminal = tmp_path / "run", io.StringIO()
    run_pipeline(run, profile="smoke", data=manifest, notebooks_dir=nbdir,
                 table=(Section("klog", "k_log.ipynb", "Kernel log"),), stream=terminal, progress_bar=False)
    said = terminal.getvalue()
    assert "[1/1] klog: training resnet" in said
    assert "[1/1] klog: WARNING a slow epoch" in said
    assert "[1/1] klog: resnet epoch 1/2 from a worker" in said
    assert said.index("training resnet") < said.index("[1/1] klog: done")
    kept = (run / "logs" / "k_log.log").read_text()
    assert "INFO spinelib.study.experiment: training resnet" in kept and "from a worker" in kept
    stderr, text = _stderr_and_streams(run / "notebooks" / "k_log.ipynb")
    assert stderr == [] and text == "logged\n"
    # a re-run starts the section's log afresh
    run_pipeline(run, notebooks_dir=nbdir, table=(Section("klog", "k_log.ipynb", "Kernel log"),), stream=None,
                 force=True)
    assert (run / "logs" / "k_log.log").read_text().count("training resnet") == 1
