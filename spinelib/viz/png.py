"""Figures to files: one PNG writer for every chapter's matplotlib figures."""

from __future__ import annotations

from pathlib import Path

from ..util.atomic import atomic_path
from ..errors import InvalidArgumentError

__all__ = ["save_png"]


def save_png(fig, path: str | Path, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (its folder created); returns the path.

    Raises
    ------
    InvalidArgumentError
        ``path`` does not end in ``.png``, or ``dpi`` is below 10.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise InvalidArgumentError(f"figure path must end in .png, got {p}")
    if int(dpi) < 10:
        raise InvalidArgumentError(f"dpi must be >= 10, got {dpi!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=int(dpi), format="png", bbox_inches="tight")
    return p
