"""Methods: from a masked time cube to one cloud-free image with per-pixel provenance.

Each method is declared once in the registry (:data:`METHODS`, :func:`get_method`,
:func:`list_methods`) and implemented once, in its own module, as a numpy core that the
evaluation calls directly (:func:`evaluation_function`) and that mosaics run chunk by chunk
through the dask driver (:func:`mosaic`, then :func:`compute`).
"""

from cloudfree.methods._composite import composite, composite_array
from cloudfree.methods._dispatch import (
    MethodFn,
    compute,
    evaluation_function,
    hashed_parameters,
    label,
    mosaic,
    software,
)
from cloudfree.methods._driver import days_since_epoch
from cloudfree.methods._provenance import (
    FILL_CLASSES,
    FILL_CODES,
    FILL_COMPOSITED,
    FILL_GENERATED,
    FILL_INTERPOLATED,
    FILL_NODATA,
    FILL_OBSERVED,
    Composite,
)
from cloudfree.methods._registry import METHODS, MethodSpec, Use, get_method, list_methods

__all__ = (
    "FILL_CLASSES",
    "FILL_CODES",
    "FILL_COMPOSITED",
    "FILL_GENERATED",
    "FILL_INTERPOLATED",
    "FILL_NODATA",
    "FILL_OBSERVED",
    "METHODS",
    "Composite",
    "MethodFn",
    "MethodSpec",
    "Use",
    "composite",
    "composite_array",
    "compute",
    "days_since_epoch",
    "evaluation_function",
    "get_method",
    "hashed_parameters",
    "label",
    "list_methods",
    "mosaic",
    "software",
)
