"""Two-stage DXA <-> MRI planar alignment (:mod:`spinelib.align.planar`) and its
cohort driver (:mod:`spinelib.align.cohort`)."""

from .cohort import ALIGNMENT_COLUMNS, align_cohort, align_subject, summarize_alignment
from .planar import (
    SPINE_BONE_LABELS,
    AlignmentResult,
    WorldMap,
    align_pair,
    dxa_on_grid,
    dxa_thickness,
    mri_coronal_thickness,
    mri_spine_projection,
    ncc_fft,
    refine_spine,
    search_rotation,
)

__all__ = [
    "ALIGNMENT_COLUMNS",
    "align_cohort",
    "align_subject",
    "summarize_alignment",
    "AlignmentResult",
    "WorldMap",
    "SPINE_BONE_LABELS",
    "align_pair",
    "dxa_on_grid",
    "dxa_thickness",
    "mri_coronal_thickness",
    "mri_spine_projection",
    "ncc_fft",
    "refine_spine",
    "search_rotation",
]
