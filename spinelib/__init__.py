"""spinelib: the runnable companion of *3D Spine Shape Estimation from Single 2D DXA*
(Bourigault, Jamaludin, Zisserman, MICCAI 2024).

The package holds every algorithm; notebooks only call it. Each module's docstring states
its conventions and file formats; the book tells the study end to end.
"""

from .errors import SpineLibError

__version__ = "0.1.0"
__all__ = ["SpineLibError", "__version__"]
