"""Compositing: non-learned cloud-free composites of a masked time cube."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from cloudfree.errors import InvalidParameterError

Method = Literal["median"]
METHODS: tuple[str, ...] = ("median",)


def nanmedian_time(values: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN, by one sort (NaN sorts last); all-NaN gives NaN.

    Much faster than ``np.nanmedian`` for the short time axes of a cube.
    """
    ordered = np.sort(values, axis=0)
    n = np.sum(~np.isnan(values), axis=0)
    lo = np.clip((n - 1) // 2, 0, None)[None]
    hi = np.clip(n // 2, 0, None)[None]
    low = np.take_along_axis(ordered, lo, axis=0)[0]
    high = np.take_along_axis(ordered, hi, axis=0)[0]
    out = (low + high) / 2
    out[n == 0] = np.nan
    return out.astype(values.dtype, copy=False)


def _to_dn(values: xr.DataArray, nodata: int) -> xr.DataArray:
    """Float digital numbers back to uint16, NaN becoming ``nodata``."""
    rounded = values.round().clip(1, np.iinfo(np.uint16).max)
    return rounded.fillna(nodata).astype(np.uint16)


def composite(
    reflectance: xr.DataArray,
    clear: xr.DataArray,
    *,
    method: Method = "median",
    nodata: int = 0,
) -> xr.Dataset:
    """Composite a (time, band, y, x) uint16 cube over time.

    Args:
        reflectance: digital numbers, ``nodata`` where there is no data.
        clear: (time, y, x) True where the observation is usable.
        method: ``"median"``: per-band median of the clear observations.
        nodata: the nodata value of ``reflectance`` and of the output.

    Returns:
        A dataset with ``reflectance`` (band, y, x) uint16, ``nodata`` where no date
        was clear, and ``clear_count`` (y, x) uint16, the number of clear dates.
    """
    if method not in METHODS:
        raise InvalidParameterError("method", method, f"choose one of {', '.join(METHODS)}")
    if "time" not in reflectance.dims or "time" not in clear.dims:
        raise InvalidParameterError("reflectance", reflectance.dims, "needs a 'time' dimension")
    valid = clear & (reflectance != nodata).all("band")
    values = reflectance.astype(np.float32).where(valid)
    if reflectance.chunks is not None:
        values = values.chunk({"time": -1})
    median = _median_over_time(values)
    count = valid.sum("time").astype(np.uint16)
    out = xr.Dataset({"reflectance": _to_dn(median, nodata), "clear_count": count})
    out.attrs.update(method=method, nodata=nodata)
    return out


def _median_over_time(values: xr.DataArray) -> xr.DataArray:
    axis = values.get_axis_num("time")
    data = values.data
    if hasattr(data, "map_blocks"):
        moved = data if axis == 0 else data.swapaxes(0, axis)
        reduced = moved.map_blocks(nanmedian_time, drop_axis=0, dtype=np.float32)
    else:
        reduced = nanmedian_time(np.moveaxis(data, axis, 0))
    dims = [d for d in values.dims if d != "time"]
    coords = {k: v for k, v in values.coords.items() if "time" not in v.dims}
    return xr.DataArray(reduced, dims=dims, coords=coords)
