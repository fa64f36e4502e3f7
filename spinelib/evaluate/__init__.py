"""Evaluation of a run: 2D curve accuracy, 3D reconstruction, clinical angles, shifted cohorts.

Pure functions over an :class:`EvalSet` (targets, predictions, alignment and manifest rows of
the same subjects) that return tables (pandas DataFrames) and ``metrics.json`` blocks; the
evaluation notebooks (``03_curve_accuracy_2d``, ``04_reconstruction_3d``) only call them.

Modules: :mod:`.cohort` (which subjects, against which reference), :mod:`.shifted` (the
shifted cohort and its cache), :mod:`.subject_files` (which DXAs load, their geometry, the
generator's true angles and hidden depth),
:mod:`.curves2d` (per-curve and per-level errors, paired comparisons), :mod:`.volume3d`
(IoU, Dice, surface distances, centreline deviation level by level and at the same rows,
extent errors, against the true spine column),
:mod:`.clinical` (Cobb, kyphosis, lordosis; severity and region breakdowns), :mod:`.scoliosis` (scoliotic or
straight: the clinical rule, the validation operating point, the ROC AUC),
:mod:`.error_parts` (where a model's 3D error comes from: one part of its prediction taken from
the target at a time, and on synthetic cohorts the part no reader of the AP image removes), :mod:`.stats` (summaries, paired bootstrap, Bland-Altman).
"""

from .clinical import (ANGLES, LARGE_CURVE_DEG, SEVERITY_LABELS, TARGET_CURVES, angle_error_summary, angle_table,
                       cobb_errors, group_summary, large_curve_cobb, reference_cobb, region_table, severity_bins)
from .cohort import (REFERENCE_LABELS, REFERENCES, EvalSet, coverage_sentence, eval_set, evaluation_block,
                     has_truth_targets, ordered_models, split_set, take_predictions, test_set, with_counts)
from .error_parts import (AP_READER, AS_PREDICTED, FLOOR_PART, PARTS, error_decomposition, error_parts_block,
                          hidden_depth_sentence, swapped_name, with_true_part)
from .curves2d import (compare_models, curve_error_summary, curve_error_table, curve_metrics_block,
                       hardest_region, level_error_table, pick_subjects, pixel_sizes)
from .scoliosis import (DECISION_RULES, SCOLIOSIS_DEG, classification_scores, decision_thresholds, operating_threshold,
                        record_operating_points, scoliosis_block, scoliosis_classification)
from .shifted import shifted_paths, shifted_set
from .stats import BootstrapResult, bland_altman, paired_bootstrap, summarize
from .subject_files import dxa_geometry, hidden_depth_offsets, loadable_dxa, truth_angles
from .volume3d import (CEILING, PAPER_RESULTS, empty_mask_table, evaluate_3d, evaluate_subject, mask_scores, subject_job,
                       paper_comparison, reconstruction_metrics_block)

__all__ = [
    "EvalSet", "eval_set", "split_set", "test_set", "shifted_set", "shifted_paths", "dxa_geometry", "truth_angles",
    "hidden_depth_offsets",
    "ordered_models", "REFERENCES", "REFERENCE_LABELS", "evaluation_block", "with_counts", "coverage_sentence", "loadable_dxa",
    "take_predictions", "has_truth_targets", "empty_mask_table",
    "curve_error_table", "curve_error_summary", "level_error_table", "hardest_region", "pick_subjects",
    "compare_models", "curve_metrics_block", "pixel_sizes",
    "CEILING", "PAPER_RESULTS", "paper_comparison", "evaluate_3d", "evaluate_subject", "subject_job", "mask_scores", "reconstruction_metrics_block",
    "ANGLES", "SEVERITY_LABELS", "TARGET_CURVES", "angle_table", "angle_error_summary", "cobb_errors", "reference_cobb",
    "LARGE_CURVE_DEG", "large_curve_cobb",
    "scoliosis_classification", "classification_scores", "scoliosis_block", "operating_threshold",
    "decision_thresholds", "record_operating_points", "DECISION_RULES", "SCOLIOSIS_DEG", "severity_bins", "group_summary", "region_table",
    "summarize", "BootstrapResult", "paired_bootstrap", "bland_altman",
    "PARTS", "AS_PREDICTED", "FLOOR_PART", "AP_READER", "with_true_part", "swapped_name", "error_decomposition",
    "error_parts_block", "hidden_depth_sentence",
]
