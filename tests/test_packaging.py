"""environment.yml and pyproject.toml must list the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


def _name(spec: str) -> str:
    return _NAME.match(spec).group(1).lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        deps += extra
    return {_name(d) for d in deps}


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep.get("pip", []) if not d.startswith("-")}
        elif not dep.startswith(("python", "pip")) or dep.startswith("pillow"):
            names.add(_name(dep))
    return names


def test_environment_matches_pyproject():
    assert _environment_packages() == _pyproject_packages()


def test_torch_set_pinned_identically():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {_name(d): d for d in data["project"]["dependencies"] if _name(d) in {"torch", "torchvision", "timm"}}
    env = (ROOT / "environment.yml").read_text()
    for name, spec in pins.items():
        assert "==" in spec, f"{name} must be pinned exactly"
        assert spec.replace(" ", "") in env.replace(" ", ""), f"{spec} differs in environment.yml"


def test_torchvision_imports_with_torch():
    import timm
    import torch
    import torchvision

    assert torchvision.__version__.split("+")[0]
    assert timm.create_model("resnet10t", pretrained=False, num_classes=0) is not None
    assert torch.ops.torchvision.nms is not None
