"""Compositing: non-learned cloud-free composites of a masked time cube, with provenance.

Four methods, all vectorised over pixels (no Python loop over pixels) and NaN-aware:

``median``
    Per-band median of the clear observations (one sort, :func:`nanmedian_time`).
``bap``
    Best-available pixel: every clear observation gets a parametric score, the best one
    is taken as is. The score is a weighted sum of three terms in 0..1 (FORCE-like):
    ``cloud``: the distance in pixels to the nearest unusable pixel (cloud, shadow,
    nodata) of the same date, ``min(d, cloud_distance_px) / cloud_distance_px``;
    ``day``: a Gaussian of the distance in days to the target date,
    ``exp(-0.5 (Δ / day_sigma)²)``; Δ is the circular day-of-year distance (FORCE's DOY
    score: the same season of another year counts as near), or with ``seasonal=False``
    the absolute distance in days (the same within a window shorter than a year);
    ``haze``: ``min_t(blue) / blue``, the pixel's darkest clear value of the haze band
    divided by this date's, so the clearest date scores 1 (units-free; off when no haze
    band is given). Ties go to the date nearest in absolute time, then the earliest.
``geomedian``
    Multi-band geometric median, as DEA's geomedian: Weiszfeld steps with the Vardi–Zhang
    rule for iterates on an observation, accelerated by SQUAREM, started from the per-band
    median and iterated on all pixels of a block at once (converged pixels drop out) until
    a pixel's step is below ``tol`` times its norm plus spread, or ``max_iter`` cycles
    (:class:`GeomedianNotConvergedWarning` then). A median on an observation (a triangle
    with an angle of 120° or more) is detected exactly. With two observations, or one
    band, any point of the middle segment is a median: the midpoint is taken, as ``median``.
``interpolate``
    For the target date, linear in time between the nearest clear observations before and
    after; the nearest one when only one side has any; the observation itself when one
    falls on the target date.

``interpolate_corrected`` (interpolation fitted to the target date's own clear pixels) is
not a per-pixel method: it chooses one correction per tile, with a halo between chunks.
It lives in :mod:`cloudfree.methods._corrected` and reuses :func:`interpolate_at`.

Provenance, per pixel, for every method:

``clear_count``
    the number of clear observations in the stack (whatever the method used).
``source_day`` / ``source_date``
    days since 1970-01-01 of the observation used. ``median``: the date of the clear
    observation nearest (Euclidean, over bands) to the median vector — per band the
    median may come from different dates, so this names the single observation the
    composite is closest to. ``geomedian``: the mean date weighted by the final Weiszfeld
    weights ``1 / max(distance, tol·|y|)``. ``bap``: the chosen date. ``interpolate``: the
    target date when interpolated, the observation's date otherwise.
``fill``
    a ``FILL_*`` code: ``observed`` when the value is one real observation (bap's pick,
    interpolate's exact or nearest, and median/geomedian of a single clear observation),
    ``composited`` for a blend of several (median, geomedian), ``interpolated`` for linear
    in time, ``nodata`` where no observation is clear; ``generated`` is for the generator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import ndimage

from cloudfree.errors import InvalidParameterError
from cloudfree.methods.geomedian import GeomedianNotConvergedWarning, geomedian  # noqa: F401 (re-exported)

FILL_NODATA, FILL_OBSERVED, FILL_COMPOSITED, FILL_INTERPOLATED, FILL_GENERATED = 0, 1, 2, 3, 4
FILL_CLASSES: dict[int, tuple[str, str]] = {
    FILL_NODATA: ("nodata", "no clear observation of this pixel"),
    FILL_OBSERVED: ("observed", "one real clear observation, taken as is"),
    FILL_COMPOSITED: ("composited", "a blend of several clear observations (median, geomedian)"),
    FILL_INTERPOLATED: ("interpolated", "linear in time between clear observations"),
    FILL_GENERATED: ("generated", "predicted by the generator network"),
}

Method = Literal["median", "bap", "geomedian", "interpolate"]
METHODS: tuple[str, ...] = ("median", "bap", "geomedian", "interpolate")

#: Per-method parameters and their defaults.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "median": {},
    "bap": {
        "cloud_weight": 0.4,  # FORCE's SCORE_CLOUD_WEIGHT
        "day_weight": 1.0,  # FORCE's SCORE_DOY_WEIGHT
        "haze_weight": 0.3,  # FORCE's SCORE_HAZE_WEIGHT
        "cloud_distance_px": 20.0,  # saturation: 200 m at 10 m
        "day_sigma": 30.0,  # days
        "seasonal": True,  # day-of-year distance
        "haze_band": None,
    },
    "geomedian": {"tol": 1e-7, "max_iter": 200},
    "interpolate": {},
}
#: Names ``composite`` looks for as bap's haze band when none is given.
HAZE_BAND_NAMES: tuple[str, ...] = ("blue", "B02", "b02")


@dataclass
class Composite:
    """The numpy core's result."""

    reflectance: np.ndarray  # (C, H, W) float32, NaN where no clear observation
    clear_count: np.ndarray  # (H, W) uint16
    source_day: np.ndarray  # (H, W) float32 days since 1970-01-01, NaN where none
    fill: np.ndarray  # (H, W) uint8 FILL_* code


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


