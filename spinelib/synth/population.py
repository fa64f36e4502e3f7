"""Demographics of the synthetic cohort: an adult population like UK Biobank's imaging cohort.

UK Biobank imaging participants are 45-82 years old, about half women, with body height
and BMI varying as in a middle-aged British population (men 176 +/- 7 cm, women
163 +/- 6.5 cm; BMI about 26.5 +/- 4.3, right-skewed). Other parts of the generator
depend on these numbers as much as real bodies do, and no more: the column's length
follows height closely, vertebral cross-sections only moderately; torso depth and fat
follow BMI and sex with their own individual spread; kyphosis and lordosis depend on
age, sex and BMI only as weakly as the literature reports (``shape``). So what the DXA
shows about the body says little about the spine's sagittal shape beyond those weak
correlations.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_demographics", "AGE_RANGE"]

AGE_RANGE = (45.0, 80.0)


def draw_demographics(rng: np.random.Generator) -> dict:
    """Draw ``{"age", "sex", "height_cm", "weight_kg", "bmi"}`` of one adult.

    Ages are uniform-ish over 45-80 with a mild bulge in the sixties (a beta shape),
    height is normal by sex, BMI log-normal (right tail of obesity), clipped to 17-45.
    """
    lo, hi = AGE_RANGE
    age = lo + (hi - lo) * rng.beta(1.6, 1.5)
    sex = "F" if rng.random() < 0.52 else "M"
    if sex == "M":
        height = rng.normal(176.0, 7.0)
    else:
        height = rng.normal(163.0, 6.5)
    height = float(np.clip(height, 145.0, 200.0))
    bmi = float(np.clip(np.exp(rng.normal(np.log(26.3), 0.155)), 17.0, 45.0))
    weight = bmi * (height / 100.0) ** 2
    return {
        "age": round(float(age), 2),
        "sex": sex,
        "height_cm": round(height, 2),
        "weight_kg": round(float(weight), 2),
        "bmi": round(bmi, 3),
    }
