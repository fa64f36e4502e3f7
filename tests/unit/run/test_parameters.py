"""spinelib.run.parameters: a run's parameters from its profile, overrides and previous params.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spinelib.errors import MissingFileError, ProfileError
from spinelib.io.runfolder import run_paths
from spinelib.profiles import get_profile
from spinelib.run.parameters import RUN_PARAMETERS, profile_overrides, resolve_params


def _run(tmp_path: Path, previous: dict | None = None) -> tuple[Path, Path]:
    """A run folder (with ``previous`` as its params.json) and a data manifest."""
    run = tmp_path / "run"
    run.mkdir()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject_id\n")
    if previous is not None:
        run_paths(run)["params"].write_text(json.dumps(previous))
    return run, manifest


def test_profile_overrides_are_the_values_that_differ_from_the_profile():
    smoke = get_profile("smoke")
    params = {**smoke, "epochs": smoke["epochs"] + 1, "seed": smoke["seed"], "run_dir": "r", "data": "d",
              "not_a_parameter": 1}
    assert profile_overrides(params) == {"epochs": smoke["epochs"] + 1}
    assert profile_overrides(smoke) == {}
    assert profile_overrides({**smoke, "profile": "no_such_profile", "epochs": 99}) == {}
    assert profile_overrides({"epochs": 99}) == {}


def test_resolve_params_carries_the_previous_overrides_of_the_same_profile(tmp_path):
    smoke = get_profile("smoke")
    run, manifest = _run(tmp_path, {**smoke, "epochs": 7, "lr": 0.5, "gone": 1, "data": "x", "run_dir": "y"})
    params = resolve_params(run, data=manifest, overrides={"lr": 0.25})
    assert params["profile"] == "smoke" and params["epochs"] == 7 and params["lr"] == 0.25
    assert "gone" not in params  # a parameter the profile no longer has is left behind, not refused
    assert params["run_dir"] == str(run.resolve()) and params["data"] == str(manifest.resolve())
    assert profile_overrides(params) == {"epochs": 7, "lr": 0.25}
    # the previous data is used when none is given; another profile drops the overrides
    run_paths(run)["params"].write_text(json.dumps(params))
    assert resolve_params(run) == params
    default = resolve_params(run, profile="default")
    assert default["epochs"] == get_profile("default")["epochs"] and profile_overrides(default) == {}


def test_resolve_params_refuses(tmp_path):
    run, manifest = _run(tmp_path)
    with pytest.raises(MissingFileError, match="no data manifest"):
        resolve_params(run)
    with pytest.raises(MissingFileError, match="does not exist"):
        resolve_params(run, data=tmp_path / "nope.csv")
    with pytest.raises(ProfileError, match="own option"):
        resolve_params(run, data=manifest, overrides={RUN_PARAMETERS[0]: "x"})
    with pytest.raises(ProfileError, match="unknown parameter"):
        resolve_params(run, data=manifest, overrides={"no_such_param": 1})
