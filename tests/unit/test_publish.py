import datetime as dt

import pystac

from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window
from cloudfree.publish import WrittenAsset, build_collection, build_item, inputs_hash, item_id

SOURCES = [
    {"id": "S2A_33TWM_20240501_0_L2A", "properties": {"datetime": "2024-05-01T10:00:00Z"}},
    {"id": "S2B_33TWM_20240511_0_L2A", "properties": {"datetime": "2024-05-11T10:00:00Z"}},
]


def _item():
    tile = grid_tiles(parse_bbox("14.50,45.80,14.52,45.81"), resolution_m=10, tile_size_px=256)[0]
    window = parse_date_window("2024-05-01/2024-05-31")
    assets = [
        WrittenAsset("red", "s3://b/red.tif", 1234, "ab" * 32, "image/tiff", ("data",), "red",
                     band="red"),
        WrittenAsset("clear_count", "s3://b/c.tif", 99, "cd" * 32, "image/tiff",
                     ("data", "metadata"), "count", kind="clear_count"),
        WrittenAsset("source_date", "s3://b/d.tif", 99, "cd" * 32, "image/tiff",
                     ("data", "metadata"), "date", kind="source_date"),
        WrittenAsset("fill", "s3://b/f.tif", 99, "cd" * 32, "image/tiff",
                     ("data", "metadata"), "fill", kind="fill"),
    ]
    iid = item_id(tile.tile_id, window, "median")
    return tile, build_item(
        item_id=iid, collection_id="out", tile=tile, window=window, assets=assets,
        source_items=SOURCES, source_api_url="http://127.0.0.1:8082",
        source_collection="sentinel-2-l2a", method="median", parameters={"dilation_m": 100},
        digest="f" * 64, nodata_pct=1.5, processed_at=dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    )


def test_item_is_valid_stac_with_the_conventions():
    tile, item = _item()
    parsed = pystac.Item.from_dict(item)
    assert parsed.id == "cloudfree-" + tile.tile_id + "-20240501-20240531-median-v0.1.0"
    props = item["properties"]
    assert props["start_datetime"] == "2024-05-01T00:00:00Z"
    assert props["end_datetime"] == "2024-05-31T23:59:59Z"
    assert props["processing:level"] == "L3"
    assert props["proj:code"] == f"EPSG:{tile.epsg}"
    assert props["cloudfree:source_dates"] == ["2024-05-01", "2024-05-11"]
    # the share of pixels with no clear observation, so `eo:cloud_cover < x` finds mosaics
    assert props["eo:cloud_cover"] == 1.5 == props["cloudfree:nodata_pct"]
    assert props["constellation"] == "sentinel-2" and props["instruments"] == ["msi"]
    assert "platform" not in props  # the sources do not say
    derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert derived == [
        f"http://127.0.0.1:8082/collections/sentinel-2-l2a/items/{s['id']}" for s in SOURCES
    ]
    red = item["assets"]["red"]
    assert red["raster:bands"][0] == {"nodata": 0, "data_type": "uint16", "scale": 0.0001,
                                      "offset": -0.1, "spatial_resolution": 10,
                                      "unit": "reflectance"}
    assert red["eo:bands"][0]["common_name"] == "red"
    assert red["file:checksum"] == "1220" + "ab" * 32 and red["file:size"] == 1234
    assert "scale" not in item["assets"]["clear_count"]["raster:bands"][0]
    assert item["assets"]["source_date"]["raster:bands"][0]["unit"] == "days since 1970-01-01"
    assert item["assets"]["fill"]["raster:bands"][0] == {"data_type": "uint8", "nodata": 0,
                                                         "spatial_resolution": 10}
    assert item["assets"]["fill"]["classification:classes"][0]["name"] == "nodata"
    assert all(len(c["color_hint"]) == 6 for c in item["assets"]["fill"]["classification:classes"])
    for ext in ("projection", "raster", "eo", "processing", "file"):
        assert any(f"/{ext}/" in url for url in item["stac_extensions"])


def test_ids_and_hashes_are_deterministic():
    _, a = _item()
    _, b = _item()
    assert a["id"] == b["id"]
    h1 = inputs_hash(SOURCES, {"m": 1})
    assert h1 == inputs_hash(list(reversed(SOURCES)), {"m": 1})
    assert h1 != inputs_hash(SOURCES, {"m": 2})
    assert h1 != inputs_hash(SOURCES[:1], {"m": 1})


