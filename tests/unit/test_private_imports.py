"""No private name of spinelib is imported across its packages.

A name that starts with ``_`` is private to its package: the modules of one subpackage
(``spinelib/align/``, say) may share such helpers among themselves, but another package that
needs one imports a public name, documented and listed in its module's ``__all__``. Every
module's imports are read from its source (the lazy ones inside functions too), with the walker
of ``test_layers.py``. The unit is the first part of a module's dotted name below ``spinelib``:
a subpackage (``align``, ``io``, ...) or a top-level module (``errors``, ``profiles``, ``cli``,
and ``""`` for ``spinelib/__init__.py``). Dunder names (``__version__``) are not private.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import test_layers as layers  # noqa: E402

def unit_of(module: str) -> str:
    """The package a module belongs to for this rule: the first part of its dotted name."""
    return module.split(".")[0]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def cross_package_private_imports(known: set[str]) -> list[tuple[str, str, str]]:
    """``(module, name, source module)`` of every private name imported from another package."""
    return [(n, imported, source) for n in sorted(known) for imported, source in layers.imported_names(n, known)
            if _is_private(imported) and unit_of(source) != unit_of(n)]


def test_no_private_name_is_imported_across_packages():
    found = cross_package_private_imports(set(layers.module_names()))
    bad = [f"spinelib.{n} imports {name} from spinelib.{source}" for n, name, source in found]
    assert not bad, ("private names imported from another package (make them public: rename, add to "
                     "__all__, document; or move them to the package that uses them):\n" + "\n".join(bad))


def test_the_checker_sees_a_private_import(tmp_path, monkeypatch):
    # the test above must be able to fail: a private helper imported from another package
    # (relative, absolute or lazily) is caught; one shared within its package is not
    fake = tmp_path / "spinelib"
    for sub in ("geometry", "align"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("__version__ = '0'\n")
    (fake / "errors.py").write_text("from . import __version__\n")
    (fake / "geometry" / "transform.py").write_text("def _check():\n    pass\n")
    (fake / "align" / "features.py").write_text("def _helper():\n    pass\n")
    (fake / "align" / "pair.py").write_text(
        "from ..geometry.transform import _check\nfrom .features import _helper\n"
        "def f():\n    from spinelib.geometry import transform\n    from spinelib.geometry.transform import _check\n")
    monkeypatch.setattr(layers, "ROOT", fake)
    known = set(layers.module_names())
    assert cross_package_private_imports(known) == [("align.pair", "_check", "geometry.transform")] * 2
