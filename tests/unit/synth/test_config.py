"""SynthConfig: the cohort's settings read once from a profile, checked once."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError
from spinelib.io.manifest import check_split_fractions
from spinelib.profiles import PROFILE_NAMES, get_profile
from spinelib.synth.config import SIGNATURE_FIELDS, SynthConfig


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_from_profile_reads_every_key(name):
    params = get_profile(name)
    cfg = SynthConfig.from_profile(params)
    for f in dataclasses.fields(cfg):
        want = params[f.name]
        assert getattr(cfg, f.name) == (tuple(want) if isinstance(want, list) else want), f.name
    assert SynthConfig.from_profile(get_profile("default")) == dataclasses.replace(SynthConfig(), profile="default")


def test_signature_is_the_json_that_truth_files_record():
    """The signature must stay the plain values a cohort written before the config existed has in
    its truth.json, or every existing cohort would be generated again."""
    params = get_profile("smoke")
    sig = SynthConfig.from_profile(params).signature()
    assert set(sig) == set(SIGNATURE_FIELDS)
    assert sig == {"seed": 0, "mri_voxel_mm": [6.0, 6.0, 6.0], "dxa_pixel_mm": 4.4, "scoliosis_severity": 1.0,
                   "posture_change_mm": 1.0}
    assert SynthConfig.from_profile(params).with_subjects(7).signature() == sig


@pytest.mark.parametrize("field, value, match", [
    ("seed", -1, "seed"), ("seed", 1.5, "seed"), ("seed", True, "seed"),
    ("n_subjects", 0, "n_subjects"),
    ("split_fractions", (0.5, 0.5, 0.5), "split_fractions"), ("split_fractions", (0.9, 0.1), "split_fractions"),
    ("split_fractions", "abc", "split_fractions"), ("split_fractions", (1.2, -0.1, -0.1), "split_fractions"),
    ("mri_voxel_mm", (4.4, 4.4), "mri_voxel_mm"), ("mri_voxel_mm", (4.4, 0.0, 5.0), "mri_voxel_mm"),
    ("mri_voxel_mm", "4.4", "mri_voxel_mm"),
    ("dxa_pixel_mm", float("nan"), "dxa_pixel_mm"), ("dxa_pixel_mm", 0, "dxa_pixel_mm"),
    ("scoliosis_severity", -0.5, "scoliosis_severity"), ("posture_change_mm", float("inf"), "posture_change_mm"),
    ("profile", 3, "profile"),
])
def test_bad_values_are_refused_naming_the_field(field, value, match):
    with pytest.raises(InvalidArgumentError, match=match):
        SynthConfig(**{field: value})


def test_from_profile_refuses_a_missing_key_or_a_non_mapping():
    params = get_profile("smoke")
    del params["dxa_pixel_mm"]
    with pytest.raises(InvalidArgumentError, match="dxa_pixel_mm"):
        SynthConfig.from_profile(params)
    with pytest.raises(InvalidArgumentError, match="mapping"):
        SynthConfig.from_profile([("seed", 0)])


def test_generator_refuses_a_profile_dict():
    from spinelib.synth.cohort import generate_cohort
    from spinelib.synth.subject import make_subject

    with pytest.raises(InvalidArgumentError, match="SynthConfig"):
        make_subject(0, get_profile("smoke"))
    with pytest.raises(InvalidArgumentError, match="SynthConfig"):
        generate_cohort("unused", get_profile("smoke"))


@given(st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_split_fractions_accepted_exactly_when_they_sum_to_one(f):
    if abs(sum(f) - 1.0) <= 1e-6:
        assert check_split_fractions(f) == tuple(f)
    else:
        with pytest.raises(InvalidArgumentError, match="summing to 1"):
            check_split_fractions(f)
