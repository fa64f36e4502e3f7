"""Regenerate the tiny fixture notebooks of the pipeline/book/browser tests.

    python tests/data/make_notebooks.py

They follow the same conventions as the science notebooks: one cell tagged ``parameters``
holding ``run_dir``, ``data``, ``profile`` and the profile parameters used (``smoke`` values),
narrative in markdown, calls into spinelib only (no ``def``/``class``).
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent / "notebooks"


def params_cell(extra: str) -> nbformat.NotebookNode:
    cell = new_code_cell('run_dir = ""\ndata = ""\nprofile = "smoke"\n' + extra)
    cell.metadata["tags"] = ["parameters"]
    return cell


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, HERE / name)


LOG = ('from pathlib import Path\n'
       'run = Path(run_dir)\n'
       'with open(run / "executions.log", "a") as fh:\n'
       '    fh.write("{name}\\n")')

write("a_first.ipynb", [
    new_markdown_cell("# Fixture: first section\n\nWrites `first.txt` into the run folder."),
    params_cell("seed = 0\n"),
    new_code_cell(LOG.format(name="first")),
    new_code_cell('import sys\n(run / "first.txt").write_text(f"seed={seed}")\n'
                  '(run / "kernel_executable.txt").write_text(sys.executable)'),
    new_code_cell('from spinelib.run.book import glue_number\nglue_number("fixture_first", 1.5)'),
])

write("b_second.ipynb", [
    new_markdown_cell("# Fixture: second section\n\nReads the first section's output."),
    params_cell("epochs = 2\n"),
    new_code_cell(LOG.format(name="second")),
    new_code_cell('first = (run / "first.txt").read_text()\n'
                  '(run / "second.txt").write_text(f"{first}; epochs={epochs}")\nprint(first, epochs)'),
])

write("c_spine3d.ipynb", [
    new_markdown_cell("# Fixture: a rotating 3D spine\n\n"
                      "An ellipsoid mesh stands in for a rebuilt spine; the number "
                      "{glue:text}`fixture_iou_pct:.1f` % is glued from this notebook."),
    params_cell("n_levels = 32\n"),
    new_code_cell(LOG.format(name="spine3d")),
    new_code_cell(
        'import numpy as np\nimport plotly.graph_objects as go\n'
        'from spinelib.run.book import glue_number, plotly_html\n'
        'u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 40), np.linspace(0, np.pi, 20))\n'
        'x = (20 * np.cos(u) * np.sin(v)).ravel()\n'
        'y = (15 * np.sin(u) * np.sin(v)).ravel()\n'
        'z = (200 * np.cos(v)).ravel()\n'
        'fig = go.Figure(go.Mesh3d(x=x, y=y, z=z, alphahull=0, color="lightsteelblue",\n'
        '                          flatshading=True))\n'
        'fig.update_layout(title="Fixture spine", margin=dict(l=0, r=0, t=30, b=0),\n'
        '                  scene=dict(aspectmode="manual",\n                  aspectratio=dict(x=0.6, y=0.6, z=1.6)))\n'
        '(run / "figures").mkdir(exist_ok=True)\n'
        'fig.write_html(run / "figures" / "fixture_spine.html", include_plotlyjs=False)\n'
        'plotly_html(fig, height=480, div_id="fixture-spine-3d")'),
    new_code_cell('glue_number("fixture_iou_pct", np.float64(83.25))\n'
                  'glue_number("fixture_levels", n_levels)'),
])

write("x_fail.ipynb", [
    new_markdown_cell("# Fixture: a failing section"),
    params_cell(""),
    new_code_cell(LOG.format(name="broken")),
    new_code_cell('raise ValueError("fixture failure: boom")'),
    new_code_cell('print("never reached")'),
])

write("y_noparams.ipynb", [
    new_markdown_cell("# Fixture: no parameters cell"),
    new_code_cell('print("hello")'),
])

write("z_badparam.ipynb", [
    new_markdown_cell("# Fixture: declares an unknown parameter"),
    params_cell("not_a_parameter = 3\n"),
    new_code_cell('print(not_a_parameter)'),
])
