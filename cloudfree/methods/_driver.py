"""The dask driver: how every method runs on a cube, chunk by chunk, with the halo it declares.

Time and band stay whole inside a chunk; space is split. A method reads a neighbourhood of
``halo_px`` pixels (its :class:`~cloudfree.methods.MethodSpec`), so each chunk is computed
with that much overlap from its neighbours (``boundary="none"``: at the true image edge a
chunk sees what a whole-array run sees) and trimmed back to its core. Per-tile choices are
*reductions*: per-chunk sums over the chunk's core pixels only, which add up to exactly the
whole image's sums, and which every chunk then takes as an argument.

Nothing here knows a method by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from cloudfree import sentinel2 as s2bands
from cloudfree.errors import InvalidParameterError


def days_since_epoch(times: np.ndarray) -> np.ndarray:
    """datetime64 values (or ISO strings) as float days since 1970-01-01."""
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    return seconds.astype(np.float64) / 86400.0


def resolve_target_day(days: np.ndarray, target_day: float | None) -> float:
    """``target_day``, checked, or the middle of ``days``' range when it is None."""
    if target_day is None:
        return float((days.min() + days.max()) / 2) if days.size else 0.0
    if not math.isfinite(float(target_day)):
        raise InvalidParameterError("target_day", target_day, "give a finite day number")
    return float(target_day)


def prepare_cube(reflectance: xr.DataArray, clear: xr.DataArray,
                 target_date: str | np.datetime64 | None
                 ) -> tuple[xr.DataArray, xr.DataArray, np.ndarray, float]:
    """Check and order the inputs of a cube composite: (reflectance (time, band, y, x),
    clear (time, y, x), days since 1970 of the dates, the target day)."""
    for name, arr, dims in (("reflectance", reflectance, ("time", "band", "y", "x")),
                            ("clear", clear, ("time", "y", "x"))):
        if set(arr.dims) != set(dims):
            raise InvalidParameterError(name, arr.dims, f"needs dimensions {dims}")
    reflectance = reflectance.transpose("time", "band", "y", "x")
    clear = clear.transpose("time", "y", "x")
    days = days_since_epoch(reflectance["time"].values)
    if target_date is None:
        return reflectance, clear, days, resolve_target_day(days, None)
    try:
        target_day = float(days_since_epoch(np.asarray(np.datetime64(target_date))))
    except ValueError as exc:
        raise InvalidParameterError("target_date", target_date,
                                    "give an ISO date such as 2024-06-15") from exc
    return reflectance, clear, days, target_day


def usable_block(reflectance: np.ndarray, clear: np.ndarray, *, nodata: int) -> np.ndarray:
    """(T, h, w) usable: clear, and every band of the (T, C, h, w) DN differs from nodata."""
    usable: np.ndarray = clear & (reflectance != nodata).all(axis=1)
    return usable


def dask_cube(reflectance: xr.DataArray, clear: xr.DataArray, *,
              align: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None
              ) -> tuple[Any, Any, tuple[tuple[int, ...], ...]]:
    """Dask arrays of a cube with time and band whole per chunk: ``(reflectance, clear
    (bool), spatial chunks)``. The spatial chunks are those of whichever input is
    dask-backed, passed through ``align`` per axis when given."""
    import dask.array as da

    refl_data, clear_data = da.asarray(reflectance.data), da.asarray(clear.data)
    spatial = (refl_data if reflectance.chunks is not None else clear_data).chunks[-2:]
    if align is not None:
        spatial = tuple(align(c) for c in spatial)
    return (refl_data.rechunk((-1, -1, *spatial)),
            clear_data.astype(bool).rechunk((-1, *spatial)), spatial)


def nearest_frame(days: np.ndarray, target_day: float) -> int:
    """The index of the date nearest ``target_day`` (ties: the earlier date)."""
    days = np.asarray(days, dtype=np.float64)
    distance = np.abs(days - target_day)
    candidates = np.flatnonzero(distance == distance.min())
    return int(candidates[np.argmin(days[candidates])])


