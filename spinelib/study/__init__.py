"""One function per step of the paper: targets from the aligned MRI (``targets``); training and
predicting every model of the study (``experiment``).
"""
