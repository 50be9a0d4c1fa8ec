"""The composites: per-pixel methods over time (median, bap, geomedian, interpolate).

Each composite's module defines ``DEFAULTS``, ``check(params, n_bands=)`` and the numpy
``core(values, usable, days, target_day, params, neighbourhood)``; a method that reads a
neighbourhood (bap's distance to cloud) also defines ``halo_px(params)`` and
``neighbourhood(usable, params)``. This module runs any of them: :func:`composite_array`
on numpy (the evaluation), :func:`composite` on a dask cube chunk by chunk, the
neighbourhood computed with its halo (mosaics). Both call the same core.

Values are whatever the caller gives: mosaics composite digital numbers as floats (every
composite is equivariant under the affine DN -> reflectance map, except bap's haze ratio,
which is taken on DN as it always was), the evaluation reflectance.
"""

from __future__ import annotations

import json
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from cloudfree.errors import InvalidParameterError
from cloudfree.methods import _driver
from cloudfree.methods._driver import days_since_epoch, prepare_cube, usable_block, with_defaults
from cloudfree.methods._provenance import Composite, stack_block, stacked_to_dataset
from cloudfree.methods._registry import METHODS, list_methods


def composite_module(method: str) -> ModuleType:
    """The module of a composite (a method with a per-pixel ``core``)."""
    spec = METHODS.get(method)
    module = spec.load() if spec is not None and not spec.learned else None
    if module is None or not hasattr(module, "core"):
        names = [n for n in list_methods(learned=False) if hasattr(METHODS[n].load(), "core")]
        raise InvalidParameterError("method", method, f"choose one of {', '.join(names)}")
    return module


def check_params(method: str, params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """Validate ``params`` for ``method`` and return them with the defaults filled in."""
    module = composite_module(method)
    checked: dict[str, Any] = module.check(with_defaults(method, params, module.DEFAULTS),
                                           n_bands=n_bands)
    return checked


def run_core(module: ModuleType, values: NDArray[Any], usable: NDArray[np.bool_],
             days: NDArray[np.float64], target_day: float, params: dict[str, Any],
             neighbourhood: NDArray[Any] | None = None) -> Composite:
    """A composite's core on a (T, C, H, W) stack NaN exactly where ``usable`` is False.

    ``source_day`` stays float64 here (float32 resolves only ~3 minutes at 2024's days).
    """
    refl, source, fill = module.core(values, usable, days, target_day, params, neighbourhood)
    count = usable.sum(axis=0)
    return Composite(
        reflectance=refl.astype(np.float32, copy=False),
        clear_count=np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16),
        source_day=np.asarray(source, dtype=np.float64),
        fill=np.asarray(fill).astype(np.uint8, copy=False),
    )


def composite_array(values: NDArray[Any], days: NDArray[Any], *, method: str,
                    target_day: float | None = None, **params: Any) -> Composite:
    """Composite a (T, C, H, W) stack over time, with provenance.

    Args:
        values: reflectance (any float; other dtypes become float32), NaN where the
            observation is not usable. An observation is usable only where all its bands
            are finite.
        days: (T,) days since 1970-01-01 of each date (fractions allowed).
        method: a composite of the registry (median, bap, geomedian, interpolate).
        target_day: the date ``bap`` scores against and ``interpolate`` reconstructs;
            default the middle of ``days``' range.
        **params: the method's knobs (its module's ``DEFAULTS``).
    """
    values = np.asarray(values)
    if values.ndim != 4:
        raise InvalidParameterError("values", values.shape, "give a (time, band, y, x) array")
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    days = np.asarray(days, dtype=np.float64)
    if days.shape != values.shape[:1] or not np.isfinite(days).all():
        raise InvalidParameterError("days", days.shape,
                                    f"give {values.shape[0]} finite days, one per date")
    module = composite_module(method)
    checked = check_params(method, params, n_bands=values.shape[1])
    target = _driver.resolve_target_day(days, target_day)
    usable = np.isfinite(values).all(axis=1)  # (T, H, W)
    if not usable.all():
        values = np.where(usable[:, None], values, np.nan)
    result = run_core(module, values, usable, days, target, checked)
    result.source_day = result.source_day.astype(np.float32)
    return result


def _block(reflectance: NDArray[Any], clear: NDArray[Any],
           neighbourhood: NDArray[Any] | None = None, *, module: ModuleType,
           days: NDArray[np.float64], target_day: float, params: dict[str, Any], nodata: int
           ) -> NDArray[np.float32]:
    """One spatial block: uint16 DN (T, C, h, w) and clear (T, h, w) -> (C + 3, h, w)."""
    usable = usable_block(reflectance, clear, nodata=nodata)
    values = reflectance.astype(np.float32)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    result = run_core(module, values, usable, days, target_day, params, neighbourhood)
    return stack_block(result, n_bands=reflectance.shape[1])


