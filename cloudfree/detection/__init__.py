"""Cloud and shadow detection: the stage before removal.

Each detector is declared once in the registry (:data:`DETECTORS`, :func:`get_detector`)
and implemented in its own module as ``detect(inp: DetectionInput, **params) ->
Detection`` on numpy; :func:`detect` runs one by name (``auto`` picks the best that can
run, :func:`choose`), and the evaluation and the mosaics call the same function.
"""

from cloudfree.detection._registry import (
    AUTO_ORDER,
    AUTO_ORDER_L1C,
    DETECTORS,
    Detection,
    DetectionInput,
    DetectorSpec,
    auto_order,
    choose,
    detect,
    esa_band_name,
    get_detector,
    list_detectors,
    runnable,
)

__all__ = (
    "AUTO_ORDER",
    "AUTO_ORDER_L1C",
    "DETECTORS",
    "Detection",
    "DetectionInput",
    "DetectorSpec",
    "auto_order",
    "choose",
    "detect",
    "esa_band_name",
    "get_detector",
    "list_detectors",
    "runnable",
)
