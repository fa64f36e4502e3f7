"""Where the section notebooks and the book's sources are.

In a source checkout they are the repository's ``notebooks/`` and ``book/``, beside the
package (the checkout is recognised by its ``pyproject.toml``). A regular (non-editable)
install carries copies of both inside the package, as ``spinelib/_notebooks`` and
``spinelib/_book`` (``pyproject.toml`` maps the two folders into the wheel), so that
``spinelib run`` and ``spinelib book`` work from any folder.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = ["PACKAGE_DIR", "SOURCE_NAMES", "is_checkout", "source_dir"]

#: The source folders a run needs: the notebooks it executes, the book it builds.
SOURCE_NAMES: tuple[str, ...] = ("notebooks", "book")

#: spinelib's own folder (this file is ``spinelib/run/sources.py``); in a checkout its parent is the repository.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def is_checkout(package: Path = PACKAGE_DIR) -> bool:
    """Whether ``package`` (spinelib's folder) sits in a source checkout (editable install)."""
    return (package.parent / "pyproject.toml").is_file()


def source_dir(name: str, package: Path = PACKAGE_DIR) -> Path:
    """The folder of ``name`` (``"notebooks"`` or ``"book"``): the checkout's own, else the
    copy installed inside the package (which may be missing from a broken install: the
    caller reports the file it cannot find).

    Raises
    ------
    InvalidArgumentError
        ``name`` is not one of :data:`SOURCE_NAMES`.
    """
    if name not in SOURCE_NAMES:
        raise InvalidArgumentError(f"source folder must be one of {SOURCE_NAMES}, got {name!r}")
    return package.parent / name if is_checkout(package) else package / f"_{name}"
