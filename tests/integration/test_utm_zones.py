"""Zones: one tile across a UTM zone boundary, from two real items in two zones.

The Planetary Computer items S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824
(EPSG 32646) and ..._T47XML_20240419T123458 (EPSG 32647) are one datatake at 82 N; their
footprints overlap in a strip that the 96 E meridian (the zone boundary) crosses. Each
item's COGs are written (at the item's own grid, sparse) with a reflectance that is a
smooth function of geographic position (3 DN per 10 m east, 2 DN per 10 m north), and
only on its own side of the boundary (with a 0.0015 deg, ~23 m, overlap), so the tile needs
both items and a shift of either shows. A 64 px tile centred on the meridian, in ONE of
the two EPSGs (both are tried), is mosaicked (median; one date, the two scenes merged
first-valid) and compared with a reference computed with rasterio directly: each source
band reprojected onto the tile grid with ``rasterio.warp.reproject`` (nearest, as the
cube), merged first-valid.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from cloudfree import catalogs
from cloudfree._stac_api import upsert_collection, upsert_items
from cloudfree.grid import AOI, DateWindow, Tile, bbox_intersects, transform_bbox
from cloudfree.search import search_scenes
from cloudfree.sentinel2 import BANDS, DEFAULT_BANDS
from cloudfree.testing import real_items as ri
from cloudfree.tile import MosaicParams, compute_tile

CATALOG = "planetary-computer-l2a"
ZONE_ITEMS = {
    32646: "S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824",
    32647: "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458",
}
COLLECTION = "pc-utm-zones"
BOUNDARY_LON = 96.0  # between UTM zones 46 (90-96 E) and 47 (96-102 E)
OVERLAP_DEG = 0.0015
#: Baseline 05.10 on the Planetary Computer: reflectance = DN * 1e-4 - 0.1.
SCALE, OFFSET = 1e-4, -0.1
TILE_PX = 64
BASE_DN = {"blue": 900, "green": 1100, "red": 1300, "nir": 2500, "swir16": 2000, "swir22": 1600}
EAST_DN_PER_M, NORTH_DN_PER_M = 0.3, 0.2
PARAMS = MosaicParams(method="median", chunksize=256)
#: The share of pixels where the cube's warp (stackstac, on the tile grown by its halo) and
#: rasterio's may pick different nearest source pixels (GDAL's approximate transformer on
#: different extents); measured 0 in both tile EPSGs. For scale: in the overlap (~306 of
#: the 4096 px) the two sources differ by up to 2 DN (10 m bands) and 5 DN (20 m bands);
#: a tile read 5 m off puts 37-73 % of the pixels more than 1 DN off, 10 m off 51-96 %.
MAX_DISAGREEMENT = 0.0


def _items() -> dict[int, dict[str, Any]]:
    return {epsg: ri.load_real_item(CATALOG, iid) for epsg, iid in ZONE_ITEMS.items()}


def _meridian_point(items: dict[int, dict[str, Any]]) -> tuple[float, float]:
    """The point of the 96 E meridian deepest inside both footprints, as (lon, lat)."""
    epsg = 32646
    rings = [ri.footprint_xy(it, epsg) for it in items.values()]
    lat = np.linspace(80.5, 83.5, 3001)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(
        np.full_like(lat, BOUNDARY_LON), lat)
    px, py = ri.interior_point(rings, inset_m=1500.0, candidates=(np.asarray(x), np.asarray(y)))
    lon, lat0 = ri.lonlat(np.array([px]), np.array([py]), epsg)
    return float(lon[0]), float(lat0[0])


class World:
    """The two items written around the meridian point, and the reflectance they hold."""

    def __init__(self, items: dict[int, dict[str, Any]], centre: tuple[float, float]) -> None:
        self.items = items
        self.lon0, self.lat0 = centre

    def reflectance_dn(self, band: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        east = (lon - BOUNDARY_LON) * 111_320.0 * np.cos(np.radians(lat))
        north = (lat - self.lat0) * 110_574.0
        return BASE_DN[band] + 1000 + EAST_DN_PER_M * east + NORTH_DN_PER_M * north

    def tile(self, epsg: int) -> Tile:
        x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(self.lon0, self.lat0)
        return ri.tile_around(x, y, epsg, size_px=TILE_PX, tile_id=f"zones-{epsg}")


@pytest.fixture(scope="module")
def world(stack, tmp_path_factory) -> World:
    items = _items()
    a, b = items.values()
    assert bbox_intersects(tuple(a["bbox"]), tuple(b["bbox"]))
    world = World(items, _meridian_point(items))  # also: the footprints overlap on 96 E
    written = []
    for zone_epsg, item in items.items():
        west = zone_epsg == 32646

        def valid(x: np.ndarray, y: np.ndarray, epsg: int, west: bool = west) -> np.ndarray:
            lon, _ = ri.lonlat(x, y, epsg)
            return (lon < BOUNDARY_LON + OVERLAP_DEG) if west else (
                lon >= BOUNDARY_LON - OVERLAP_DEG)

        def refl(band: str, x: np.ndarray, y: np.ndarray, epsg: int) -> np.ndarray:
            lon, lat = ri.lonlat(x, y, epsg)
            return world.reflectance_dn(band, lon, lat) * SCALE + OFFSET

        tile = world.tile(32646)
        local = ri.write_item_assets(item, tmp_path_factory.mktemp("zones"), bounds=tile.bounds,
                                     bounds_epsg=tile.epsg, reflectance=refl, offset=OFFSET,
                                     valid=valid)
        written.append(ri.in_collection(local, COLLECTION))
    upsert_collection(
        stack.stac_publish_url, ri.local_collection(COLLECTION, "two UTM zones"),
        token=stack.stac_token(),
    )
    upsert_items(stack.stac_publish_url, COLLECTION, written, token=stack.stac_token())
    world.items = {ri.asset_epsg(it, "B04"): it for it in written}
    return world


def _warped(item: dict[str, Any], key: str, tile: Tile) -> np.ndarray:
    """The asset reprojected onto the tile grid with rasterio directly (nearest), 0 where
    the source has no data."""
    out = np.zeros(tile.shape, np.uint16)
    with rasterio.open(item["assets"][key]["href"]) as src:
        bounds = transform_bbox(tile.bounds, tile.epsg, src.crs.to_epsg())
        window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        window = Window(window.col_off - 4, window.row_off - 4, window.width + 8,
                        window.height + 8)
        data = src.read(1, window=window)
        reproject(source=data, destination=out, src_transform=src.window_transform(window),
                  src_crs=src.crs, src_nodata=0, dst_transform=Affine(*tile.transform),
                  dst_crs=f"EPSG:{tile.epsg}", dst_nodata=0, resampling=Resampling.nearest)
    return out


def _centres_lonlat(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    minx, _, _, maxy = tile.bounds
    height, width = tile.shape
    x = minx + tile.resolution_m * (np.arange(width) + 0.5)
    y = maxy - tile.resolution_m * (np.arange(height) + 0.5)
    return ri.lonlat(*np.meshgrid(x, y), tile.epsg)


def test_the_two_footprints_meet_across_the_zone_boundary(world):
    lon, lat = _centres_lonlat(world.tile(32646))
    assert lon.min() < BOUNDARY_LON < lon.max()  # the tile straddles 96 E
    assert 81.8 < world.lat0 < 82.0 and world.lon0 == pytest.approx(BOUNDARY_LON)


@pytest.mark.parametrize("tile_epsg", sorted(ZONE_ITEMS))
def test_a_tile_across_the_zone_boundary_equals_rasterio_reprojection(stack, world, tile_epsg):
    tile = world.tile(tile_epsg)
    found = search_scenes(stack.stac_url, collection=COLLECTION,
                          aoi=AOI(bbox=tile.bbox_latlon()),
                          window=DateWindow(dt.date(2024, 4, 19), dt.date(2024, 4, 19)))
    assert sorted(f["id"] for f in found) == sorted(ZONE_ITEMS.values())
    prepared = catalogs.prepare_items(found, DEFAULT_BANDS, source="planetary-computer",
                                      signer="none")

    result = compute_tile(prepared, tile, PARAMS)

    lon, lat = _centres_lonlat(tile)
    west_cols = lon < BOUNDARY_LON
    assert west_cols.any() and (~west_cols).any(), "the tile does not straddle 96 E"
    items = [world.items[32646], world.items[32647]]
    for band in DEFAULT_BANDS:
        got = np.asarray(result["reflectance"].sel(band=band).values).astype(np.int64)
        key = BANDS[band].s2_name
        west, east = (_warped(it, key, tile).astype(np.int64) for it in items)
        assert ((west > 0) | (east > 0)).all(), f"{band}: the reference has a gap"
        # No gap anywhere the reference has data, in particular along the boundary.
        gap = got == 0
        assert not gap.any(), (f"{band}: {gap.sum()} nodata px, of which "
                               f"{(gap & (np.abs(lon - BOUNDARY_LON) < 0.003)).sum()} "
                               "within 0.003 deg of 96 E")
        # Stored encoding (offset -0.1) equals cloudfree's: no shift expected. Where one
        # source has data the mosaic is it; where both do (the ~47 m overlap: one datatake,
        # one datetime, so the tie order is unspecified) it is one source, the same one
        # over the whole tile: first-valid with one of the two orders.
        merged = {"47XML on top": np.where(east > 0, east, west),
                  "46XES on top": np.where(west > 0, west, east)}
        off = {order: np.abs(got - ref) > 1 for order, ref in merged.items()}
        order = min(off, key=lambda o: int(off[o].sum()))
        both = (west > 0) & (east > 0)
        assert off[order].mean() <= MAX_DISAGREEMENT, (
            f"tile EPSG {tile_epsg} {band}: {off[order].sum()} of {got.size} px differ from "
            f"the rasterio reference ({order}) by > 1 DN, {(off[order] & ~both).sum()} of "
            f"them where one source has data; max "
            f"{np.abs(got - merged[order]).max()} DN")
        # And the reference itself is where the function says (a shift of a whole pixel
        # is more than this).
        res = BANDS[band].resolution_m
        want = world.reflectance_dn(band, lon, lat)
        tolerance = math.hypot(EAST_DN_PER_M, NORTH_DN_PER_M) * res / math.sqrt(2) + 1
        err = np.abs(got - want)
        assert err.max() <= tolerance, (
            f"tile EPSG {tile_epsg} {band} ({res} m): {err.max():.1f} DN from the "
            f"function of position (allowed {tolerance:.1f})")
    clear = np.asarray(result["clear_count"].values)
    assert (clear == 1).all(), f"clear_count {np.unique(clear)}"
