"""Cloud masking: clear-observation masks from the Sentinel-2 scene classification (SCL)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr
from scipy import ndimage

from cloudfree.errors import InvalidParameterError

#: Sentinel-2 L2A scene classification values.
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
#: Classes never used as observations.
DEFAULT_INVALID_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
#: Classes grown by the dilation: SCL under-detects cloud and shadow fringes.
DEFAULT_DILATE_CLASSES: tuple[int, ...] = (3, 8, 9, 10)
DEFAULT_DILATION_M = 100.0


def _check_classes(name: str, classes: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(c) for c in classes)
    unknown = sorted(set(out) - set(SCL_CLASSES))
    if unknown:
        raise InvalidParameterError(
            name, list(out), f"unknown SCL classes {unknown}; valid are 0..11 ({SCL_CLASSES})"
        )
    return out


def dilate(mask: np.ndarray, *, radius_px: float) -> np.ndarray:
    """Grow a boolean (..., y, x) mask by a Euclidean radius in pixels, per 2-D frame."""
    if radius_px <= 0:
        return mask
    out = np.empty_like(mask, dtype=bool)
    for index in np.ndindex(mask.shape[:-2]):
        frame = mask[index]
        if frame.any():
            out[index] = ndimage.distance_transform_edt(~frame) <= radius_px
        else:
            out[index] = False
    return out


def scl_clear_mask(
    scl: xr.DataArray,
    *,
    resolution_m: float,
    invalid_classes: Iterable[int] = DEFAULT_INVALID_CLASSES,
    dilate_classes: Iterable[int] = DEFAULT_DILATE_CLASSES,
    dilation_m: float = DEFAULT_DILATION_M,
) -> xr.DataArray:
    """Clear-observation mask (True = usable) from an SCL cube (time, y, x).

    A pixel is clear when its class is not in ``invalid_classes`` and it lies
    further than ``dilation_m`` from any pixel of ``dilate_classes``. Works lazily
    on dask arrays: the dilation runs per chunk with a halo of the dilation radius.
    """
    invalid = _check_classes("invalid_classes", invalid_classes)
    grow = _check_classes("dilate_classes", dilate_classes)
    if dilation_m < 0:
        raise InvalidParameterError("dilation_m", dilation_m, "give a distance >= 0 metres")
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    radius_px = dilation_m / resolution_m
    depth = int(np.ceil(radius_px))

    def _clear(block: np.ndarray) -> np.ndarray:
        bad = np.isin(block, invalid)
        if grow and radius_px > 0:
            bad |= dilate(np.isin(block, grow), radius_px=radius_px)
        return ~bad

    data = scl.data
    if hasattr(data, "map_overlap"):
        depth_map = {i: 0 for i in range(data.ndim)}
        depth_map[data.ndim - 1] = depth
        depth_map[data.ndim - 2] = depth
        clear = data.map_overlap(_clear, depth=depth_map, boundary="none", dtype=bool)
    else:
        clear = _clear(np.asarray(data))
    out = xr.DataArray(clear, coords=scl.coords, dims=scl.dims, name="clear")
    out.attrs.update(
        invalid_classes=list(invalid), dilate_classes=list(grow), dilation_m=float(dilation_m)
    )
    return out
