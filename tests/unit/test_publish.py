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
    assert set(assets) == {"red", "nir", "clear_count", "source_date", "fill", "thumbnail"}
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
