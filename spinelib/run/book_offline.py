"""The built book's network loads: every script, stylesheet, font or media file an HTML page or
stylesheet of the book would fetch from another host (the book must work offline)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CDN_HOSTS", "external_assets"]

_ASSET_TAG = re.compile(r"<(script|link|img|iframe|source|audio|video|embed)\b[^>]*>", re.I)
_ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])(?P<u>(?:https?:)?//[^"')\s]+)""", re.I)


#: Hosts of script/style/font CDNs: named anywhere in a page (inline configuration included)
#: they mean the page may load from the network.
CDN_HOSTS: tuple[str, ...] = (
    "unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "cdn.plot.ly",
    "fonts.googleapis.com", "fonts.gstatic.com", "use.fontawesome.com", "code.jquery.com",
    "polyfill.io", "googletagmanager.com", "plausible.io",
)


def _is_external(url: str) -> bool:
    u = url.strip().lower()
    return u.startswith(("http://", "https://", "//"))


def external_assets(html_dir: str | Path) -> list[tuple[str, str]]:
    """Every network reference that a browser would *load* from the built book.

    Looks at ``src``/``href`` of script, link (stylesheets, fonts, preloads), img, iframe and
    media tags in every HTML file, at ``url(...)``/``@import`` in every CSS file, and for the
    hosts of :data:`CDN_HOSTS` named anywhere in a page (an inline loader configuration).
    Plain ``<a href>`` links are not loads and are not listed.

    Returns
    -------
    ``(file relative to html_dir, url)`` pairs; empty when the book is fully offline.
    """
    root = Path(html_dir)
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.html")):
        text = path.read_text(errors="replace")
        for tag in _ASSET_TAG.finditer(text):
            element = tag.group(0)
            if tag.group(1).lower() == "link" and re.search(
                    r"""rel\s*=\s*["'](?:canonical|next|prev|index|search|author|license)""",
                    element, re.I):
                continue
            for _, url in _ATTR.findall(element):
                if _is_external(url):
                    found.append((str(path.relative_to(root)), url))
        low = text.lower()
        for host in CDN_HOSTS:
            if host in low:
                found.append((str(path.relative_to(root)), f"(mentions {host})"))
    for path in sorted(root.rglob("*.css")):
        for m in _CSS_URL.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(root)), m.group("u")))
    return found

