"""Imports only point down the layers of ARCHITECTURE.md.

Every module's imports are read from its source (the lazy ones inside functions too), so an
upward arrow fails here before it tangles the package. A new module must be given a layer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import spinelib

ROOT = Path(spinelib.__file__).parent

#: The table of ARCHITECTURE.md: module (or package, for all its modules) -> layer.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["errors", "spine", "profiles", "paper", "geometry"], 0),
    **dict.fromkeys(["util", "io"], 1),
    "util.workers": 2,
    **dict.fromkeys(["shape", "metrics", "synth", "align", "ingest"], 3),
    "learn": 4,
    "study": 5,
    "evaluate": 6,
    "viz": 7,
    "run.prediction_files": 8,
    **dict.fromkeys(["run", "bench"], 9),
    **dict.fromkeys(["cli", ""], 10),
}


def module_names() -> list[str]:
    """Dotted names below ``spinelib`` of every module ("" for the package itself)."""
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def layer_of(name: str) -> int:
    """The layer of a module: its own entry, else its package's."""
    parts = name.split(".") if name else [""]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(name)


def _resolve(target: str, known: set[str]) -> str:
    # "from .viz import spine3d" names a module; "from .io import read_manifest" a function
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target


def imported_names(name: str, known: set[str]) -> list[tuple[str, str]]:
    """``(imported name, module)`` of each import from spinelib in module ``name``, anywhere in
    its source: the name as written (the last part of a plain ``import``) and the module of
    spinelib it resolves to (relative imports resolved against ``name``'s package)."""
    path = ROOT / (name.replace(".", "/") if name else "") / "__init__.py"
    if not path.is_file():
        path = ROOT / f"{name.replace('.', '/')}.py"
    package = name.split(".") if path.name == "__init__.py" and name else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                stem = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.split(".")[0] == "spinelib":
                stem = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                found.append((alias.name, _resolve(f"{stem}.{alias.name}".strip("."), known)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "spinelib":
                    found.append((alias.name.rpartition(".")[2], _resolve(alias.name.partition(".")[2], known)))
    return found


def imports_of(name: str, known: set[str]) -> set[str]:
    """Modules of spinelib that module ``name`` imports, anywhere in its source."""
    return {module for _, module in imported_names(name, known)} - {name}


def test_every_module_has_a_layer():
    missing = [n for n in module_names() if not _has_layer(n)]
    assert not missing, f"give these modules a layer in LAYERS and ARCHITECTURE.md: {missing}"


def _has_layer(name: str) -> bool:
    try:
        layer_of(name)
    except KeyError:
        return False
    return True


def test_imports_point_down():
    known = set(module_names())
    upward = [f"{n} (layer {layer_of(n)}) imports {m} (layer {layer_of(m)})"
              for n in sorted(known) for m in sorted(imports_of(n, known)) if layer_of(m) > layer_of(n)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    # the test above must be able to fail: a base module importing the CLI is caught
    fake = tmp_path / "spinelib"
    (fake / "viz").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "viz" / "__init__.py").write_text("")
    (fake / "errors.py").write_text("def f():\n    from .cli import main\n")
    (fake / "cli.py").write_text("from .viz import spine3d\n")
    (fake / "viz" / "spine3d.py").write_text("import spinelib.errors\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    known = set(module_names())
    assert known == {"", "errors", "cli", "viz", "viz.spine3d"}
    assert imports_of("errors", known) == {"cli"}
    assert imports_of("cli", known) == {"viz.spine3d"}
    assert imports_of("viz.spine3d", known) == {"errors"}
    assert layer_of("errors") < layer_of("cli")


@pytest.mark.parametrize("doc", ["ARCHITECTURE.md"])
def test_architecture_page_lists_every_layer_module(doc):
    text = (ROOT.parent / doc).read_text()
    top = sorted({n.split(".")[0] for n in module_names() if n})
    absent = [n for n in top if f"`{n}`" not in text and f"`{n}/`" not in text]
    assert not absent, f"{doc} does not place {absent}"


def test_the_repository_cites_no_document_outside_it():
    # the shared design notes live beside the repository, not in it: citing them leaves a
    # reader of the repository with a dangling reference (ARCHITECTURE.md is the account)
    outside = ["DESIGN" + ".md", "CONTR" + "ACTS", "PAPER" + ".md"]
    repo = ROOT.parent
    files = [*ROOT.rglob("*.py"), *(repo / "tests").rglob("*.py"), *(repo / "notebooks").glob("*.ipynb"),
             *(repo / "book").glob("*.md"), repo / "README.md", repo / "ARCHITECTURE.md"]
    cited = [f"{f.relative_to(repo)}: {name}" for f in files for name in outside if name in f.read_text()]
    assert not cited, "references to documents outside the repository:\n" + "\n".join(cited)
