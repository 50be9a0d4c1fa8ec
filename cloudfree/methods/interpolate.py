"""``interpolate``: for the target date, linear in time between the nearest clear
observations before and after; the nearest one when only one side has any; the
observation itself when one falls on the target date.

``source_day`` is the target date where interpolated, the observation's date otherwise;
``fill`` is ``interpolated`` or ``observed``. The corrected methods start from
:func:`interpolate_at`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree.methods._provenance import FILL_INTERPOLATED, FILL_NODATA, FILL_OBSERVED

DEFAULTS: dict[str, Any] = {}

Core = tuple[NDArray[Any], NDArray[Any], NDArray[Any]]


def check(params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """Interpolation takes no parameters."""
    return params


def core(values: NDArray[Any], usable: NDArray[np.bool_], days: NDArray[np.float64],
         target_day: float, params: dict[str, Any], neighbourhood: NDArray[Any] | None = None
         ) -> Core:
    """(reflectance, source day, fill) of a (T, C, H, W) stack NaN exactly where not usable."""
    day_grid = np.broadcast_to(days[:, None, None], usable.shape)
    before_day = np.where(usable & (day_grid <= target_day), day_grid, -np.inf)
    after_day = np.where(usable & (day_grid >= target_day), day_grid, np.inf)
    before, after = np.argmax(before_day, axis=0), np.argmin(after_day, axis=0)
    d_before = np.take_along_axis(before_day, before[None], axis=0)[0]
    d_after = np.take_along_axis(after_day, after[None], axis=0)[0]
    has_before, has_after = np.isfinite(d_before), np.isfinite(d_after)
    v_before = np.take_along_axis(values, before[None, None], axis=0)[0]
    v_after = np.take_along_axis(values, after[None, None], axis=0)[0]
    exact = has_before & (d_before == target_day)
    between = has_before & has_after & ~exact
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(between, (target_day - d_before) / (d_after - d_before), 0.0)
    interpolated = v_before + frac.astype(values.dtype) * (v_after - v_before)
    refl = np.where(between, interpolated, np.where(has_before, v_before, v_after))
    source = np.select([between, has_before, has_after], [target_day, d_before, d_after], np.nan)
    fill = np.select([between, has_before | has_after], [FILL_INTERPOLATED, FILL_OBSERVED],
                     FILL_NODATA)
    return refl, source, fill


def interpolate_at(values: NDArray[Any], usable: NDArray[np.bool_], days: NDArray[Any],
                   target_day: float) -> NDArray[Any]:
    """The core's reflectance alone: (C, H, W) at ``target_day`` from a (T, C, H, W) stack
    NaN exactly where ``usable`` (T, H, W) is False; NaN where no date is usable."""
    return core(values, usable, np.asarray(days, np.float64), float(target_day), {})[0]
