"""Methods: from a masked time cube to one cloud-free image with per-pixel provenance.

Each method is declared once in the registry (:data:`METHODS`, :func:`get_method`,
:func:`list_methods`) and implemented once, in its own module, as a numpy core that the
evaluation calls directly and that mosaics run chunk by chunk through the dask driver.
"""

from cloudfree.methods._registry import METHODS, MethodSpec, Use, get_method, list_methods

__all__ = ("METHODS", "MethodSpec", "Use", "get_method", "list_methods")
