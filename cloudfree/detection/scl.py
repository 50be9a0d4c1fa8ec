"""The SCL detector: Sen2Cor's scene classification, as the mosaics have always masked it
(:func:`cloudfree.masking.scl_clear_mask`), split into cloud and shadow for scoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from cloudfree.detection._registry import Detection, DetectionInput
from cloudfree.errors import InvalidParameterError
from cloudfree.masking import (
    DEFAULT_DILATE_CLASSES,
    DEFAULT_DILATION_M,
    DEFAULT_INVALID_CLASSES,
    dilate,
    opening,
    scl_clear_mask,
)
from cloudfree.sentinel2 import SCL

_SHADOW = (int(SCL.CLOUD_SHADOW),)
_NODATA = (int(SCL.NO_DATA), int(SCL.SATURATED_OR_DEFECTIVE))


def reach_m(params: dict[str, Any]) -> float:
    """The opening (twice its radius) plus the dilation."""
    return 2 * float(params.get("opening_m", 0.0)) + float(
        params.get("dilation_m", DEFAULT_DILATION_M))


def detect(inp: DetectionInput, *, invalid_classes: tuple[int, ...] = DEFAULT_INVALID_CLASSES,
           dilate_classes: tuple[int, ...] = DEFAULT_DILATE_CLASSES,
           dilation_m: float = DEFAULT_DILATION_M, opening_m: float = 0.0) -> Detection:
    """Invalid exactly where :func:`~cloudfree.masking.scl_clear_mask` is not clear (or the
    bands have no data); of that, shadow is SCL class 3 and its dilation, nodata classes
    0 and 1, and the rest cloud."""
    if inp.scl is None:
        raise InvalidParameterError("scl", None, "the scl detector needs the SCL band")
    return masks(np.asarray(inp.scl), inp.nodata, resolution_m=inp.resolution_m,
                 invalid_classes=invalid_classes, dilate_classes=dilate_classes,
                 dilation_m=dilation_m, opening_m=opening_m)


def masks(scl: np.ndarray, nodata: np.ndarray, *, resolution_m: float,
          invalid_classes: tuple[int, ...] = DEFAULT_INVALID_CLASSES,
          dilate_classes: tuple[int, ...] = DEFAULT_DILATE_CLASSES,
          dilation_m: float = DEFAULT_DILATION_M, opening_m: float = 0.0) -> Detection:
    """:func:`detect` on an SCL stack (T, H, W) and the bands' no-data mask."""
    clear = scl_clear_mask(xr.DataArray(scl, dims=("time", "y", "x")),
                           resolution_m=resolution_m, invalid_classes=invalid_classes,
                           dilate_classes=dilate_classes, dilation_m=dilation_m,
                           opening_m=opening_m).values
    nodata = nodata | np.isin(scl, [c for c in _NODATA if c in invalid_classes])
    shadow_seed = np.isin(scl, [c for c in _SHADOW if c in invalid_classes])
    if int(SCL.CLOUD_SHADOW) in dilate_classes:
        radius = dilation_m / resolution_m
        shadow_seed = dilate(opening(shadow_seed, radius_px=opening_m / resolution_m),
                             radius_px=radius) | shadow_seed
    invalid = ~clear | nodata
    shadow = invalid & shadow_seed & ~nodata
    cloud = invalid & ~shadow & ~nodata
    return Detection(cloud=cloud, shadow=shadow, nodata=nodata, parameters={
        "invalid_classes": sorted(int(c) for c in invalid_classes),
        "dilate_classes": sorted(int(c) for c in dilate_classes),
        "dilation_m": float(dilation_m), "opening_m": float(opening_m)})
