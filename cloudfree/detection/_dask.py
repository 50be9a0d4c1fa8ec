"""Cloud detection on a lazy cube: a registry detector run per dask chunk, with its halo.

:func:`detect_cube` is what a mosaic masks with. It takes the cube as the pipeline builds
it (:func:`cloudfree.cube.build_cube`: uint16 DN in cloudfree's encoding, 0 = no data,
time whole, space chunked) and runs :func:`cloudfree.detection.detect` on every spatial
chunk grown by the detector's halo (:meth:`~cloudfree.detection.DetectorSpec.halo_px`,
``dask.array.map_overlap`` with ``boundary="none"``), time whole. Everything a detector's
result at a pixel depends on lies within that halo, so the chunked mask equals the mask of
one run over the whole cube, and two adjacent tiles (each grown by the halo, then cropped)
equal one run over both.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from cloudfree.detection._registry import (
    DetectionInput,
    choose,
    detect,
    esa_band_name,
    get_detector,
)
from cloudfree.errors import InvalidParameterError

__all__ = ("SUN_COORDS", "detect_cube", "detector_parameters", "sun_angles")

#: The per-date sun coordinates a cube may carry (stackstac puts item properties there):
#: (zenith, azimuth) names; an elevation is turned into a zenith (90 - elevation).
SUN_COORDS: tuple[tuple[str, str, bool], ...] = (
    ("s2:mean_solar_zenith", "s2:mean_solar_azimuth", False),
    ("view:sun_elevation", "view:sun_azimuth", True),
)


def _plain(value: Any) -> Any:
    """A parameter value as JSON has it: tuples as lists, numpy scalars as Python."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def detector_parameters(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every parameter detector ``name`` runs with: its defaults (the module's ``DEFAULTS``,
    else the keyword defaults of its ``detect``) updated with ``params``, JSON-ready. A
    parameter the detector does not take is :class:`~cloudfree.errors.InvalidParameterError`
    naming the ones it does."""
    module = get_detector(name).load()
    defaults = getattr(module, "DEFAULTS", None)
    if defaults is None:
        signature = inspect.signature(module.detect)
        defaults = {p.name: p.default for p in signature.parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY
                    and p.default is not inspect.Parameter.empty}
    given = dict(params or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidParameterError(
            "mask_params", given, f"detector {name!r} takes no {', '.join(unknown)}; its "
            f"parameters are {', '.join(sorted(defaults)) or 'none'}")
    return {key: _plain(value) for key, value in {**dict(defaults), **given}.items()}


def _days(cube: xr.DataArray) -> NDArray[np.float64]:
    from cloudfree.methods import days_since_epoch

    if "time" not in cube.coords:
        return np.arange(cube.sizes["time"], dtype=np.float64)
    return days_since_epoch(np.atleast_1d(cube["time"].values))


def sun_angles(cube: xr.DataArray, days: NDArray[np.float64],
               lonlat: tuple[float, float] | None
               ) -> tuple[NDArray[np.float64] | None, NDArray[np.float64] | None]:
    """(zenith, azimuth) per date, degrees: from the cube's time coordinates
    (:data:`SUN_COORDS`) when it has them for every date; else computed
    (:func:`cloudfree.detection.sun.solar_angles`) from the dates and ``lonlat``, dates
    without a time of day (the cube merges each day's scenes at 00:00,
    :func:`cloudfree.cube.merge_same_day`) taken at Sentinel-2's overpass, 10:30 local
    solar time (:func:`cloudfree.detection.sun.local_solar_days`); else
    ``(None, None)`` (the detector's documented fallback)."""
    for zenith_name, azimuth_name, is_elevation in SUN_COORDS:
        if zenith_name in cube.coords and azimuth_name in cube.coords:
            zenith = np.asarray(cube[zenith_name].values, np.float64).reshape(-1)
            azimuth = np.asarray(cube[azimuth_name].values, np.float64).reshape(-1)
            if zenith.size == days.size and np.isfinite(zenith).all() \
                    and np.isfinite(azimuth).all():
                return (90.0 - zenith if is_elevation else zenith), azimuth
    if lonlat is None:
        return None, None
    from cloudfree.detection.sun import overpass_angles

    return overpass_angles(days, float(lonlat[0]), float(lonlat[1]))


def _decode(dn: NDArray[Any]) -> NDArray[np.float32]:
    """uint16 DN (cloudfree's encoding) -> reflectance, NaN where DN is nodata (0)."""
    from cloudfree.sentinel2 import NODATA, OFFSET, SCALE, to_reflectance

    values = to_reflectance(dn.astype(np.float32), scale=SCALE, offset=OFFSET)
    out: NDArray[np.float32] = np.where(dn == NODATA, np.float32(np.nan), values).astype(
        np.float32)
    return out


def detect_cube(
    name: str,
    reflectance: xr.DataArray,
    scl: xr.DataArray | None = None,
    *,
    resolution_m: float,
    params: Mapping[str, Any] | None = None,
    level: str | None = None,
    lonlat: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The (time, y, x) clear mask of detector ``name`` on a DN cube, lazy when it is.

    Args:
        name: a registry detector, or ``auto`` (resolved by
            :func:`~cloudfree.detection.choose` from the cube's bands, whether ``scl`` is
            given, its dates and ``level``).
        reflectance: (time, band, y, x) uint16 DN in cloudfree's encoding (0 = no data);
            band coordinates are asset keys (``blue``) or ESA ids (``B02``).
        scl: (time, y, x) Sen2Cor classes on the same grid, or None.
        resolution_m: the pixel size (the halo is the detector's reach in pixels).
        params: the detector's parameters (:func:`detector_parameters`).
        level: ``"L1C"``, ``"L2A"`` or None.
        lonlat: the (lon, lat) of the cube's centre, for the sun when the cube's
            coordinates do not give it (:func:`sun_angles`).

    Returns:
        bool (time, y, x), True = clear (neither cloud, shadow nor no data), with the
        cube's coordinates; ``attrs``: ``detector`` (the resolved name), ``parameters``
        (every parameter it ran with) and ``halo_px``.
    """
    if reflectance.dims != ("time", "band", "y", "x"):
        raise InvalidParameterError("reflectance", reflectance.dims,
                                    "give a (time, band, y, x) cube")
    if scl is not None and scl.dims != ("time", "y", "x"):
        raise InvalidParameterError("scl", scl.dims, "give a (time, y, x) SCL cube")
    band_names = tuple(esa_band_name(str(b)) for b in np.atleast_1d(reflectance["band"].values))
    n_dates = int(reflectance.sizes["time"])
    resolved = choose(name, band_names, has_scl=scl is not None, n_dates=n_dates, level=level)
    parameters = detector_parameters(resolved, params)
    halo = get_detector(resolved).halo_px(resolution_m, parameters)
    days = _days(reflectance)
    zenith, azimuth = sun_angles(reflectance, days, lonlat)

    def block(data: NDArray[Any], classes: NDArray[Any] | None = None) -> NDArray[np.bool_]:
        """One (T, C, h, w) DN block (and its (T, 1, h, w) SCL) -> (T, h, w) clear."""
        inp = DetectionInput(
            bands=_decode(np.asarray(data)), band_names=band_names, days=days,
            resolution_m=float(resolution_m),
            scl=None if classes is None else np.asarray(classes)[:, 0].astype(np.uint8),
            sun_zenith_deg=zenith, sun_azimuth_deg=azimuth, lonlat=lonlat, level=level)
        clear: NDArray[np.bool_] = detect(resolved, inp, **parameters).clear
        return clear

    module = get_detector(resolved).load()
    two_stage = hasattr(module, "pixel_flags") and hasattr(module, "from_flags")

    def flags_block(data: NDArray[Any], classes: NDArray[Any] | None = None
                    ) -> NDArray[np.uint8]:
        """The per-pixel stage of a two-stage detector: no halo needed."""
        inp = DetectionInput(
            bands=_decode(np.asarray(data)), band_names=band_names, days=days,
            resolution_m=float(resolution_m),
            scl=None if classes is None else np.asarray(classes)[:, 0].astype(np.uint8),
            sun_zenith_deg=zenith, sun_azimuth_deg=azimuth, lonlat=lonlat, level=level)
        flags: NDArray[np.uint8] = module.pixel_flags(inp, **parameters)
        return flags

    def spatial_block(flags: NDArray[Any], classes: NDArray[Any] | None = None
                      ) -> NDArray[np.bool_]:
        """The spatial stage on the per-pixel bits (with the halo)."""
        result = module.from_flags(
            np.asarray(flags), band_names=band_names, resolution_m=float(resolution_m),
            scl=None if classes is None else np.asarray(classes).astype(np.uint8),
            sun_zenith_deg=zenith, sun_azimuth_deg=azimuth, **parameters)
        clear: NDArray[np.bool_] = result.clear
        return clear

    lazy = hasattr(reflectance.data, "dask") or (scl is not None and hasattr(scl.data, "dask"))
    if lazy:
        import dask.array as da

        arrays = [da.asarray(reflectance.data).rechunk({0: -1, 1: -1})]
        if scl is not None:  # (T, 1, Y, X), on the same spatial chunks
            arrays.append(da.asarray(scl.data)[:, None].rechunk(
                {0: -1, 1: -1, 2: arrays[0].chunks[2], 3: arrays[0].chunks[3]}))
        if two_stage:  # the costly per-pixel tests without a halo, then the spatial part
            flags = da.map_blocks(flags_block, *arrays, drop_axis=1, dtype=np.uint8,
                                  meta=np.empty((0, 0, 0), np.uint8))
            spatial = [flags] + ([arrays[1][:, 0]] if scl is not None else [])
            mask = da.map_overlap(spatial_block, *spatial, depth={0: 0, 1: halo, 2: halo},
                                  boundary="none", dtype=bool, align_arrays=False,
                                  meta=np.empty((0, 0, 0), bool))
        else:
            mask = da.map_overlap(block, *arrays, depth={0: 0, 1: 0, 2: halo, 3: halo},
                                  boundary="none", drop_axis=1, dtype=bool,
                                  align_arrays=False, meta=np.empty((0, 0, 0), bool))
    else:
        mask = block(np.asarray(reflectance.data),
                     None if scl is None else np.asarray(scl.data)[:, None])
    coords = {k: v for k, v in reflectance.coords.items() if "band" not in v.dims}
    out = xr.DataArray(mask, dims=("time", "y", "x"), coords=coords, name="clear")
    out.attrs.update(detector=resolved, parameters=parameters, halo_px=halo)
    return out

