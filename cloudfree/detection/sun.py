"""The sun's position for a place and time, for cloud-shadow projection.

NOAA's general solar position formulas (Spencer's Fourier series for the equation of time
and the declination, then the hour angle): good to a few tenths of a degree, far better
than cloud-shadow projection needs (the cloud height is unknown by hundreds of metres).
Checked against the angles real Sentinel-2 items carry (``view:sun_elevation``,
``s2:mean_solar_zenith``) in ``tests/unit/test_sun.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cloudfree.errors import InvalidParameterError

F64 = NDArray[np.float64]

#: Sentinel-2's descending node crosses the equator at 10:30 local solar time: the time
#: assumed for a day number without a time of day.
S2_LOCAL_SOLAR_TIME_H = 10.5


def solar_angles(days: ArrayLike, lon_deg: float, lat_deg: float) -> tuple[F64, F64]:
    """Sun zenith and azimuth (degrees, azimuth clockwise from north) at ``days``.

    Args:
        days: (T,) float days since 1970-01-01 UTC, time of day included.
        lon_deg, lat_deg: the place (WGS84 degrees, east and north positive).

    Returns:
        (zenith_deg, azimuth_deg), each (T,) float64; a zenith above 90 is night.
    """
    d = np.atleast_1d(np.asarray(days, dtype=np.float64))
    if not (np.isfinite(lon_deg) and np.isfinite(lat_deg) and -90 <= lat_deg <= 90):
        raise InvalidParameterError("lonlat", (lon_deg, lat_deg),
                                    "give a longitude and a latitude in -90..90 degrees")
    if not np.all(np.isfinite(d)):
        raise InvalidParameterError("days", days.tolist() if isinstance(days, np.ndarray)
                                    else days, "give finite day numbers since 1970")
    seconds = np.floor(d * 86400.0).astype("int64").astype("datetime64[s]")
    year = seconds.astype("datetime64[Y]")
    year_days = ((year + 1).astype("datetime64[D]") - year.astype("datetime64[D]")).astype(
        np.float64)
    since_new_year = (seconds - year.astype("datetime64[s]")).astype(np.float64) / 86400.0
    utc_hours = (since_new_year % 1.0) * 24.0
    gamma = 2.0 * np.pi / year_days * (np.floor(since_new_year) + (utc_hours - 12.0) / 24.0)
    eqtime_min = 229.18 * (0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
                           - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma))
    decl = (0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma)
            - 0.006758 * np.cos(2 * gamma) + 0.000907 * np.sin(2 * gamma)
            - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma))
    true_solar_min = utc_hours * 60.0 + eqtime_min + 4.0 * float(lon_deg)
    hour = np.radians(true_solar_min / 4.0 - 180.0)
    lat = np.radians(float(lat_deg))
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour)
    zenith = np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
    from_south = np.arctan2(np.sin(hour), np.cos(hour) * np.sin(lat) - np.tan(decl) * np.cos(lat))
    azimuth = (np.degrees(from_south) + 180.0) % 360.0
    return zenith.astype(np.float64), azimuth.astype(np.float64)


def local_solar_days(days: ArrayLike, lon_deg: float,
                     hours: float = S2_LOCAL_SOLAR_TIME_H) -> F64:
    """``days`` moved to ``hours`` local (mean) solar time of their UTC day: for day numbers
    without a time of day (whole days), the time Sentinel-2 passes over."""
    d = np.floor(np.asarray(days, dtype=np.float64))
    out: F64 = d + (hours - float(lon_deg) / 15.0) / 24.0
    return out


def overpass_angles(days: ArrayLike, lon_deg: float, lat_deg: float) -> tuple[F64, F64]:
    """:func:`solar_angles` at ``days``, a date without a time of day (a whole day
    number) taken at Sentinel-2's overpass (:func:`local_solar_days`)."""
    when = np.asarray(days, dtype=np.float64)
    when = np.where(when == np.floor(when), local_solar_days(when, lon_deg), when)
    zenith, azimuth = solar_angles(when, lon_deg, lat_deg)
    return np.asarray(zenith, np.float64), np.asarray(azimuth, np.float64)


def lonlat_of(crs: str, transform: Sequence[float], shape: Sequence[int]) -> tuple[float, float]:
    """The (lon, lat) in degrees of the centre of a grid.

    Args:
        crs: the grid's coordinate reference system (``"EPSG:32631"``, WKT...).
        transform: the affine transform, 6 floats in rasterio order (a, b, c, d, e, f):
            x = a * col + b * row + c, y = d * col + e * row + f.
        shape: (..., H, W) of the grid.
    """
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    values = [float(v) for v in transform]
    if len(values) < 6 or not all(np.isfinite(values[:6])):
        raise InvalidParameterError("transform", list(transform),
                                    "give 6 finite affine coefficients (rasterio order)")
    if len(shape) < 2:
        raise InvalidParameterError("shape", list(shape), "give at least (H, W)")
    try:
        source = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InvalidParameterError("crs", crs, f"give a valid CRS ({exc})") from exc
    a, b, c, d, e, f = values[:6]
    rows, cols = float(shape[-2]) / 2.0, float(shape[-1]) / 2.0
    x, y = a * cols + b * rows + c, d * cols + e * rows + f
    lon, lat = Transformer.from_crs(source, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)
