"""What every method returns: reflectance with per-pixel provenance, as numpy and xarray.

Provenance, per pixel:

``clear_count``
    the number of clear observations in the stack (whatever the method used).
``source_day`` / ``source_date``
    days since 1970-01-01 of the observation used (each method's module says which).
``fill``
    a ``FILL_*`` code of :data:`FILL_CLASSES`: ``observed`` when the value is one real
    observation, ``composited`` for a blend of several (or a date fitted to its own clear
    pixels), ``interpolated`` for linear in time, ``generated`` for the generator,
    ``nodata`` where no observation is clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

FILL_NODATA, FILL_OBSERVED, FILL_COMPOSITED, FILL_INTERPOLATED, FILL_GENERATED = 0, 1, 2, 3, 4
FILL_CLASSES: dict[int, tuple[str, str]] = {
    FILL_NODATA: ("nodata", "no clear observation of this pixel"),
    FILL_OBSERVED: ("observed", "one real clear observation, taken as is"),
    FILL_COMPOSITED: ("composited", "a blend of several clear observations (median, geomedian)"),
    FILL_INTERPOLATED: ("interpolated", "linear in time between clear observations"),
    FILL_GENERATED: ("generated", "predicted by the generator network"),
}
#: ``fill`` codes by name.
FILL_CODES: dict[str, int] = {name: code for code, (name, _) in FILL_CLASSES.items()}


@dataclass
class Composite:
    """A numpy core's result."""

    reflectance: NDArray[np.floating[Any]]  # (C, H, W) float32, NaN where no clear observation
    clear_count: NDArray[np.uint16]  # (H, W)
    source_day: NDArray[np.floating[Any]]  # (H, W) days since 1970-01-01, NaN where none
    fill: NDArray[np.uint8]  # (H, W) FILL_* code


@dataclass
class Reconstruction:
    """What a method's evaluation function may return instead of a bare (C, H, W) array:
    the reconstruction with its 90 % prediction interval ``values ± half_width``.

    ``half_width`` is (C, H, W) reflectance, 0 where the method observed the pixel (an
    observed value is taken as exact), or None when the method states no interval. The
    evaluation harness reports the share of hidden pixel-band values inside the interval
    (``coverage_90``) and its mean half-width (``interval_width``)."""

    values: NDArray[np.floating[Any]]  # (C, H, W) reflectance
    half_width: NDArray[np.floating[Any]] | None = None  # (C, H, W) reflectance, >= 0


def blend_fill(count: NDArray[Any]) -> NDArray[Any]:
    """``nodata`` with no clear observation, ``observed`` with one, else ``composited``."""
    return np.select([count == 0, count == 1], [FILL_NODATA, FILL_OBSERVED], FILL_COMPOSITED)


def to_dn(values: xr.DataArray, nodata: int) -> xr.DataArray:
    """Float digital numbers back to uint16, NaN becoming ``nodata``."""
    rounded = values.round().clip(1, np.iinfo(np.uint16).max)
    return rounded.fillna(nodata).astype(np.uint16)


def stack_block(result: Composite, *, n_bands: int, observed_dn: NDArray[Any] | None = None
                ) -> NDArray[np.float32]:
    """One block's result as the (C + 3, h, w) float stack the dask graphs carry: DN (or
    reflectance), clear count, the UTC calendar day of the source, fill."""
    out = np.empty((n_bands + 3, *result.fill.shape), np.float32)
    out[:n_bands] = result.reflectance if observed_dn is None else observed_dn
    out[n_bands] = result.clear_count
    # the UTC calendar day; the epsilon absorbs rounding in weighted mean dates
    out[n_bands + 1] = np.floor(result.source_day + 1e-6)
    out[n_bands + 2] = result.fill
    return out


def stacked_to_dataset(stacked: Any, reflectance: xr.DataArray, *, n_bands: int,
                       nodata: int) -> xr.Dataset:
    """The output dataset from a (bands + 3, y, x) float stack of reflectance DN, clear
    count, source day and fill, on ``reflectance``'s grid."""

    def coords_on(dims: set[str]) -> dict[str, Any]:
        return {str(k): v for k, v in reflectance.coords.items() if set(v.dims) <= dims}

    refl = xr.DataArray(stacked[:n_bands], dims=("band", "y", "x"),
                        coords=coords_on({"band", "y", "x"}))
    plane = partial(xr.DataArray, dims=("y", "x"), coords=coords_on({"y", "x"}))
    count = plane(stacked[n_bands]).astype(np.uint16)
    source = plane(stacked[n_bands + 1]).fillna(0).astype(np.uint16)
    fill = plane(stacked[n_bands + 2]).astype(np.uint8)
    source.attrs.update(units="days since 1970-01-01", nodata=0)
    fill.attrs.update(flag_values=list(FILL_CLASSES),
                      flag_meanings=" ".join(name for name, _ in FILL_CLASSES.values()))
    return xr.Dataset({"reflectance": to_dn(refl, nodata), "clear_count": count,
                       "source_date": source, "fill": fill})
