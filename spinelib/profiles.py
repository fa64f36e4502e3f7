"""The three run profiles, declared as data.

One set of notebooks runs at three scales chosen by name and overridable parameter
by parameter: ``smoke`` (tests, minutes), ``default`` (``make book`` on a 2-core
laptop CPU in about 20 minutes), ``paper`` (the paper's settings, for a GPU and a
large cohort or the real data). Every value is a plain JSON value so that papermill
can inject it and ``params.json`` can record it.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from .errors import ProfileError

__all__ = ["PROFILES", "PROFILE_NAMES", "TUNED_ON", "get_profile", "parse_override", "section_profile",
           "tuning_records"]

_BASE: dict[str, Any] = {
    # -- reproducibility and resources
    "seed": 0,
    "jobs": 2,  # worker processes for cohort-wide loops (generation, alignment, 3D evaluation)
    "engine": "local",  # where those loops run: "local" processes or "dask" (spinelib.util.workers)
    "scheduler": "",  # a running Dask scheduler's address ("" with engine dask: a LocalCluster of `jobs`)
    "allow_pickle": False,  # read DXA pickles (UK Biobank preprocessing); unpickling runs code
    # -- synthetic cohort (spinelib.synth)
    "n_subjects": 1000,
    "split_fractions": [0.7, 0.1, 0.2],  # train, val, test
    "mri_voxel_mm": [4.4, 4.4, 5.0],  # x, y, z
    "dxa_pixel_mm": 2.2,
    "scoliosis_severity": 1.0,  # multiplies the drawn coronal curve magnitudes (shifted cohorts)
    "posture_change_mm": 1.0,  # size of the posture change between the DXA and MRI sessions
    # -- alignment (spinelib.align)
    "align_pixel_mm": 4.4,  # working grid of the planar search
    "align_angle_range_deg": 8.0,  # stage-1 search covers +/- this
    "align_min_score": 0.79,  # stage-2 (spine) NCC below this: pair flagged untrustworthy
    "align_min_stage1_score": 0.985,  # stage-1 (body thickness) NCC below this: flagged too
    "n_figure_subjects": 3,  # subjects shown in per-subject figures
    # -- bad data and publishing (spinelib.io.quality, spinelib.run.privacy)
    "min_subjects": 50,  # fewer usable subjects than this (or an empty split) stops the run
    "show_ids": False,  # real cohorts: show participants' ids instead of salted hashes
    "publish_images": False,  # real cohorts: put per-subject images in the book
    # -- curves (spinelib.shape.curves)
    "n_levels": 64,  # K
    # -- model (spinelib.learn.config, spinelib.learn.data)
    "backbone": "resnet10t",  # light enough for three trainings within the 2-core CPU budget
    "image_size": [192, 96],  # crop rows, cols fed to the network
    "crop_pixel_mm": 3.3,  # pixel size of the crop
    "bot_blocks": 3,
    "bot_heads": 4,
    "bot_dim_head": 64,
    "pretrained_path": "",  # optional local weights file; never downloaded
    # a model's feature-map stride (absent: 32, the whole ResNet); 16 leaves the trunk's last stage
    # out and resnet_bot's transformer blocks take its place (BoTNet), attending over 12 x 6 positions
    "feature_stride_by_model": {"resnet_bot": 16},
    "pool": "spatial",  # how the heads reduce the feature map: "avg" (the paper) or "spatial"
    "spatial_chans": 32,  # channels per feature-map position of the "spatial" pool
    # -- training (spinelib.learn.train)
    "epochs": 12,  # the most the 20-minute book fits, the networks trained side by side (TUNED_ON)
    "batch_size": 8,  # the paper's; twice the steps of 16 at about 10 % more time (TUNED_ON)
    "lr": 2e-3,
    "lr_by_model": {},  # a model's own learning rate, replacing lr ({} = lr for every model)
    "lr_schedule": "cosine",  # "constant" (the paper) or "cosine" decay to zero
    "weight_decay": 1e-4,
    "augment": True,
    "augment_mirror": True,  # with augment: mirror half of the training crops left-right
    "extent_weight": 32.0,  # loss weight of each extent output (top, bottom); a curve value weighs 1
    # how much more often training draws the rarer scoliosis severity classes
    # (learn.sampling.severity_weights): 0 every subject alike, 1 every class equally often (TUNED_ON)
    "severity_sampling": 0.75,
    # networks trained side by side, one process each (study.experiment.train_section), and each
    # process's torch threads: on 2 cores two single-threaded trainings side by side finish a
    # fifth sooner than the same two one after the other on two threads each
    "train_jobs": 2,
    "num_threads": 1,
    # -- evaluation (spinelib.evaluate)
    "eval_grid_mm": 2.0,  # voxel size of the common 3D grid of IoU, Dice and surface distances
    "n_bootstrap": 2000,  # bootstrap resamples (over subjects) of the paired model comparisons
    # redraws of what an AP image does not show of a synthetic spine's height above the table
    # (spinelib.synth.hidden), per test subject, for the error decomposition's floor
    "hidden_depth_draws": 200,
    "shifted_data": "",  # manifest of a shifted cohort to evaluate on too ("" = skip)
    # -- scaling page (spinelib.bench.stages)
    "scale_participants": 50000,  # participants the per-subject costs are multiplied out for
    "scale_workers": 100,  # single-core cluster workers of the cluster estimate
    "bench_repeat": 3,  # timed repeats of each stage entry
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_BASE,
        "n_subjects": 40,
        "mri_voxel_mm": [6.0, 6.0, 6.0],
        "dxa_pixel_mm": 4.4,
        "align_pixel_mm": 6.6,
        "align_min_score": 0.75,  # coarser images correlate a little less
        "align_min_stage1_score": 0.97,
        "min_subjects": 10,
        "n_levels": 32,
        "backbone": "resnet10t",
        "image_size": [96, 64],
        "crop_pixel_mm": 6.6,
        "bot_blocks": 1,
        "bot_heads": 2,
        "bot_dim_head": 32,
        "epochs": 2,
        "batch_size": 8,
        "eval_grid_mm": 4.0,
        "n_bootstrap": 200,
        "hidden_depth_draws": 20,
        "bench_repeat": 1,
    },
    # resnet and resnet_bot: the same grid of learning rates at the same budget, each its best on val
    "default": {**_BASE, "lr_by_model": {"resnet_bot": 1e-3, "resnet": 5e-4, "biplanar": 1e-3}},
    "paper": {
        **_BASE,
        "n_subjects": 2000,
        "mri_voxel_mm": [2.2, 2.2, 3.0],
        "dxa_pixel_mm": 2.2,
        "align_pixel_mm": 2.2,
        "n_levels": 209,
        "backbone": "resnet50",
        "image_size": [224, 224],
        "crop_pixel_mm": 2.2,
        "bot_blocks": 3,
        "bot_heads": 4,
        "bot_dim_head": 128,
        "epochs": 2000,
        "batch_size": 8,
        "lr": 1e-5,
        "lr_schedule": "constant",
        "weight_decay": 1e-4,
        "extent_weight": 1.0,  # the paper's L1 weighs every output alike
        "severity_sampling": 0.0,  # the paper draws every subject alike
        "feature_stride_by_model": {},  # the paper's ResNet50 keeps its last stage
        "pool": "avg",
        "eval_grid_mm": 1.5,
        "n_bootstrap": 10000,
        "train_jobs": 1,  # one GPU: one network at a time
    },
}
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)

#: Which data every tuned choice was tuned on, so that no number reported on the test
#: split was chosen by looking at it: ``{choice: (data it was tuned on, how)}``. The
#: training chapter renders it; :func:`tuning_records` gives it as rows.
TUNED_ON: dict[str, tuple[str, str]] = {
    "backbone, lr, lr_schedule, weight_decay": (
        "val", "the default profile's settings, compared by the validation split's L1 loss"),
    "epochs": (
        "val", "resnet_bot and resnet at batch 8 and their learning rates, 10 / 12 / 15 epochs (cosine over the "
               "run; default cohort, generator v3), validation split against truth targets: best validation "
               "L1 resnet_bot 0.00966 / 0.00926 / 0.00889, resnet 0.01040 / 0.00967 / 0.00932; resnet_bot 3D "
               "IoU 0.609 / 0.622 / 0.635, same-row centreline 5.27 / 5.03 / 4.78 mm, Cobb MAE 3.08 / 3.35 / "
               "3.21 deg, scoliosis sensitivity 0.74 / 0.52 / 0.48 (of about 30 scoliotic validation "
               "subjects); 20 epochs: IoU 0.652. Every added epoch pays on the loss, the IoU and the "
               "centreline -> 12, the most that fits the 20-minute book with the networks trained side by "
               "side (train_jobs), where 10 fitted one after the other"),
    "severity_sampling": (
        "val", "resnet_bot and resnet at the default budget (12 epochs, batch 8, their learning rates; default "
               "cohort, generator v3), validation split against truth targets, p = 0 / 0.5 / 1 (resnet: 0 / "
               "0.5): best validation L1 resnet_bot 0.00926 / 0.00948 / 0.01016, resnet 0.00967 / 0.00938; "
               "resnet_bot 3D IoU 0.622 / 0.611 / 0.605, same-row centreline 5.03 / 5.30 / 5.58 mm, sagittal "
               "centre MAE 4.48 / 4.74 / 4.90 mm (mean_shape 7.94: ratio 0.565 / 0.598 / 0.618), Cobb MAE "
               "below 20 deg 2.93 / 2.39 / 2.08, at 20 deg and more 8.17 / 4.09 / 2.31 (8 subjects), "
               "scoliosis sensitivity 0.52 / 0.61 / 0.81 at specificity 0.97 / 1.00 / 0.97; resnet IoU "
               "0.615 / 0.625, Cobb MAE below / from 20 deg 4.45 / 3.44 and 16.6 / 9.8, sensitivity 0.19 / "
               "0.45; biplanar at p = 0.5 validation L1 0.00569, IoU 0.775 (0.0058, 0.773 at 10 epochs, "
               "p = 0) -> 0.5, the largest p tried that keeps resnet_bot's sagittal ratio within the "
               "issue's 0.6 (p = 1 reaches the sensitivity goal but leaves the sagittal one); one p for "
               "every network. Weighting each subject's loss by the same weights instead of drawing by "
               "them did worse (resnet_bot p = 0.5 / 1: IoU 0.596 / 0.543, Cobb MAE from 20 deg 5.97 / "
               "6.51), as did an L1 loss on the curves' level-to-level steps (weight 4: IoU 0.528, "
               "sensitivity 0). Refined later on another machine (Intel Xeon, 2 cores; resnet_bot, the same "
               "budget and reference, 100 validation subjects): p = 0.5 / 0.75 / 1 gave 3D IoU 0.607 / 0.615 / "
               "0.606, same-row centreline 5.26 / 5.15 / 5.47 mm, sagittal ratio 0.597 / 0.584 / 0.617, Cobb MAE "
               "2.46 / 2.51 / 3.10 deg (from 20 deg 4.60 / 4.29 / 4.29); resnet at 0.5 / 0.75 IoU 0.616 / "
               "0.611, Cobb MAE from 20 deg 11.6 / 10.0; biplanar IoU 0.772 / 0.774 of the ceiling's 0.846 -> "
               "0.75 by the same rule. Also tried there and not adopted: an L1 loss on the coronal curves' "
               "steps over 4 levels (weight 2 / 8: IoU 0.590 / 0.563 against the estimated-alignment targets, "
               "Cobb MAE from 20 deg 8.4 / 8.7); bending half of the training crops sideways, image and "
               "coronal targets together (a half or a full sine wave over the spine, up to 15 / 30 mm, at "
               "p = 0.75: IoU 0.611 / 0.606, Cobb MAE 2.93 / 3.14); 13 epochs for resnet_bot at p = 0.75 "
               "(IoU 0.615, same-row 5.21 mm, Cobb MAE from 20 deg 4.18)"),
    "pool, spatial_chans, feature_stride_by_model": (
        "val", "each network at the laptop budget (10 epochs, batch 16, cosine) on a default cohort "
               "(generator v3), 3D IoU on the validation split against truth targets: resnet_bot with the "
               "average pool at stride 32 / 16 0.549 / 0.522, with the spatial pool 0.600 / 0.586; resnet "
               "average / spatial 0.580 / 0.612; biplanar spatial at stride 32 / 16 0.752 / 0.707 (average, "
               "earlier: 0.68) -> the spatial pool for every network; stride 16 for resnet_bot (BoTNet's "
               "layout, its blocks attend over 12 x 6 positions instead of 6 x 3, at a cost within the "
               "noise of one run), 32 for resnet and biplanar (trained on a lent GPU at exactly this budget). "
               "Tried later for resnet_bot and not adopted (Intel Xeon, 2 cores; the default budget, p = 0.75, "
               "generator v3; 100 validation subjects against truth targets; 32 channels at stride 16: best "
               "validation L1 0.0095, 3D IoU 0.615, same-row centreline 5.15 mm, Cobb MAE 2.51 deg, from 20 deg "
               "4.29 over 8 subjects): stride 8 (the trunk's last two stages left out, the blocks attending "
               "over 24 x 12 positions, 1.7 times the training time) 0.0101, 0.604, 5.45 mm, 3.44 deg, 3.31; "
               "64 channels per position 0.0094, 0.621, 5.14 mm, 2.58 deg, 5.11 -> stride 16, 32 channels"),
    "batch_size, lr_by_model (resnet_bot, resnet, biplanar)": (
        "val", "the same grid and budget (10 epochs, cosine, mirrored crops) for both single-view networks, "
               "the lowest best-epoch validation L1 loss (extent weighted) of each (default cohort, generator "
               "v3, spatial pool). Batch 16, learning rates 4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4 (without mirrored "
               "crops): resnet_bot 0.0132, 0.0107, 0.0108, 0.0114, 0.0116; resnet 0.0127, 0.0110, 0.0100, "
               "0.0106, 0.0114; with mirrored crops at the chosen rates resnet_bot 0.0110 (2e-3), resnet "
               "0.0102 (1e-3). Batch 8, rates 2e-3, 1e-3, 5e-4: resnet_bot 0.01036, 0.00959, 0.01008; "
               "resnet 0.01266, 0.01042, 0.01040 -> batch 8 (the two best losses sum to 0.0200 against 0.0212 at batch "
               "16), resnet_bot 1e-3, resnet 5e-4; biplanar at batch 16, 2e-3 / 1e-3: 0.0065 / 0.0064 -> "
               "1e-3, kept at batch 8 without a new search (validation L1 0.0058, 3D IoU on val 0.773 against "
               "0.750 at batch 16 without mirrored crops)"),
    "extent_weight": (
        "val", "grid 1, 8, 32, 96 for resnet_bot at its learning rate and the same budget (default cohort, "
               "generator v3), scored on the validation split against truth targets: 3D IoU 0.530, 0.538, "
               "0.561, 0.533, bottom-of-L5 error 16.4, 11.1, 6.3, 8.4 mm -> 32; resnet at 1 and 32: IoU "
               "0.548, 0.557, bottom 18.8, 6.0 mm (same-row centreline 6.26, 7.02 mm); one weight for every "
               "network"),
    "augment_mirror": (
        "val", "resnet and resnet_bot at the default budget, without / with mirrored crops (default cohort, "
               "generator v3), validation split against truth targets: best validation L1 resnet 0.01035 / "
               "0.01020, resnet_bot 0.01134 / 0.01099; 3D IoU 0.607 / 0.606 and 0.578 / 0.582; same-row "
               "centreline 5.59 / 5.57 and 6.34 / 6.14 mm; coronal centre MAE 2.06 / 2.11 and 1.87 / 1.62 mm "
               "-> mirrored. Averaging each prediction with that of the mirrored crop raised resnet_bot's IoU "
               "to 0.590 but lowered its Cobb angles (MAE 3.26 -> 4.15 deg, sensitivity 0.57 -> 0.43): "
               "not adopted then, before severity_sampling; adopted since (mirror_average)"),
    "mirror_average (a network trained on mirrored crops read on the crop and its mirror, learn.recipe)": (
        "val", "the default book's checkpoints read without / with mirror averaging (default cohort, generator v3, "
               "severity_sampling 0.75; Intel Xeon, 2 cores; 100 validation subjects against truth targets, 23 "
               "of them scoliotic, 8 with curves of 20 deg and more): resnet_bot 3D IoU 0.615 / 0.624, same-row "
               "centreline 5.15 / 4.96 mm, level-wise 6.34 / 6.01 mm, Cobb MAE 2.50 / 1.73 deg (mean Cobb bias "
               "+1.19 / +0.10: single readings add curvature to straight spines; from 20 deg 4.29 / 4.26), "
               "sensitivity of the clinical rule 0.91 / 0.91 at specificity 0.96 / 0.99; resnet IoU 0.611 / "
               "0.620, same-row 5.29 / 5.05 mm, Cobb MAE 2.72 / 2.57 (from 20 deg 10.0 / 9.2), sensitivity "
               "0.65 / 0.61 at 0.97 / 0.99; biplanar IoU 0.774 / 0.782, same-row 2.43 / 2.23 mm, Cobb MAE "
               "2.44 / 2.04 (from 20 deg 5.11 / 4.99), sensitivity 0.83 / 0.74 at 0.99 / 1.00 -> on, for "
               "every network trained on mirrored crops. Its cost, measured afterwards on the 74 training "
               "subjects with curves of 20 deg and more (true-transform targets): resnet_bot's Cobb bias there "
               "-4.76 / -5.55 deg, the two readings' average being a little smoother than either. Also tried and "
               "not adopted: averaging over four more crops shifted by 2 / 4 pixels (resnet_bot IoU 0.628 / "
               "0.629, but Cobb MAE from 20 deg 4.64 / 5.38)"),
    "loss (the paper's L1)": (
        "val", "L1 with an added quadratic term, e^2 / (2 x 5 mm) per curve value, on the coronal curves / on "
               "all six (resnet_bot at the default budget and p = 0.75; Intel Xeon, 2 cores; 100 validation "
               "subjects against truth targets): best validation L1 0.0110 / 0.0116 against 0.0095 for L1 alone, "
               "3D IoU 0.578 / 0.576 against 0.615, same-row centreline 5.92 / 5.93 against 5.15 mm, Cobb MAE "
               "3.15 / 3.95 against 2.51 deg (from 20 deg 5.22 / 3.29 against 4.29; 8 subjects); the coronal curves' "
               "values weighing 2 / 4 against the sagittal ones' 1: coronal centre MAE 1.48 / 1.45 against 1.56 mm, "
               "but sagittal centre 4.98 / 5.05 against 4.64 mm (ratio to mean_shape 0.627 / 0.636, beyond the "
               "issue's 0.6), IoU 0.607 / 0.608, same-row 5.44 / 5.45 mm, Cobb MAE 2.75 / 2.12 (from 20 deg 4.79 / "
               "4.47) -> L1 alone, every curve value alike"),
    "checkpoint kept for each network (best.pt)": (
        "val", "the epoch with the lowest validation L1 loss"),
    "visible_summaries ridge penalty": ("val", "the validation split's mean L1 error over a grid"),
    "align_min_stage1_score": (
        "swapped pairs", "stage-1 scores of DXA and MRI of two different subjects (pairs that must be "
                         "rejected) against those of true pairs"),
    "align_min_score": (
        "train", "about the 1st percentile of the true training pairs' stage-2 scores (generator v3: "
                 "0.791 default, 0.758 smoke); swapped pairs score as high at stage 2 and are caught "
                 "at stage 1"),
    "tangent window of the clinical angles (TANGENT_WINDOW_MM)": (
        "analytic columns", "voxelised analytic spines of known angles, no cohort subject"),
    "eval_grid_mm, n_levels, image_size, crop_pixel_mm": (
        "none", "resolution chosen for the CPU budget, not tuned on any result"),
    "hidden_depth_draws": (
        "none", "enough redraws for a stable mean over the test split: 200 draws with two seeds and 1000 gave a mean "
                "offset of 2.856, 2.835 and 2.833 mm (default cohort, generator v3; a single level's median moves "
                "by about 0.35 mm between seeds at 200). A diagnosis: no model is chosen with it"),
    "train_jobs, num_threads": (
        "none", "how the training uses the machine's cores: a network's numbers change with its thread count "
                "only through rounding, and not at all with train_jobs"),
}


def tuning_records() -> list[dict[str, str]]:
    """:data:`TUNED_ON` as rows ``{"choice", "tuned_on", "how"}`` (for a table)."""
    return [{"choice": k, "tuned_on": v[0], "how": v[1]} for k, v in TUNED_ON.items()]


def get_profile(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of profile ``name`` with ``overrides`` applied.

    Raises
    ------
    ProfileError
        For an unknown profile name or an override of a parameter no profile has.
    """
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    params = copy.deepcopy(PROFILES[name])
    params["profile"] = name
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ProfileError(
                f"unknown parameter {key!r} for profile {name!r}; known: {', '.join(sorted(params))}"
            )
        params[key] = value
    return params