def test_collection_is_valid():
    doc = build_collection("out", bands=["red", "nir"])
    col = pystac.Collection.from_dict(doc)
    assets = col.extra_fields["item_assets"]
    assert set(assets) == {"red", "nir", "clear_count", "source_date", "fill", "uncertainty",
                           "thumbnail"}
    assert [b["common_name"] for b in assets["uncertainty"]["eo:bands"]] == ["red", "nir"]
    assert len(assets["uncertainty"]["raster:bands"]) == 2
    classes = {c["value"]: c["name"] for c in assets["fill"]["classification:classes"]}
    assert classes[0] == "nodata" and {"observed", "composited", "interpolated"} <= set(
        classes.values())
    # (pystac drops it on reading: item_assets is core in STAC 1.1)
    assert "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json" in \
        doc["stac_extensions"]
    assert [link["rel"] for link in doc["links"]] == ["license"]
    # STAC 1.0 for a licence without SPDX id (pystac, migrating to 1.1, says "other")
    assert doc["license"] == "proprietary" and len(col.providers) == 2  # ESA, cloudfree
    assert "Contains modified Copernicus Sentinel data" in col.description
    # before any item: the globe from Sentinel-2's first data on
    assert col.extent.temporal.intervals[0][1] is None


def test_a_corrected_items_uncertainty_asset():
    """The corrected methods' 90 % interval: one COG with a band per reflectance band, DN
    in reflectance units (offset 0), 0 where observed, described in the item."""
    import numpy as np
    import rasterio
    import xarray as xr

    from cloudfree.methods.corrected import UNCERTAINTY_NODATA
    from cloudfree.testing import make_tile
    from cloudfree.tile import MosaicParams, write_tile

    tile = make_tile(size=64)
    height, width = tile.shape
    bands = ("red", "green", "blue")
    width_dn = np.zeros((3, height, width), np.uint16)
    width_dn[:, :10] = [[[150]], [[120]], [[90]]]
    width_dn[:, :2, :2] = UNCERTAINTY_NODATA
    result = xr.Dataset({
        "reflectance": (("band", "y", "x"), np.full((3, height, width), 1500, np.uint16)),
        "clear_count": (("y", "x"), np.ones((height, width), np.uint16)),
        "source_date": (("y", "x"), np.full((height, width), 19_850, np.uint16)),
        "fill": (("y", "x"), np.ones((height, width), np.uint8)),
        "uncertainty": (("band", "y", "x"), width_dn),
    }, coords={"band": list(bands)})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        written = write_tile(result, tile, base_url=tmp, fs=None,
                             params=MosaicParams(bands=bands))
        [asset] = [w for w in written if w.key == "uncertainty"]
        assert asset.kind == "uncertainty" and asset.bands == bands
        with rasterio.open(asset.href) as src:
            assert src.count == 3 and src.descriptions == bands
            assert src.nodata == UNCERTAINTY_NODATA
            assert src.scales == (1e-4,) * 3 and src.offsets == (0.0,) * 3
            np.testing.assert_array_equal(src.read(), width_dn)
    window = parse_date_window("2024-05-01/2024-05-31")
    item = build_item(
        item_id=item_id(tile.tile_id, window, "interpolate_corrected"), collection_id="out",
        tile=tile, window=window, assets=[asset], source_items=SOURCES,
        source_api_url="http://127.0.0.1:8082", source_collection="sentinel-2-l2a",
        method="interpolate_corrected", parameters={}, digest="f" * 64, nodata_pct=0.0,
        processed_at=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    pystac.Item.from_dict(item)
    entry = item["assets"]["uncertainty"]
    assert entry["roles"] == ["data", "metadata"]
    assert "90 % interval" in entry["description"]
    assert [b["common_name"] for b in entry["eo:bands"]] == list(bands)
    assert entry["raster:bands"][0] == {"data_type": "uint16", "nodata": UNCERTAINTY_NODATA,
                                        "scale": 0.0001, "offset": 0.0, "unit": "reflectance",
                                        "spatial_resolution": tile.resolution_m}
    assert len(entry["raster:bands"]) == 3
