"""cloudfree.detection.sun: solar angles against the angles real items carry, and the
centre of a grid in degrees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloudfree.detection.sun import local_solar_days, lonlat_of, solar_angles
from cloudfree.errors import InvalidParameterError
from cloudfree.methods import days_since_epoch
from cloudfree.testing import shared_data_dir

_DATA = shared_data_dir()
ITEMS = _DATA / "stac-items" if _DATA else Path("/nonexistent/stac-items")
needs_items = pytest.mark.skipif(not ITEMS.is_dir(),
                                 reason="needs the real STAC items in ../shared/data/stac-items")


def _items_with_sun() -> list[tuple[str, float, float, float, float, float]]:
    """(name, day, lon, lat, zenith, azimuth) of the Earth Search v1 and Landsat items:
    their datetime is the scene's own sensing time (the Planetary Computer's is the
    datatake's start, minutes off)."""
    out = []
    for path in sorted(ITEMS.glob("*/*.json")):
        if path.parent.name not in ("earth-search-v1-l2a", "earth-search-v1-c1-l2a",
                                    "landsat-c2-l2"):
            continue
        item = json.loads(path.read_text())
        props = item["properties"]
        if "view:sun_elevation" not in props:
            continue
        west, south, east, north = item["bbox"][:4]
        day = float(days_since_epoch(np.array([props["datetime"].rstrip("Z")]))[0])
        out.append((path.name, day, (west + east) / 2, (south + north) / 2,
                    90.0 - float(props["view:sun_elevation"]), float(props["view:sun_azimuth"])))
    return out


@needs_items
def test_solar_angles_match_real_items() -> None:
    items = _items_with_sun()
    assert len(items) >= 15
    zenith_err, azimuth_err = [], []
    for name, day, lon, lat, zenith, azimuth in items:
        z, a = solar_angles(np.array([day]), lon, lat)
        zenith_err.append(abs(z[0] - zenith))
        azimuth_err.append(abs((a[0] - azimuth + 180) % 360 - 180))
        # The items' angles are tile means; the bbox centre is not the tile's centre.
        assert zenith_err[-1] < 1.0, (name, z[0], zenith)
        assert azimuth_err[-1] < 2.0, (name, a[0], azimuth)
    assert np.median(zenith_err) < 0.4


def test_solar_angles_follow_the_day_and_the_season() -> None:
    # Noon at Greenwich at the June solstice: the sun stands 23.4 deg north of the
    # equator, so at 51.5N its zenith is about 28 deg, due south.
    solstice = float(days_since_epoch(np.array(["2024-06-20T12:00:00"]))[0])
    z, a = solar_angles(np.array([solstice]), 0.0, 51.5)
    assert abs(z[0] - 28.1) < 0.5 and abs(a[0] - 180.0) < 3.0
    # Morning: sun in the east, higher in summer than in winter.
    morning = days_since_epoch(np.array(["2024-06-20T08:00:00", "2024-12-20T08:00:00"]))
    z, a = solar_angles(morning, 0.0, 51.5)
    assert 60 < a[0] < 120 and 100 < a[1] < 140
    assert z[0] < z[1]
    # The southern hemisphere sees the noon sun in the north.
    _, a = solar_angles(np.array([solstice]), 0.0, -35.0)
    assert abs((a[0] + 180) % 360 - 180) < 3.0


def test_local_solar_days_sets_the_overpass_time() -> None:
    days = local_solar_days(np.array([19000.0, 19000.9]), lon_deg=15.0)
    # 10:30 local solar time at 15E is 09:30 UTC, on the same UTC day.
    assert np.allclose(days, 19000.0 + 9.5 / 24)


def test_lonlat_of_a_utm_grid() -> None:
    # A grid centred on zone 31's central meridian (3E) at the equator, 20 m pixels.
    transform = (20.0, 0.0, 500000.0 - 20 * 50, 0.0, -20.0, 20 * 30)
    lon, lat = lonlat_of("EPSG:32631", transform, (60, 100))
    assert abs(lon - 3.0) < 1e-9 and abs(lat) < 1e-9
    # 31UES (a real item's proj:transform): its centre is in Belgium, east of 3E.
    tile = (20.0, 0.0, 499980.0, 0.0, -20.0, 5700000.0)
    lon, lat = lonlat_of("EPSG:32631", tile, (5490, 5490))
    assert 3.5 < lon < 4.0 and 50.7 < lat < 51.2
    # The centre moves with the grid's size.
    lon_small, lat_small = lonlat_of("EPSG:32631", tile, (2, 2))
    assert lat_small > lat and lon_small < lon


def test_bad_inputs_name_what_to_fix() -> None:
    with pytest.raises(InvalidParameterError, match="lonlat"):
        solar_angles(np.array([0.0]), 0.0, 95.0)
    with pytest.raises(InvalidParameterError, match="days"):
        solar_angles(np.array([np.nan]), 0.0, 45.0)
    with pytest.raises(InvalidParameterError, match="crs"):
        lonlat_of("EPSG:not-a-code", (10, 0, 0, 0, -10, 0), (2, 2))
    with pytest.raises(InvalidParameterError, match="transform"):
        lonlat_of("EPSG:32631", (10, 0, 0), (2, 2))
