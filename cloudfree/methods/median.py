"""``median``: the per-band median of the clear observations.

``source_day`` is the date of the clear observation nearest (Euclidean, over bands) to the
median vector: per band the median may come from different dates, so this names the
single observation the composite is closest to. ``fill``: ``observed`` for a single clear
observation, ``composited`` for several, ``nodata`` for none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree.methods._provenance import blend_fill

DEFAULTS: dict[str, Any] = {}

Core = tuple[NDArray[Any], NDArray[Any], NDArray[Any]]


def check(params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """The median takes no parameters."""
    return params


def nanmedian_time(values: NDArray[Any]) -> NDArray[Any]:
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
    median: NDArray[Any] = out.astype(values.dtype, copy=False)
    return median


def core(values: NDArray[Any], usable: NDArray[np.bool_], days: NDArray[np.float64],
         target_day: float, params: dict[str, Any], neighbourhood: NDArray[Any] | None = None
         ) -> Core:
    """(reflectance, source day, fill) of a (T, C, H, W) stack NaN exactly where not usable."""
    count = usable.sum(axis=0)
    refl = nanmedian_time(values)
    dist2 = np.zeros(usable.shape, np.float32)
    for band in range(values.shape[1]):
        dist2 += (values[:, band] - refl[band]) ** 2
    dist2[~usable] = np.inf
    pick = np.argmin(dist2, axis=0)
    source = np.where(count > 0, days[pick], np.nan)
    return refl, source, blend_fill(count)