# --------------------------------------------------------------------------- parameters


def check_params(method: str, params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """Validate ``params`` for ``method`` and return them with the defaults filled in."""
    if method not in METHODS:
        raise InvalidParameterError("method", method, f"choose one of {', '.join(METHODS)}")
    defaults = DEFAULT_PARAMS[method]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        takes = ", ".join(sorted(defaults)) or "no parameters"
        raise InvalidParameterError(unknown[0], params[unknown[0]],
                                    f"method {method!r} takes {takes}")
    out = {**defaults, **params}

    def number(name: str, *, positive: bool) -> None:
        value = out[name]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (positive and value == 0):
            need = "a finite number > 0" if positive else "a finite number >= 0"
            raise InvalidParameterError(name, value, f"give {need}")
        out[name] = float(value)

    if method == "bap":
        for name in ("cloud_weight", "day_weight", "haze_weight"):
            number(name, positive=False)
        for name in ("cloud_distance_px", "day_sigma"):
            number(name, positive=True)
        if out["cloud_weight"] + out["day_weight"] + out["haze_weight"] == 0:
            raise InvalidParameterError("cloud_weight", 0.0, "give at least one weight > 0")
        if not isinstance(out["seasonal"], bool):
            raise InvalidParameterError("seasonal", out["seasonal"], "give True or False")
        band = out["haze_band"]
        if band is not None and (isinstance(band, bool) or not isinstance(band, int | np.integer)
                                 or not 0 <= band < n_bands):
            raise InvalidParameterError("haze_band", band,
                                        f"give a band index 0..{n_bands - 1} or None")
        out["haze_band"] = None if band is None else int(band)
    elif method == "geomedian":
        number("tol", positive=True)
        it = out["max_iter"]
        if isinstance(it, bool) or not isinstance(it, int | np.integer) or it < 1:
            raise InvalidParameterError("max_iter", it, "give an integer >= 1")
        out["max_iter"] = int(it)
    return out


# --------------------------------------------------------------------------- numpy core


def composite_array(
    values: np.ndarray,
    days: np.ndarray,
    *,
    method: Method,
    target_day: float | None = None,
    **params: Any,
) -> Composite:
    """Composite a (T, C, H, W) stack over time, with provenance.

    Args:
        values: reflectance (any float; other dtypes become float32), NaN where the
            observation is not usable. An observation is usable only where all its bands
            are finite.
        days: (T,) days since 1970-01-01 of each date (fractions allowed).
        method: one of :data:`METHODS` (see the module docstring).
        target_day: the date ``bap`` scores against and ``interpolate`` reconstructs;
            default the middle of ``days``' range.
        **params: per-method knobs, see :data:`DEFAULT_PARAMS`. ``bap``:
            ``cloud_weight``, ``day_weight``, ``haze_weight``, ``cloud_distance_px`` (the
            distance to the nearest unusable pixel at which the cloud score saturates; it
            is computed here from each frame's NaN pattern), ``day_sigma`` (days),
            ``seasonal``, ``haze_band`` (band index or None for no haze term).
            ``geomedian``: ``tol`` (step relative to the pixel's norm plus spread),
            ``max_iter`` (SQUAREM cycles of three Weiszfeld steps).
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
    checked = check_params(method, params, n_bands=values.shape[1])
    target = _target_day(days, target_day)
    usable = np.isfinite(values).all(axis=1)  # (T, H, W)
    if not usable.all():
        values = np.where(usable[:, None], values, np.nan)
    result = _composite_core(values, usable, days, method, target, checked)
    result.source_day = result.source_day.astype(np.float32)
    return result


def _target_day(days: np.ndarray, target_day: float | None) -> float:
    if target_day is None:
        return float((days.min() + days.max()) / 2) if days.size else 0.0
    if not math.isfinite(float(target_day)):
        raise InvalidParameterError("target_day", target_day, "give a finite day number")
    return float(target_day)


def _composite_core(
    values: np.ndarray,
    usable: np.ndarray,
    days: np.ndarray,
    method: str,
    target_day: float,
    params: dict[str, Any],
    cloud_distance: np.ndarray | None = None,
) -> Composite:
    """``values`` (T, C, H, W) is NaN exactly where ``usable`` (T, H, W) is False.

    ``source_day`` stays float64 here (float32 resolves only ~3 minutes at 2024's days).
    """
    count = usable.sum(axis=0)
    if method == "median":
        refl, source, fill = _median(values, usable, days, count)
    elif method == "bap":
        if cloud_distance is None and params["cloud_weight"] > 0:
            cloud_distance = distance_to_unusable(usable, cap=params["cloud_distance_px"])
        refl, source, fill = _bap(values, usable, days, target_day, params, cloud_distance)
    elif method == "geomedian":
        # start from the per-band median: exact for one observation, close otherwise
        refl, source = geomedian(values, usable, days, count, params, nanmedian_time(values))
        fill = _blend_fill(count)
    else:
        refl, source, fill = _interpolate(values, usable, days, target_day)
    return Composite(
        reflectance=refl.astype(np.float32, copy=False),
        clear_count=np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16),
        source_day=np.asarray(source, dtype=np.float64),
        fill=fill.astype(np.uint8, copy=False),
    )


def _blend_fill(count: np.ndarray) -> np.ndarray:
    return np.select([count == 0, count == 1], [FILL_NODATA, FILL_OBSERVED], FILL_COMPOSITED)


def _median(values, usable, days, count):
    refl = nanmedian_time(values)
    # the date of the clear observation nearest to the median vector
    dist2 = np.zeros(usable.shape, np.float32)
    for band in range(values.shape[1]):
        dist2 += (values[:, band] - refl[band]) ** 2
    dist2[~usable] = np.inf
    pick = np.argmin(dist2, axis=0)
    source = np.where(count > 0, days[pick], np.nan)
    return refl, source, _blend_fill(count)


def distance_to_unusable(usable: np.ndarray, *, cap: float) -> np.ndarray:
    """(T, H, W) Euclidean distance in pixels from each pixel to the nearest unusable pixel
    of its own frame, capped at ``cap`` (frames with nothing unusable get ``cap``).

    A loop over dates, each frame one ``distance_transform_edt``. Exact within a chunk
    computed with a halo of at least ``cap`` pixels.
    """
    out = np.full(usable.shape, cap, np.float32)
    for t in range(usable.shape[0]):
        frame = usable[t]
        if not frame.any():
            out[t] = 0
        elif not frame.all():
            np.minimum(ndimage.distance_transform_edt(frame), cap, out=out[t], casting="unsafe")
    return out


def _day_distance(days: np.ndarray, target_day: float, seasonal: bool) -> np.ndarray:
    delta = np.abs(days - target_day)
    if seasonal:
        delta = np.mod(delta, 365.25)
        delta = np.minimum(delta, 365.25 - delta)
    return delta


def _bap(values, usable, days, target_day, params, cloud_distance):
    # ties (e.g. the same day of year in two years) go to the nearest date in time
    tie_break = -1e-9 * np.abs(days - target_day)
    score = np.broadcast_to(tie_break[:, None, None], usable.shape).copy()
    if params["cloud_weight"] > 0:
        cap = params["cloud_distance_px"]
        score += params["cloud_weight"] / cap * np.minimum(cloud_distance, cap)
    if params["day_weight"] > 0:
        delta = _day_distance(days, target_day, params["seasonal"])
        day_score = np.exp(-0.5 * (delta / params["day_sigma"]) ** 2)
        score += (params["day_weight"] * day_score)[:, None, None]
    if params["haze_weight"] > 0 and params["haze_band"] is not None:
        haze = values[:, params["haze_band"]]
        darkest = np.fmin.reduce(haze, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            haze_score = np.where(haze > 0, np.clip(darkest / haze, 0, 1), 1.0)
        score += params["haze_weight"] * np.nan_to_num(haze_score, nan=0.0)
    score[~usable] = -np.inf
    pick = np.argmax(score, axis=0)
    refl = np.take_along_axis(values, pick[None, None], axis=0)[0]  # NaN where none usable
    any_clear = usable.any(axis=0)
    source = np.where(any_clear, days[pick], np.nan)
    fill = np.where(any_clear, FILL_OBSERVED, FILL_NODATA)
    return refl, source, fill


def _interpolate(values, usable, days, target_day):
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


def interpolate_at(values: np.ndarray, usable: np.ndarray, days: np.ndarray,
                   target_day: float) -> np.ndarray:
    """The ``interpolate`` core alone: (C, H, W) reflectance at ``target_day`` from a
    (T, C, H, W) stack that is NaN exactly where ``usable`` (T, H, W) is False; NaN where
    no date is usable. The corrected methods start from it (:mod:`cloudfree.methods._corrected`)."""
    return _interpolate(values, usable, np.asarray(days, np.float64), float(target_day))[0]


# --------------------------------------------------------------------------- xarray/dask


def days_since_epoch(times: np.ndarray) -> np.ndarray:
    """datetime64 values (or ISO strings) as float days since 1970-01-01."""
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    return seconds.astype(np.float64) / 86400.0


def _composite_block(reflectance, clear, cloud_distance=None, *, days, method, target_day,
                     params, nodata):
    """One spatial block: uint16 DN (T, C, h, w) and clear (T, h, w) -> (C + 3, h, w)."""
    usable = usable_block(reflectance, clear, nodata=nodata)
    values = reflectance.astype(np.float32)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    result = _composite_core(values, usable, days, method, target_day, params, cloud_distance)
    n_bands = reflectance.shape[1]
    out = np.empty((n_bands + 3, *reflectance.shape[2:]), np.float32)
    out[:n_bands] = result.reflectance
    out[n_bands] = result.clear_count
    # the UTC calendar day; the epsilon absorbs rounding in weighted mean dates
    out[n_bands + 1] = np.floor(result.source_day + 1e-6)
    out[n_bands + 2] = result.fill
    return out


def usable_block(reflectance, clear, *, nodata):
    """(T, h, w) usable: clear, and every band of the (T, C, h, w) DN differs from nodata."""
    return clear & (reflectance != nodata).all(axis=1)


def _to_dn(values: xr.DataArray, nodata: int) -> xr.DataArray:
    """Float digital numbers back to uint16, NaN becoming ``nodata``."""
    rounded = values.round().clip(1, np.iinfo(np.uint16).max)
    return rounded.fillna(nodata).astype(np.uint16)


def _resolve_haze_band(params: dict[str, Any], bands: list[Any]) -> None:
    band = params.get("haze_band", "auto")
    if band == "auto":
        found = [name for name in HAZE_BAND_NAMES if name in bands]
        params["haze_band"] = bands.index(found[0]) if found else None
    elif isinstance(band, str):
        if band not in bands:
            raise InvalidParameterError("haze_band", band, f"give one of the bands {bands}")
        params["haze_band"] = bands.index(band)


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
        return reflectance, clear, days, _target_day(days, None)
    try:
        target_day = float(days_since_epoch(np.datetime64(target_date)))
    except ValueError as exc:
        raise InvalidParameterError("target_date", target_date,
                                    "give an ISO date such as 2024-06-15") from exc
    return reflectance, clear, days, target_day


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


def stacked_to_dataset(stacked: Any, reflectance: xr.DataArray, *, n_bands: int,
                       nodata: int) -> xr.Dataset:
    """The output dataset from a (bands + 3, y, x) float stack of reflectance DN, clear
    count, source day and fill, on ``reflectance``'s grid (shared with the generator)."""

    def coords_on(dims: set[str]) -> dict[str, Any]:
        return {k: v for k, v in reflectance.coords.items() if set(v.dims) <= dims}

    refl = xr.DataArray(stacked[:n_bands], dims=("band", "y", "x"),
                        coords=coords_on({"band", "y", "x"}))
    plane = partial(xr.DataArray, dims=("y", "x"), coords=coords_on({"y", "x"}))
    count = plane(stacked[n_bands]).astype(np.uint16)
    source = plane(stacked[n_bands + 1]).fillna(0).astype(np.uint16)
    fill = plane(stacked[n_bands + 2]).astype(np.uint8)
    source.attrs.update(units="days since 1970-01-01", nodata=0)
    fill.attrs.update(flag_values=list(FILL_CLASSES),
                      flag_meanings=" ".join(name for name, _ in FILL_CLASSES.values()))
    return xr.Dataset({"reflectance": _to_dn(refl, nodata), "clear_count": count,
                       "source_date": source, "fill": fill})


def composite(
    reflectance: xr.DataArray,
    clear: xr.DataArray,
    *,
    method: Method = "median",
    target_date: str | np.datetime64 | None = None,
    nodata: int = 0,
    **params: Any,
) -> xr.Dataset:
    """Composite a (time, band, y, x) uint16 cube over time, lazily when it is dask-backed.

    Args:
        reflectance: digital numbers, ``nodata`` where there is no data.
        clear: (time, y, x) True where the observation is usable. An observation is used
            only where it is clear and all its bands differ from ``nodata``.
        method: one of :data:`METHODS` (see the module docstring).
        target_date: the date ``bap`` and ``interpolate`` aim at; default the middle of
            the cube's time range.
        nodata: the nodata value of ``reflectance`` and of the output.
        **params: per-method knobs as in :func:`composite_array`. bap's ``haze_band``
            may be a band name; by default the band named ``blue`` or ``B02`` if there is
            one, else no haze term.

    Returns:
        A dataset of ``reflectance`` (band, y, x) uint16, ``nodata`` where no date was
        clear; ``clear_count`` (y, x) uint16; ``source_date`` (y, x) uint16 days since
        1970-01-01 (floored to the UTC day), 0 where none; ``fill`` (y, x) uint8 code of
        :data:`FILL_CLASSES`. ``attrs``: ``method``, ``parameters`` (JSON-able, with
        defaults and the target date) and ``nodata``. Dask in, dask out: each spatial
        chunk is composited with time and band whole (bap's cloud distance with a halo).
    """
    if method not in METHODS:
        raise InvalidParameterError("method", method, f"choose one of {', '.join(METHODS)}")
    reflectance, clear, days, target_day = prepare_cube(reflectance, clear, target_date)
    bands = list(reflectance["band"].values.tolist())
    params = dict(params)
    if method == "bap":
        _resolve_haze_band(params, bands)
    checked = check_params(method, params, n_bands=len(bands))
    n_bands = len(bands)
    block = partial(_composite_block, days=days, method=method, target_day=target_day,
                    params=checked, nodata=nodata)
    lazy = reflectance.chunks is not None or clear.chunks is not None
    if lazy:
        import dask.array as da

        refl_data, clear_data, spatial = dask_cube(reflectance, clear)
        args: list[Any] = [refl_data, "tbyx", clear_data, "tyx"]
        if method == "bap" and checked["cloud_weight"] > 0:
            cap = checked["cloud_distance_px"]
            halo = int(math.ceil(cap))
            valid = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl_data,
                                 "tbyx", clear_data, "tyx", concatenate=True, dtype=bool)
            distance = valid.map_overlap(partial(distance_to_unusable, cap=cap),
                                         depth={0: 0, 1: halo, 2: halo}, boundary="none",
                                         dtype=np.float32)
            args += [distance, "tyx"]
        stacked = da.blockwise(block, "zyx", *args, new_axes={"z": n_bands + 3},
                               concatenate=True, dtype=np.float32)
    else:
        stacked = block(np.asarray(reflectance.data), np.asarray(clear.data, dtype=bool))

    out = stacked_to_dataset(stacked, reflectance, n_bands=n_bands, nodata=nodata)
    parameters = dict(checked)
    if method == "bap" and parameters["haze_band"] is not None:
        parameters["haze_band"] = str(bands[parameters["haze_band"]])
    if method in ("bap", "interpolate"):
        stamp = np.datetime64(int(round(target_day * 86400)), "s")
        parameters["target_date"] = str(stamp.astype("datetime64[D]"))
    json.dumps(parameters)  # the lead writes these into processing:*; fail here, not there
    out.attrs.update(method=method, parameters=parameters, nodata=nodata)
    return out
