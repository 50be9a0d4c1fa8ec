"""Demo catalog offline: layout, items and COGs (in the real STAC API and S3:
``tests/integration/test_demo.py``)."""

import datetime as dt
import re

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rio_cogeo import cog_validate

from cloudfree import demo
from cloudfree import synthetic as synth
from cloudfree.cog import put

SIZE = 64


def test_tiles_are_adjacent_in_one_utm_zone():
    tiles = demo.demo_tiles(3, size_px=SIZE)
    assert [t.tile_id for t in tiles] == ["33TWM", "33TXM", "33TYM"]
    for west, east in zip(tiles, tiles[1:], strict=False):
        assert west.bounds[2] == east.bounds[0] and west.bounds[1::2] == east.bounds[1::2]
        assert east.origin_px == (west.origin_px[0], west.origin_px[1] + SIZE)
    grid = demo.demo_tiles(6, size_px=SIZE)
    assert grid[4].tile_id == "33TWL" and grid[4].bounds[3] == grid[0].bounds[1]


def test_acquisitions_span_the_season_deterministically():
    plan = demo.demo_acquisitions(10, world_width_m=2 * SIZE * 10.0, seed=0)
    assert plan == demo.demo_acquisitions(10, world_width_m=2 * SIZE * 10.0, seed=0)
    assert plan != demo.demo_acquisitions(10, world_width_m=2 * SIZE * 10.0, seed=1)
    dates = [a.date for a in plan]
    assert dates == sorted(set(dates)) and len(dates) == 10
    assert dt.date(2024, 4, 1) <= dates[0] and dates[-1] <= dt.date(2024, 10, 31)
    assert (dates[-1] - dates[0]).days > 180
    clear = [a for a in plan if a.weather.cloud_cover == 0 and a.weather.cirrus_opacity == 0]
    assert len(clear) >= 2 and all(a.swath is None for a in clear)
    assert any(a.swath is not None for a in plan)
    assert {a.platform for a in plan} == {"sentinel-2a", "sentinel-2b"}
    for a in plan:
        assert 20 < a.sun_zenith_deg < 70 and 120 < a.sun_azimuth_deg < 170


def test_item_ids_and_digital_numbers():
    tile = demo.demo_tiles(1, size_px=SIZE)[0]
    acq = demo.demo_acquisitions(4, world_width_m=640.0)[0]
    assert re.fullmatch(r"S2[AB]_33TWM_2024\d{4}_0_L2A", demo.item_id(tile, acq))
    reflectance = np.array([[0.05, -0.2, 7.0, 0.0]], np.float32)
    valid = np.array([[True, True, True, False]])
    np.testing.assert_array_equal(demo.to_dn(reflectance, valid), [[1500, 1, 65535, 0]])


def test_adjacent_tiles_join_seamlessly():
    """One world, one cloud field per date: two tiles equal one double-width window.

    Exactly, DN for DN and class for class: a pixel is computed from its world coordinates
    alone, by elementwise float operations, which round the same in any window. (Mixing the
    endmember spectra with a matrix product did not: BLAS splits the pixels over threads and
    kernels by the window's size, and on another CPU one pixel of 8192 came out 1 DN off.
    ``test_synth.py`` reruns that case under those kernels.)
    """
    acq = demo.demo_acquisitions(3, world_width_m=2 * SIZE * 10.0, seed=3)[0]
    acq = demo.Acquisition(
        acq.date,
        acq.platform,
        acq.relative_orbit,
        synth.Weather(cloud_cover=0.4, cirrus_cover=0.5, cirrus_opacity=0.2, seed=5),
        None,
        acq.sun_zenith_deg,
        acq.sun_azimuth_deg,
    )
    west, east = demo.demo_tiles(2, size_px=SIZE)

    def render(tile, shape):
        land = synth.make_landscape(shape, origin_px=tile.origin_px, seed=0, river_y_m=300.0)
        return demo.render_scene(tile, acq, land)

    wide = render(west, (SIZE, 2 * SIZE))
    halves = [render(t, (SIZE, SIZE)) for t in (west, east)]
    for name in ("red", "nir", "swir16", "scl"):
        np.testing.assert_array_equal(np.hstack([h[name] for h in halves]), wide[name])
    assert (wide["scl"] >= 8).any()  # the field of this date is cloudy across the seam


@pytest.fixture(scope="module")
def local_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    items = demo.generate_scenes(
        base_url=str(root),
        sink=lambda data, url: put(data, url),
        collection_id="demo-test",
        n_tiles=2,
        n_dates=4,
        size_px=SIZE,
        seed=1,
        params_hash="abc",
    )
    return root, items


