"""Real-data path end to end, on synthetic subjects whose truth is known (slow).

The smoke cohort's subjects are written as UK Biobank bulk zips (``tests/data/ukb_zips.py``),
ingested without segmentation (as a new user would), given TotalSegmentator-like
``vertebrae_mr`` / ``total_mr`` outputs on the ingested MRI grid
(``tests/data/totalseg_fixtures.py``, standing in for running TotalSegmentator on
``mri_water.nii.gz``), ingested again with ``--seg`` (which calls the adapter
:func:`spinelib.ingest.segment.seg_from_totalsegmentator`), and aligned by ``spinelib run
--profile smoke --sections alignment``. The synthetic cohort itself is aligned the same way.

An ingested cohort has no ``truth.json``, so the errors are computed here from the
generator's truth, in DXA pixels: the ingested DXA's pixel spacing comes from the DICOM
ExposedArea (whole millimetres) and differs slightly from the generator's, so each run's
estimated transform is read with its own cohort's spacing, and the distance between where
it puts each vertebra and where the vertebra truly is is measured with the true spacing.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spinelib import cli
from spinelib.io import read_dxa, read_manifest, read_truth
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import SECTIONS
from spinelib.profiles import get_profile
from spinelib.spine import LEVELS
from spinelib.synth.subject import make_subject
from spinelib.geometry.transform import PlanarTransform, apply2d, dxa_pixel_to_frame, dxa_pixel_to_mri
from spinelib.synth.config import SynthConfig

pytestmark = pytest.mark.slow

N_SUBJECTS = 40
EID0 = 1_000_000


def _centres(truth: dict, key: str) -> np.ndarray:
    c = truth[key]
    return np.array([c[lv] for lv in LEVELS], dtype=float)[:, [0, 2]]


def vertebra_errors_mm(est: PlanarTransform, est_spacing, truth: dict, shape, true_spacing) -> np.ndarray:
    """(17,) distances (mm, true DXA spacing) between the DXA pixel where ``est`` (read with
    the spacing its cohort recorded) puts each MRI vertebral centre and the pixel where the
    vertebra truly is (DXA-session position)."""
    true = PlanarTransform.from_dict(truth["transform"])
    pts = _centres(truth, "vertebra_centres_mm")
    seen = true.inverse().apply(_centres(truth, "vertebra_centres_dxa_session_mm"))
    seen_px = apply2d(np.linalg.inv(dxa_pixel_to_frame(shape, true_spacing)), seen)
    est_px = apply2d(np.linalg.inv(dxa_pixel_to_mri(est, shape, est_spacing)), pts)
    return np.linalg.norm((est_px - seen_px) * np.asarray(true_spacing, float), axis=1)


def _errors(run: Path, ids: dict[str, int], spacing: dict[str, tuple], truths: dict[int, dict],
            shapes: dict[int, tuple], true_spacing) -> pd.DataFrame:
    df = pd.read_csv(run / "tables" / "alignment.csv", dtype={"subject_id": str})
    rows = []
    for r in df.itertuples():
        idx = ids[r.subject_id]
        rec = {"index": idx, "trusted": bool(r.trusted), "error_mm_mean": np.nan, "table_error": r.error_mm_mean}
        if np.isfinite(r.theta_deg):
            est = PlanarTransform(r.theta_deg, r.tx_mm, r.ty_mm)
            rec["error_mm_mean"] = float(vertebra_errors_mm(est, spacing[r.subject_id], truths[idx], shapes[idx],
                                                            true_spacing).mean())
        rows.append(rec)
    return pd.DataFrame(rows).set_index("index").sort_index()


def test_ukb_zips_to_aligned_cohort_match_synthetic(smoke_cohort, tmp_path, capsys):
    import spinelib_tests_totalseg_fixtures as tsf
    import spinelib_tests_ukb_zips as uz

    params = get_profile("smoke", {"n_subjects": N_SUBJECTS})
    syn = read_manifest(smoke_cohort)
    assert len(syn) == N_SUBJECTS
    dxa_dir, mri_dir, seg_dir, cohort = (tmp_path / d for d in ("dxa", "mri", "seg", "cohort"))
    dxa_dir.mkdir()
    mri_dir.mkdir()
    subjects = {}
    for idx in range(N_SUBJECTS):
        s = make_subject(idx, SynthConfig.from_profile(params))
        subjects[idx] = s
        uz.write_ukb_zips_from_synth(s, dxa_dir, mri_dir, str(EID0 + idx))

    # 1. ingest without segmentation: every subject written, none in a manifest yet
    assert cli.main(["ingest", "ukb", "--dxa-zips", str(dxa_dir), "--mri-zips", str(mri_dir),
                     "--out", str(cohort), "--jobs", "2"]) == 1
    # 2. "TotalSegmentator" on each ingested mri_water.nii.gz, output on its grid
    for idx, s in subjects.items():
        eid = str(EID0 + idx)
        img = nib.load(str(cohort / eid / "mri_water.nii.gz"))
        tsf.write_totalseg_outputs(seg_dir, eid, s.seg, s.affine, idx, params, target=(img.shape[:3], img.affine))
    # 3. ingest again with the segmentations (resumes; adds seg.nii.gz and the manifest)
    assert cli.main(["ingest", "ukb", "--dxa-zips", str(dxa_dir), "--mri-zips", str(mri_dir),
                     "--seg", str(seg_dir), "--out", str(cohort), "--jobs", "2"]) == 0
    ing = read_manifest(cohort / "manifest.csv")
    assert len(ing) == N_SUBJECTS and set(ing["truth_path"]) == {""}

    # 4. the ingested cohort through the book intro's commands (ids shown, not hashed, to
    #    match subjects): every section, then the book
    runs = {"synthetic": tmp_path / "run-synthetic", "ingested": tmp_path / "run-ingested"}
    assert cli.main(["run", "--profile", "smoke", "--data", str(cohort / "manifest.csv"),
                     "--out", str(runs["ingested"]), "--show-ids"]) == 0
    capsys.readouterr()
    assert cli.main(["book", "--run", str(runs["ingested"])]) == 0
    index = Path(capsys.readouterr().out.strip().splitlines()[-1])
    check_ingested_run(runs["ingested"], index, n_test=int((ing["split"] == "test").sum()))
    # the synthetic cohort: its alignment section only, as the reference
    run_pipeline(runs["synthetic"], profile="smoke", data=str(smoke_cohort), table=SECTIONS[:1],
                 overrides={"show_ids": True}, stream=None, progress_bar=False)
    summary = compare_alignment(runs, syn, ing, subjects)
    (tmp_path / "e2e_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    assert summary["n_trusted_both"] >= 0.8 * N_SUBJECTS
    assert abs(summary["n_trusted_ingested"] - summary["n_trusted_synthetic"]) <= 2
    assert abs(summary["error_mm_mean_ingested"] - summary["error_mm_mean_synthetic"]) <= 0.5
    assert abs(summary["paired_error_mm_mean_ingested"] - summary["paired_error_mm_mean_synthetic"]) <= 0.5


def check_ingested_run(run: Path, index: Path, n_test: int) -> None:
    """A real cohort's run: every section ran, the models were evaluated on its test split
    against the (only) targets it has, those of the estimated alignment; no biplanar model (a
    whole-body DXA has no lateral view); the book built without a missing number."""
    metrics = json.loads((run / "metrics.json").read_text())
    models = metrics["models"]
    assert set(models) == {"mean_shape", "visible_summaries", "resnet", "resnet_bot"}, sorted(models)
    for name, block in models.items():
        assert block["n_test"] == n_test and 0 < block["n_evaluated"] <= n_test, (name, block)
        assert np.isfinite(block["centerline_3d_same_row_mm"]), name
    assert index.name == "index.html" and index.is_file(), index
    log = (index.parents[1] / "build.log").read_text()
    assert "No key" not in log and "Traceback" not in log, [ln for ln in log.splitlines() if "WARNING" in ln][:5]


def compare_alignment(runs: dict[str, Path], syn, ing, subjects: dict) -> dict:
    """Alignment errors of both runs against the generator's truth (see the module docstring)."""
    truths = {int(r.subject_id[1:]): read_truth(r.truth_path) for r in syn.itertuples()}
    shapes = {i: subjects[i].bone.shape for i in subjects}
    true_spacing = tuple(float(v) for v in subjects[0].pixel_spacing_mm)
    syn_ids = {str(r.subject_id): int(r.subject_id[1:]) for r in syn.itertuples()}
    ing_ids = {str(r.subject_id): int(r.subject_id) - EID0 for r in ing.itertuples()}
    syn_sp = {k: true_spacing for k in syn_ids}
    ing_sp = {str(r.subject_id): tuple(read_dxa(r.dxa_path).pixel_spacing_mm) for r in ing.itertuples()}
    e_syn = _errors(runs["synthetic"], syn_ids, syn_sp, truths, shapes, true_spacing)
    e_ing = _errors(runs["ingested"], ing_ids, ing_sp, truths, shapes, true_spacing)
    # the errors computed here are the pipeline's own on the synthetic cohort (up to the
    # table's six significant digits of the transform)
    np.testing.assert_allclose(e_syn["error_mm_mean"], e_syn["table_error"], atol=2e-3)

    both = e_syn["trusted"] & e_ing["trusted"]
    summary = {
        "n_subjects": N_SUBJECTS,
        "n_trusted_synthetic": int(e_syn["trusted"].sum()),
        "n_trusted_ingested": int(e_ing["trusted"].sum()),
        "n_trusted_both": int(both.sum()),
        "error_mm_mean_synthetic": float(e_syn.loc[e_syn["trusted"], "error_mm_mean"].mean()),
        "error_mm_mean_ingested": float(e_ing.loc[e_ing["trusted"], "error_mm_mean"].mean()),
        "paired_error_mm_mean_synthetic": float(e_syn.loc[both, "error_mm_mean"].mean()),
        "paired_error_mm_mean_ingested": float(e_ing.loc[both, "error_mm_mean"].mean()),
        "paired_abs_diff_mm_mean": float((e_syn.loc[both, "error_mm_mean"] - e_ing.loc[both, "error_mm_mean"]).abs().mean()),
    }
    return summary