def composite(reflectance: xr.DataArray, clear: xr.DataArray, *, method: str = "median",
              target_date: str | np.datetime64 | None = None, nodata: int = 0,
              **params: Any) -> xr.Dataset:
    """Composite a (time, band, y, x) uint16 cube over time, lazily when it is dask-backed.

    Args:
        reflectance: digital numbers, ``nodata`` where there is no data.
        clear: (time, y, x) True where the observation is usable. An observation is used
            only where it is clear and all its bands differ from ``nodata``.
        method: a composite of the registry.
        target_date: the date a targeted composite aims at; default the middle of the
            cube's time range.
        nodata: the nodata value of ``reflectance`` and of the output.
        **params: the method's knobs. bap's ``haze_band`` may be a band name; by default
            the band named ``blue`` or ``B02`` if there is one, else no haze term.

    Returns:
        A dataset of ``reflectance`` (band, y, x) uint16, ``nodata`` where no date was
        clear; ``clear_count`` (y, x) uint16; ``source_date`` (y, x) uint16 days since
        1970-01-01 (floored to the UTC day), 0 where none; ``fill`` (y, x) uint8 code of
        :data:`~cloudfree.methods.FILL_CLASSES`. ``attrs``: ``method``, ``parameters``
        (JSON-able, with defaults and the target date) and ``nodata``. Dask in, dask out:
        each spatial chunk is composited with time and band whole, the method's
        neighbourhood computed with its halo.
    """
    module = composite_module(method)
    reflectance, clear, days, target_day = prepare_cube(reflectance, clear, target_date)
    bands = list(reflectance["band"].values.tolist())
    params = dict(params)
    if hasattr(module, "resolve_haze_band"):
        module.resolve_haze_band(params, bands)
    checked = check_params(method, params, n_bands=len(bands))
    n_bands = len(bands)
    block = partial(_block, module=module, days=days, target_day=target_day, params=checked,
                    nodata=nodata)
    if reflectance.chunks is not None or clear.chunks is not None:
        import dask.array as da

        halo = module.halo_px(checked) if hasattr(module, "halo_px") else 0
        # a chunk can only lend a halo it has
        align = partial(_driver.aligned_chunks, depth=halo) if halo else None
        refl_data, clear_data, spatial = _driver.dask_cube(reflectance, clear, align=align)
        args: list[Any] = [refl_data, "tbyx", clear_data, "tyx"]
        if halo:
            valid = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl_data,
                                 "tbyx", clear_data, "tyx", concatenate=True, dtype=bool)
            near = _driver.map_with_halo(partial(module.neighbourhood, params=checked),
                                         [(valid, "tyx")], "tyx", depth=halo, spatial=spatial,
                                         meta_ndim=3, dtype=np.float32)
            args += [near, "tyx"]
        stacked = da.blockwise(block, "zyx", *args, new_axes={"z": n_bands + 3},
                               concatenate=True, dtype=np.float32)
    else:
        stacked = block(np.asarray(reflectance.data), np.asarray(clear.data, dtype=bool))

    out = stacked_to_dataset(stacked, reflectance, n_bands=n_bands, nodata=nodata)
    parameters = dict(checked)
    if parameters.get("haze_band") is not None:
        parameters["haze_band"] = str(bands[parameters["haze_band"]])
    if METHODS[method].targeted:
        parameters["target_date"] = _driver.iso_day(target_day)
    json.dumps(parameters)  # the item writes these into processing:*; fail here, not there
    out.attrs.update(method=method, parameters=parameters, nodata=nodata)
    return out


def evaluate_composite(method: str, series: NDArray[Any], days: NDArray[Any], target: int, *,
                       band_names: list[str] | None = None, **params: Any) -> NDArray[Any]:
    """The evaluation's reconstruction of frame ``target`` by a composite aimed at its date;
    pixels no date observes get the series' per-band median. Given the case's band names,
    bap finds its haze band (blue) by name, as the mosaic does."""
    from cloudfree.methods.correction import fill_with_series_median

    module = composite_module(method)
    extra = dict(params)
    if hasattr(module, "resolve_haze_band") and band_names is not None \
            and "haze_band" not in extra:
        extra["haze_band"] = "auto"
        module.resolve_haze_band(extra, [str(b) for b in band_names])
    result = composite_array(series, days, method=method, target_day=float(days[target]),
                             **extra)
    return fill_with_series_median(result.reflectance, series)


__all__ = ("check_params", "composite", "composite_array", "composite_module",
           "days_since_epoch", "evaluate_composite", "run_core")
