"""Two-stage DXA <-> MRI planar alignment (paper, Figure 2; Windsor et al. 2021).

Modules: :mod:`~spinelib.align.features` (thickness maps, spine projections),
:mod:`~spinelib.align.ncc` (masked NCC by FFT), :mod:`~spinelib.align.search`
(the two stages' searches), :mod:`~spinelib.align.pair` (:func:`align_pair`),
:mod:`~spinelib.align.cohort` (:func:`align_cohort`), their settings :mod:`~spinelib.align.config`
(:class:`AlignConfig`); the benchmark entry is :mod:`spinelib.bench.align`.
"""

from .config import AlignConfig
from .cohort import ALIGNMENT_COLUMNS, align_cohort, align_loaded, align_subject, summarize_alignment
from .features import (
    SPINE_BONE_LABELS,
    WorldMap,
    dxa_on_grid,
    dxa_thickness,
    mri_coronal_thickness,
    mri_spine_projection,
)
from .ncc import ncc_fft
from .pair import AlignmentResult, align_pair
from .search import Hit, refine_spine, search_near, search_rotation

__all__ = [
    "ALIGNMENT_COLUMNS",
    "AlignConfig",
    "AlignmentResult",
    "Hit",
    "SPINE_BONE_LABELS",
    "WorldMap",
    "align_cohort",
    "align_loaded",
    "align_pair",
    "align_subject",
    "dxa_on_grid",
    "dxa_thickness",
    "mri_coronal_thickness",
    "mri_spine_projection",
    "ncc_fft",
    "refine_spine",
    "search_near",
    "search_rotation",
    "summarize_alignment",
]