def aligned_chunks(chunks: tuple[int, ...], *, depth: int, factor: int = 1,
                   at_most: int | None = None) -> tuple[int, ...]:
    """Regular chunks on the ``factor`` grid, each at least ``depth`` (the overlap): a
    neighbour can only lend a halo it has. A short last chunk joins the one before.
    ``at_most``: chunks no wider than that (on the grid, and still at least ``depth``)."""
    total = sum(chunks)
    size = -(-chunks[0] // factor) * factor
    if at_most is not None:
        size = min(size, max(factor, at_most // factor * factor))
    size = max(size, -(-max(depth, 1) // factor) * factor)
    if size >= total:
        return (total,)
    out = [size] * (total // size)
    rest = total - sum(out)
    if rest:
        if rest < depth:
            out[-1] += rest
        else:
            out.append(rest)
    return tuple(out)


def to_reflectance(dn: np.ndarray) -> np.ndarray:
    """uint16 digital numbers -> float32 reflectance (:data:`cloudfree.sentinel2.SCALE`, ``OFFSET``)."""
    return dn.astype(np.float32) * np.float32(s2bands.SCALE) + np.float32(s2bands.OFFSET)


def iso_day(day: float) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD`` (UTC)."""
    stamp = np.datetime64(int(round(float(day) * 86400)), "s")
    return str(stamp.astype("datetime64[D]"))


def meta(ndim: int, dtype: Any) -> np.ndarray:
    """An empty array of the output type, so dask never probes a chunk function (with
    empty arrays) while the graph is built."""
    return np.empty((0,) * ndim, dtype)


def _core_flags(rows: np.ndarray, block_info: dict[Any, Any] | None = None, *,
                bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """True on the rows (or columns) of a halo'd chunk that its core owns."""
    if block_info is None:  # dask always passes it
        raise ValueError("_core_flags runs inside dask's map_blocks")
    start, stop = bounds[block_info[None]["chunk-location"][0]]
    flags: np.ndarray = (rows >= start) & (rows < stop)
    return flags


def global_index(chunks: tuple[int, ...], depth: int) -> tuple[Any, Any]:
    """The halo'd global pixel index along one axis, and which of it is each chunk's core."""
    import dask.array as da

    index = da.arange(sum(chunks), chunks=(chunks,))
    starts = np.cumsum((0, *chunks))
    halo = da.overlap.overlap(index, depth={0: depth}, boundary="none", allow_rechunk=False)
    core = halo.map_blocks(_core_flags, bounds=list(zip(starts[:-1], starts[1:], strict=True)),
                           meta=meta(1, bool))
    return halo, core


def halo_depths(spatial: Sequence[tuple[int, ...]], depth: int) -> tuple[int, int]:
    """The overlap along y and x: ``depth``, or 0 along an axis of a single chunk (it has
    no neighbour to borrow from)."""
    depth_y, depth_x = (depth if len(c) > 1 else 0 for c in spatial)
    return depth_y, depth_x


def with_halo(array: Any, depth_y: int, depth_x: int) -> Any:
    """A dask array whose last two axes overlap their neighbours by ``depth_y``/``depth_x``."""
    import dask.array as da

    lead = array.ndim - 2
    return da.overlap.overlap(array, depth={**dict.fromkeys(range(lead), 0),
                                            lead: depth_y, lead + 1: depth_x},
                              boundary="none", allow_rechunk=False)


def trim_halo(array: Any, depth_y: int, depth_x: int) -> Any:
    """Undo :func:`with_halo` on a blockwise result."""
    import dask.array as da

    lead = array.ndim - 2
    return da.overlap.trim_internal(array, {**dict.fromkeys(range(lead), 0), lead: depth_y,
                                            lead + 1: depth_x}, boundary="none")


def map_with_halo(block: Callable[..., Any], arrays: Sequence[tuple[Any, str]], out_index: str,
                  *, depth: int, spatial: Sequence[tuple[int, ...]], meta_ndim: int,
                  dtype: Any, name: str | None = None, **blockwise_kw: Any) -> Any:
    """``block`` on every chunk of ``arrays`` (pairs of a dask array with spatial chunks
    ``spatial`` and its blockwise index, the last two letters ``yx``), each chunk grown by
    ``depth`` pixels of its neighbours; the result is trimmed back to the chunk cores."""
    import dask.array as da

    depth_y, depth_x = halo_depths(spatial, depth)
    args: list[Any] = []
    for array, index in arrays:
        args += [with_halo(array, depth_y, depth_x) if index.endswith("yx") else array, index]
    out = da.blockwise(block, out_index, *args, concatenate=True, meta=meta(meta_ndim, dtype),
                       **({"name": name} if name else {}), **blockwise_kw)
    return trim_halo(out, depth_y, depth_x)


# --------------------------------------------------------------------------- parameters


def with_defaults(method: str, params: dict[str, Any], defaults: dict[str, Any]
                  ) -> dict[str, Any]:
    """``params`` over ``defaults``; an unknown name is an error listing what ``method`` takes."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        takes = ", ".join(sorted(defaults)) or "no parameters"
        raise InvalidParameterError(unknown[0], params[unknown[0]],
                                    f"method {method!r} takes {takes}")
    return {**defaults, **params}


def check_number(params: dict[str, Any], name: str, *, positive: bool) -> None:
    """``params[name]`` as a finite float (> 0 when ``positive``, else >= 0), in place."""
    value = params[name]
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and bool(np.isfinite(value)))
    if not ok or value < 0 or (positive and value == 0):
        need = "a finite number > 0" if positive else "a finite number >= 0"
        raise InvalidParameterError(name, value, f"give {need}")
    params[name] = float(value)