def test_generated_items_look_like_earth_search(local_items):
    root, items = local_items
    assert len(items) == 8 and len({it["id"] for it in items}) == 8
    item = items[0]
    props = item["properties"]
    assert item["collection"] == "demo-test"
    assert props["constellation"] == "sentinel-2" and props["instruments"] == ["msi"]
    assert props["s2:mgrs_tile"] == "33TWM" and props["s2:processing_baseline"] == "04.00"
    assert props["proj:code"] == "EPSG:32633" and props["proj:epsg"] == 32633
    assert props["proj:shape"] == [SIZE, SIZE] and props["cloudfree:demo_params_hash"] == "abc"
    assert props["view:sun_elevation"] == pytest.approx(90 - props["s2:mean_solar_zenith"])
    assert 0 <= props["eo:cloud_cover"] <= 100
    assert set(item["assets"]) == set(demo.ASSETS)
    red, swir, scl = (item["assets"][k] for k in ("red", "swir16", "scl"))
    assert red["raster:bands"] == [
        {
            "nodata": 0,
            "data_type": "uint16",
            "bits_per_sample": 15,
            "spatial_resolution": 10.0,
            "scale": 0.0001,
            "offset": -0.1,
        }
    ]
    assert red["eo:bands"][0]["common_name"] == "red" and red["type"].endswith("cloud-optimized")
    assert swir["proj:shape"] == [SIZE // 2, SIZE // 2] and swir["proj:transform"][0] == 20.0
    assert "scale" not in scl["raster:bands"][0] and "eo:bands" not in scl
    # The footprint in EPSG:4326 is the tile's UTM box.
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    xs, ys = to_utm.transform(*zip(*item["geometry"]["coordinates"][0], strict=True))
    assert item["geometry"]["coordinates"][0][0] == item["geometry"]["coordinates"][0][-1]
    np.testing.assert_allclose([min(xs), min(ys), max(xs), max(ys)], props["proj:bbox"], atol=0.01)
    b = item["bbox"]
    assert 14.9 < b[0] < b[2] < 15.2 and 45.9 < b[1] < b[3] < 46.1


def test_generated_cogs_hold_what_the_items_say(local_items):
    root, items = local_items
    for item in items[:3]:
        for name, asset in item["assets"].items():
            assert cog_validate(asset["href"], quiet=True)[0]
            with rasterio.open(asset["href"]) as src:
                assert src.nodata == 0 and src.crs.to_epsg() == 32633
                assert list(src.shape) == asset["proj:shape"]
                assert list(src.transform)[:6] == asset["proj:transform"]
                if name == "scl":
                    assert src.dtypes[0] == "uint16" and src.scales[0] == 1.0
                else:
                    assert src.dtypes[0] == "uint16"
                    assert (src.scales[0], src.offsets[0]) == (0.0001, -0.1)
        with rasterio.open(item["assets"]["scl"]["href"]) as src:
            scl = src.read(1)
        flagged = np.isin(scl, (8, 9, 10)).sum() / max(np.count_nonzero(scl), 1) * 100
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(flagged, abs=1e-3)


def test_swath_edge_scenes_have_nodata_and_a_smaller_footprint(local_items):
    _, items = local_items
    cut = [it for it in items if it["properties"]["s2:nodata_pixel_percentage"] > 0]
    assert cut and all(it["properties"]["s2:mgrs_tile"] == "33TXM" for it in cut)
    full = next(
        it
        for it in items
        if it["properties"]["s2:mgrs_tile"] == "33TXM"
        and it["properties"]["s2:nodata_pixel_percentage"] == 0
    )
    assert cut[0]["bbox"][2] < full["bbox"][2] - 0.001
    with (
        rasterio.open(cut[0]["assets"]["red"]["href"]) as red,
        rasterio.open(cut[0]["assets"]["scl"]["href"]) as scl,
    ):
        assert (red.read(1)[:, -1] == 0).all() and (scl.read(1)[:, -1] == 0).all()
        assert (red.read(1)[:, 0] > 0).all()


def test_collection_describes_the_items(local_items):
    _, items = local_items
    collection = demo.build_collection(
        "demo-test", items, parameters={"seed": 1}, params_hash="abc"
    )
    assert "synthetic" in collection["description"].lower()
    (bbox,) = collection["extent"]["spatial"]["bbox"]
    assert all(bbox[0] <= it["bbox"][0] and it["bbox"][2] <= bbox[2] for it in items)
    interval = collection["extent"]["temporal"]["interval"][0]
    assert interval == [
        min(i["properties"]["datetime"] for i in items),
        max(i["properties"]["datetime"] for i in items),
    ]
    assert set(collection["item_assets"]) == set(demo.ASSETS)
    assert collection["summaries"]["gsd"] == [10.0, 20.0]
    assert collection["cloudfree:demo"]["params_hash"] == "abc"
