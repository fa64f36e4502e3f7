"""One function per step of the paper: targets from the aligned MRI (``targets``: the target set and
its file; ``subject_targets``: one subject; ``cohort_targets``: a cohort, through the fan-out);
training and predicting every model of the study (``experiment``); on synthetic cohorts, what the
AP image carries of the sagittal angles, body part by body part (``ap_information``).
"""
