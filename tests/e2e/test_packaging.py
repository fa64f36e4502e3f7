"""environment.yml and pyproject.toml must list the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
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


# ----------------------------------------------------------------------------- a regular install


def test_the_wheel_lists_every_package_of_spinelib():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "spinelib").rglob("__init__.py")}
    shipped = {"spinelib._notebooks", "spinelib._book", "spinelib._book._ext", "spinelib._book._static"}
    assert listed == found | shipped


def test_sources_are_the_checkouts_or_the_installed_copies(tmp_path):
    import pytest

    from spinelib.errors import InvalidArgumentError
    from spinelib.run.sources import is_checkout, source_dir

    package = tmp_path / "site-packages" / "spinelib"
    package.mkdir(parents=True)
    assert not is_checkout(package)
    assert source_dir("notebooks", package) == package / "_notebooks"
    assert source_dir("book", package) == package / "_book"
    (package.parent / "pyproject.toml").write_text("")
    assert is_checkout(package) and source_dir("book", package) == package.parent / "book"
    assert source_dir("notebooks") == ROOT / "notebooks"  # the tests run from a checkout
    with pytest.raises(InvalidArgumentError, match="notebooks"):
        source_dir("chapters")


def test_a_regular_install_runs_a_section_and_builds_its_book(smoke_cohort, tmp_path):
    # pip install . (not editable) into a folder of its own; run from elsewhere, the
    # installed copy (not the checkout) must find its notebooks and book sources
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    assert sorted(p.name for p in (site / "spinelib" / "_notebooks").glob("*.ipynb")) == \
        sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def spinelib(*args):
        return subprocess.run([sys.executable, "-m", "spinelib.cli", *args], env=env, cwd=work, text=True,
                              capture_output=True, timeout=900)

    where = subprocess.run([sys.executable, "-c", "import spinelib; print(spinelib.__file__)"], env=env, cwd=work,
                           text=True, capture_output=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    run = spinelib("run", "--profile", "smoke", "--data", str(smoke_cohort), "--out", "run", "--sections", "alignment")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "run" / "notebooks" / "01_alignment.ipynb").is_file()
    book = spinelib("book", "--run", "run")
    assert book.returncode == 0, book.stderr[-3000:]
    assert (work / "run" / "book" / "_build" / "html" / "index.html").is_file()
    assert not (site / "spinelib" / "_book" / "_build").exists()
