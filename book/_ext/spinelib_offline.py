"""Sphinx extension of the spinelib book: keep every page offline.

Runs last on each page and drops

- any script or stylesheet whose URL points to the network (for example MathJax from a CDN,
  which Sphinx adds when a page might hold math; the book has no math);
- inline scripts that name a network URL (sphinx-thebe's configuration, which points to
  thebe on a CDN) and sphinx-thebe's loader: live code execution is off in this book.

`spinelib book` also scans the built HTML and fails if anything remote is left.
"""

from __future__ import annotations

_DROP_FILES = ("sphinx-thebe.js",)


def _remote(url) -> bool:
    u = str(url or "").strip().lower()
    return u.startswith(("http://", "https://", "//"))


def _keep(asset) -> bool:
    filename = str(getattr(asset, "filename", asset) or "")
    if _remote(filename) or filename.split("?")[0].endswith(_DROP_FILES):
        return False
    body = str((getattr(asset, "attributes", None) or {}).get("body", ""))
    return not ("http://" in body or "https://" in body)


def _strip_remote_assets(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if isinstance(assets, list):
            assets[:] = [a for a in assets if _keep(a)]


def setup(app):
    app.connect("html-page-context", _strip_remote_assets, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
