"""Metrics of the paper: 2D curve errors, 3D overlap and distances, clinical angles.

Pure functions: arrays (or :class:`spinelib.shape.curves.SpineCurves`) in, numbers out; units in
the names. Every function validates its inputs once and raises a
:class:`spinelib.errors.SpineLibError` subclass on bad input. One topic per module, all
re-exported here:

``curves2d``
    per-curve MAE, RMSE and maximum error of the six 2D curves (:func:`curve_errors`);
``centreline``
    3D centreline deviation, level by level or at the same image rows, and the extent errors;
``overlap``
    IoU and Dice of two masks;
``surface``
    a mask's surface voxels; directed surface distances, HD95 and the mean surface distance of
    two masks;
``tangents``
    the tangent angle of a centreline (a local quadratic fit);
``clinical``
    Cobb angle, kyphosis and lordosis of a curve set;
``r2``
    R2 of the clinical measures that predicted curves imply, over a cohort;
``bootstrap``
    the percentile bootstrap over subjects that every interval of the study uses.

References
----------
Bourigault, Jamaludin, Zisserman, *3D Spine Shape Estimation from Single 2D DXA*, MICCAI 2024
(its evaluation section: curve MAE, 3D curve deviation, IoU; clinical measures).

Examples
--------
>>> import numpy as np
>>> a = np.zeros((10, 10, 10), bool); a[2:6, 2:6, 2:6] = True
>>> b = np.zeros_like(a); b[4:8, 2:6, 2:6] = True
>>> iou_3d(a, b), dice_3d(a, b)
(0.3333333333333333, 0.5)
"""

from __future__ import annotations

from .bootstrap import check_bootstrap, percentile_interval, resample_indices
from .centreline import centreline_deviation_mm, centreline_same_row_mm, extent_errors_mm
from .clinical import (END_MARGIN_MM, MIN_SWING_DEG, PARTIAL_WIDTH_RATIO, THORACIC_FRACTION, CobbResult,
                       clinical_measures, cobb_angle, kyphosis_deg, lordosis_deg)
from .curves2d import curve_errors
from .overlap import dice_3d, iou_3d
from .r2 import r2_interval, r2_score, summary_r2
from .surface import hausdorff95_mm, mean_surface_distance_mm, surface_distances_mm, surface_voxels
from .tangents import TANGENT_WINDOW_MM, tangent_angles_deg

__all__ = [
    "curve_errors",
    "centreline_deviation_mm",
    "centreline_same_row_mm",
    "extent_errors_mm",
    "iou_3d",
    "dice_3d",
    "surface_voxels",
    "surface_distances_mm",
    "hausdorff95_mm",
    "mean_surface_distance_mm",
    "CobbResult",
    "tangent_angles_deg",
    "cobb_angle",
    "kyphosis_deg",
    "lordosis_deg",
    "clinical_measures",
    "r2_score",
    "summary_r2",
    "r2_interval",
    "check_bootstrap",
    "resample_indices",
    "percentile_interval",
    "THORACIC_FRACTION",
    "TANGENT_WINDOW_MM",
    "MIN_SWING_DEG",
    "PARTIAL_WIDTH_RATIO",
    "END_MARGIN_MM",
]
