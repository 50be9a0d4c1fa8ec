"""The demo world's layout: MGRS-like tiles of one synthetic world, and its acquisition dates.

Tiles are adjacent windows of one world (:mod:`cloudfree.synthetic`), and each date has
one world cloud field and one sun, so adjacent tiles join without seams.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import Transformer

from cloudfree import synthetic as synth

EPSG = 32633
RESOLUTION_M = 10.0
DEFAULT_SIZE_PX = 1024
#: Upper-left corner (UTM 33N) of tile row 0 / column 0, about 46.0 N 15.0 E.
# A multiple of 10240 m, so output grid tiles of 64..1024 px at 10 m align with the scenes.
WORLD_ORIGIN = (501_760.0, 5_099_520.0)
#: The acquisition season (the synthetic world models no snow).
SEASON = (dt.date(2024, 4, 1), dt.date(2024, 10, 31))
COLUMN_LETTERS, ROW_LETTERS = "WXYZ", "MLKJ"  # MGRS-like 100 km squares of zone 33T
PRIMARY_ORBIT, SECONDARY_ORBIT = 79, 122


@dataclass(frozen=True)
class DemoTile:
    """One MGRS-like tile: a window of the synthetic world."""

    tile_id: str  # e.g. "33TWM"
    row: int
    col: int
    size_px: int

    @property
    def origin_px(self) -> tuple[float, float]:
        return (float(self.row * self.size_px), float(self.col * self.size_px))

    def transform(self, resolution_m: float = RESOLUTION_M) -> Affine:
        extent = self.size_px * RESOLUTION_M
        x0, y0 = WORLD_ORIGIN[0] + self.col * extent, WORLD_ORIGIN[1] - self.row * extent
        return Affine(resolution_m, 0.0, x0, 0.0, -resolution_m, y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t, extent = self.transform(), self.size_px * RESOLUTION_M
        return (t.c, t.f - extent, t.c + extent, t.f)


@dataclass(frozen=True)
class Acquisition:
    """One date of the demo: platform, orbit and the weather of its world cloud field."""

    date: dt.date
    platform: str
    relative_orbit: int
    weather: synth.Weather
    swath: synth.SwathEdge | None
    sun_zenith_deg: float  # one sun for the whole world, so tiles join without seams
    sun_azimuth_deg: float


def demo_tiles(n_tiles: int, *, size_px: int) -> list[DemoTile]:
    """Adjacent tiles, west to east in rows of up to four, rows going south."""
    ncols = min(n_tiles, len(COLUMN_LETTERS))
    return [
        DemoTile(
            f"33T{COLUMN_LETTERS[k % ncols]}{ROW_LETTERS[k // ncols]}",
            k // ncols,
            k % ncols,
            size_px,
        )
        for k in range(n_tiles)
    ]


def demo_acquisitions(n_dates: int, *, world_width_m: float, seed: int = 0) -> list[Acquisition]:
    """Dates on the 5-day revisit grid over the season, with seeded weather.

    Two dates are clear; about every fourth comes from the neighbouring orbit, two days
    later, whose swath edge crosses the eastern part of the world.
    """
    rng = np.random.default_rng([seed, 2024])
    latitude = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(*WORLD_ORIGIN)[1]
    span = (SEASON[1] - SEASON[0]).days
    clear = {1, n_dates - 1} if n_dates >= 4 else {n_dates - 1}
    out: list[Acquisition] = []
    for k in range(n_dates):
        offset = 5 * math.floor(k * span / max(n_dates - 1, 1) / 5)
        secondary = k % 4 == 2 and k not in clear
        date = SEASON[0] + dt.timedelta(days=offset + (2 if secondary else 0))
        cover = 0.0 if k in clear else float(np.clip(rng.beta(0.9, 1.6), 0.05, 0.85))
        cirrus = 0.0 if k in clear or rng.random() < 0.5 else float(rng.uniform(0.05, 0.3))
        weather = synth.Weather(
            cloud_cover=cover,
            cloud_height_m=float(rng.uniform(700, 2500)),
            cloud_scale_m=float(rng.uniform(1200, 4000)),
            cirrus_cover=float(rng.uniform(0.2, 0.6)),
            cirrus_opacity=cirrus,
            seed=int(rng.integers(2**31)),
        )
        swath = synth.SwathEdge(x_m=0.8 * world_width_m) if secondary else None
        platform = "sentinel-2a" if (offset // 5) % 2 == 0 else "sentinel-2b"
        orbit = SECONDARY_ORBIT if secondary else PRIMARY_ORBIT
        zenith, azimuth = synth.solar_position(date.timetuple().tm_yday, latitude_deg=latitude)
        out.append(Acquisition(date, platform, orbit, weather, swath, zenith, azimuth))
    return out


def demo_plan(
    *, n_tiles: int, n_dates: int, size_px: int, seed: int
) -> tuple[list[DemoTile], list[Acquisition]]:
    """The tiles of a demo catalog and its dates, whose swath edges cross its world."""
    tiles = demo_tiles(n_tiles, size_px=size_px)
    world_width_m = (max(t.col for t in tiles) + 1) * size_px * RESOLUTION_M
    return tiles, demo_acquisitions(n_dates, world_width_m=world_width_m, seed=seed)
