"""The generated parts of the book's pages: each ``<!-- spinelib:NAME -->`` line of a staged page
is replaced by Markdown made from the run (the results summary glued from the notebooks beside the
paper's numbers, the provenance and parameters, the cohort parameters, the visible-summaries R²).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..io.runfolder import read_json, run_paths
from ..paper import paper_text
from .state import STATE_FILE

__all__ = ["SummaryRow", "SUMMARY_ROWS", "fill_pages"]

#: A line that a generated part replaces: ``<!-- spinelib:NAME -->``.
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
    SummaryRow("3D IoU of the paper's model with the true sagittal centre (diagnosis: where the error is)",
               "reconstruction", "parts_iou_pct_sagittal_centre", ".1f", "%"),
    SummaryRow("Sagittal centre error that no reader of the AP image removes (synthetic cohorts: the hidden depth)",
               "reconstruction", "hidden_sagittal_mae_mm", ".2f", "mm", optional=True),
    SummaryRow("3D IoU of a reader exact in everything but the hidden depth (synthetic cohorts)", "reconstruction",
               "hidden_reader_iou_pct", ".1f", "%", optional=True),
    SummaryRow("Empty reconstructed masks, failures (paper's model)", "reconstruction", "n_empty_masks", "d"),
    SummaryRow("Cobb angle MAE (paper's model)", "reconstruction", "cobb_mae_deg", ".1f", "deg"),
    SummaryRow("Cobb angle MAE, true Cobb >= 20 deg (paper's model; interval in the reconstruction chapter)",
               "reconstruction", "cobb_mae_deg_large_curves", ".1f", "deg", optional=True),
    SummaryRow("Scoliosis prevalence (Cobb >= 10 deg) among the evaluated subjects", "reconstruction",
               "scoliosis_prevalence_pct", ".0f", "%"),
    SummaryRow("Scoliosis sensitivity, clinical rule: predicted Cobb >= 10 deg (paper's model)", "reconstruction",
               "scoliosis_sensitivity_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis specificity, clinical rule (paper's model)", "reconstruction",
               "scoliosis_specificity_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis ROC AUC of the predicted Cobb angle (paper's model)", "reconstruction",
               "scoliosis_auc_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis sensitivity at the validation operating point (paper's model)", "reconstruction",
               "scoliosis_sensitivity_at_val_threshold_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis specificity at the validation operating point (paper's model)", "reconstruction",
               "scoliosis_specificity_at_val_threshold_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis balanced accuracy (paper's model)", "reconstruction",
               "scoliosis_balanced_accuracy_pct_resnet_bot", ".0f", "%", optional=True),
    SummaryRow("Scoliosis balanced accuracy, mean-shape baseline", "reconstruction",
               "scoliosis_balanced_accuracy_pct_mean_shape", ".0f", "%", optional=True),
)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (``|`` escaped, newlines flattened in cells)."""
    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt_value(v: Any) -> str:
    """A parameter's value as inline code (lists and dicts as JSON)."""
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
    """The provenance page: run, sections and timings, machine, package versions, parameters."""
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
    """The table of the run's synthetic-cohort parameters (from ``params.json``)."""
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
    block ``visible_summaries_r2``: ``kyphosis``, ``lordosis``, ``anterior_depth``, ``n``,
    and the bootstrap ``intervals`` at ``level`` when the block has them), or a line saying
    it was not run."""
    p = run_paths(run_dir)["metrics"]
    block = read_json(p).get("visible_summaries_r2") if p.exists() else None
    if not isinstance(block, Mapping):
        return ("Visible-summaries baseline: not run (the run's `metrics.json` has no "
                "`visible_summaries_r2`; the evaluation section writes it).")

    def cell(key: str) -> str:
        v = block.get(key)
        return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "--"

    def interval(key: str) -> str:
        lo_hi = (block.get("intervals") or {}).get(key)
        ok = isinstance(lo_hi, Sequence) and len(lo_hi) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in lo_hi)
        return f"[{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if ok else "--"

    n = block.get("n")
    n_text = f"{n}" if isinstance(n, int) and not isinstance(n, bool) else "--"
    level = block.get("level")
    level_text = f"{100 * level:.0f} % bootstrap interval" if isinstance(level, float) else "Bootstrap interval"
    return _md_table(["Measure", "R² of `visible_summaries` (test split)", level_text, "Test subjects"],
                     [(label, cell(key), interval(key), n_text) for key, label in _SUMMARY_R2_ROWS])


def _fill(text: str, fills: Mapping[str, str]) -> str:
    """``text`` with each marker line replaced by its fill (unknown markers kept)."""
    def repl(m: re.Match) -> str:
        name = m.group("name")
        return fills.get(name, m.group(0))

    return _MARKER.sub(repl, text)


def fill_pages(pages_dir: Path, run_dir: Path, chapters: Mapping[str, str],
               keys: Mapping[str, set[str]], rows: Sequence[SummaryRow]) -> None:
    """Replace the markers of every Markdown page under ``pages_dir`` with the run's generated parts.

    ``chapters`` maps a section name to its staged document (``notebooks/<stem>``), ``keys``
    a section name to the names its executed notebook glued; ``rows`` are the summary's lines.
    """
    fills = {
        "summary_table": _render_summary(chapters, keys, rows),
        "provenance": _render_provenance(run_dir),
        "cohort_parameters": _render_cohort_parameters(run_dir),
        "visible_summaries_r2": _render_visible_summaries_r2(run_dir),
        "chapters": "\n".join(
            f"- {{doc}}`{doc}`" for doc in chapters.values()) or "(no executed notebook in this run)",
        "run_dir": f"`{run_dir}`",
    }
    for page in pages_dir.rglob("*.md"):
        text = page.read_text()
        if _MARKER.search(text):
            page.write_text(_fill(text, fills))
