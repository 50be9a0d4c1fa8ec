"""Running a method by name: what the evaluation, the tile and the item ask of a method.

A method module offers ``mosaic(reflectance, clear, *, target_date, nodata, **options)``
and an evaluation function (or, for a composite, a per-pixel ``core``), and optionally
``label(options)`` (its name in item ids), ``hashed_parameters()`` (settings that decide
pixels beyond the tile's parameters), ``software(options)`` (what goes into
``processing:software``) and ``COMPUTE_CONFIG`` (dask settings to compute under).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import xarray as xr
from numpy.typing import NDArray

from cloudfree.methods._registry import get_method

#: An evaluation method: ``(series (T, C, H, W) NaN where hidden or cloudy, days since
#: 1970 (T,), target index, *, band_names=None) -> (C, H, W)`` finite reconstruction.
MethodFn = Callable[..., NDArray[Any]]


def evaluation_function(name: str) -> MethodFn:
    """The function the evaluation calls for method ``name``."""
    spec = get_method(name, "evaluation")
    module = spec.load()
    if hasattr(module, "core"):
        from cloudfree.methods._composite import evaluate_composite

        function: MethodFn = partial(evaluate_composite, name)
    else:
        function = getattr(module, spec.evaluate_fn)
    return function


def mosaic(name: str, reflectance: xr.DataArray, clear: xr.DataArray, *,
           target_date: str | None = None, nodata: int = 0, **options: Any) -> xr.Dataset:
    """Method ``name``'s lazy mosaic of a (time, band, y, x) DN cube and its clear mask."""
    spec = get_method(name, "mosaic")
    module = spec.load()
    if hasattr(module, "core"):
        from cloudfree.methods._composite import composite

        return composite(reflectance, clear, method=name, target_date=target_date,
                         nodata=nodata, **options)
    result: xr.Dataset = module.mosaic(reflectance, clear, target_date=target_date,
                                       nodata=nodata, **options)
    return result


def compute(name: str, result: xr.Dataset, *, callbacks: Sequence[Any] = ()) -> xr.Dataset:
    """A lazy mosaic computed, under the method's dask settings, with a corrected method's
    per-tile choice moved into ``attrs["parameters"]``. ``callbacks``: dask callbacks for
    this compute only (progress: :func:`cloudfree.progress.dask_tasks`)."""
    import dask

    from cloudfree.methods.corrected import record_choice

    config = getattr(get_method(name).load(), "COMPUTE_CONFIG", {})
    extra = {"callbacks": list(callbacks)} if callbacks else {}
    with dask.config.set(config):  # e.g. so GPU annotations reach the scheduler
        return record_choice(result.compute(**extra))


def _hook(name: str, hook: str, default: Any, *args: Any) -> Any:
    function = getattr(get_method(name).load(), hook, None)
    return default if function is None else function(*args)


def label(name: str, options: Mapping[str, Any]) -> str:
    """The method as it appears in item ids: a learned one carries its model version, so
    new weights make new items."""
    return str(_hook(name, "label", name, options))


def hashed_parameters(name: str) -> dict[str, Any]:
    """The method's own settings that decide pixels (the correction's, the head's)."""
    return dict(_hook(name, "hashed_parameters", {}))


def software(name: str, options: Mapping[str, Any]) -> dict[str, str]:
    """What the method adds to ``processing:software`` (the weights are software too)."""
    return dict(_hook(name, "software", {}, options))


__all__ = ("MethodFn", "compute", "evaluation_function", "hashed_parameters",
           "label", "mosaic", "software")