def section_profile(profile: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Profile ``profile`` with the values a section's notebook was run with.

    A notebook declares each parameter once, in its cell tagged ``parameters`` (where
    papermill writes the run's values); the notebook then calls
    ``section_profile(profile, globals())``, which takes every profile parameter found in
    that namespace, so a value the run changed reaches the library and one the notebook
    does not declare keeps the profile's.

    Parameters
    ----------
    profile : str, a name of :data:`PROFILES`.
    namespace : mapping of names to values (a notebook's ``globals()``); names that are not
        profile parameters are ignored.

    Returns
    -------
    dict, as :func:`get_profile` returns it.

    Raises
    ------
    ProfileError
        Unknown profile, or ``namespace`` is not a mapping.

    Examples
    --------
    >>> section_profile("smoke", {"epochs": 5, "x": 1})["epochs"]
    5
    """
    if not isinstance(namespace, Mapping):
        raise ProfileError(f"namespace must be a mapping of names to values, got {type(namespace).__name__}")
    base = get_profile(profile)
    return get_profile(profile, {k: namespace[k] for k in base if k in namespace and k != "profile"})


def parse_override(name: str, text: str, *, profile: str = "default") -> Any:
    """Turn a command-line override ``-p NAME TEXT`` into a value of the parameter's type.

    The type is taken from the profile's current value: JSON for lists, ``true/false`` for
    booleans, ``int``/``float``/``str`` otherwise.
    """
    import json

    current = get_profile(profile).get(name)
    if name not in get_profile(profile):
        raise ProfileError(f"unknown parameter {name!r}")
    try:
        if isinstance(current, bool):
            low = text.strip().lower()
            if low not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(text)
            return low in {"true", "1", "yes"}
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (list, dict)) or current is None:
            return json.loads(text)
        return text
    except ValueError:
        raise ProfileError(
            f"parameter {name!r} expects a value like {current!r}, got {text!r}"
        ) from None
