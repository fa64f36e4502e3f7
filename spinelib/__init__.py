"""spinelib: the runnable companion of *3D Spine Shape Estimation from Single 2D DXA*
(Bourigault, Jamaludin, Zisserman, MICCAI 2024).

The package holds every algorithm; notebooks only call it. See ``DESIGN.md`` in the
shared folder and the book for the architecture and conventions.
"""

from .errors import SpineLibError

__version__ = "0.1.0"
__all__ = ["SpineLibError", "__version__"]
