"""Synthetic paired DXA/MRI cohort with known ground truth (anatomy, volumes, DXA projection, cohort)."""
