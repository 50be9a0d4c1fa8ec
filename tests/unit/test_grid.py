import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudfree.errors import CloudFreeError, InvalidAOIError, InvalidDateWindowError
from cloudfree.grid import (
    aoi_tile,
    grid_tiles,
    parse_bbox,
    parse_date_window,
    parse_geojson,
    transform_bbox,
    utm_epsg,
)


@pytest.mark.parametrize(
    "text",
    ["1,2,3", "a,b,c,d", "10,5,9,6", "10,5,11,5", "200,0,201,1", "0,-95,1,0", "nan,0,1,1"],
)
def test_bad_bbox_is_rejected_with_the_input_named(text):
    with pytest.raises(InvalidAOIError) as info:
        parse_bbox(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, CloudFreeError)


def test_bbox_parses():
    assert parse_bbox("14.5, 45.8, 14.6, 45.9").bbox == (14.5, 45.8, 14.6, 45.9)


def test_geojson_feature_collection_bbox(tmp_path):
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
                [[14.0, 45.0], [14.2, 45.0], [14.2, 45.3], [14.0, 45.0]]]}},
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
                [[14.5, 44.9], [14.6, 44.9], [14.6, 45.0], [14.5, 44.9]]]}},
        ],
    }
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(fc))
    aoi = parse_geojson(str(path))
    assert aoi.bbox == (14.0, 44.9, 14.6, 45.3)
    assert aoi.geometry["type"] == "MultiPolygon"


def test_geojson_errors(tmp_path):
    with pytest.raises(InvalidAOIError, match="no such GeoJSON file"):
        parse_geojson(str(tmp_path / "missing.geojson"))
    with pytest.raises(InvalidAOIError, match="Polygon"):
        parse_geojson({"type": "Point", "coordinates": [1, 2]})


@pytest.mark.parametrize("text", ["2024-05-01", "2024-13-01/2024-12-01", "2024-06-01/2024-05-01"])
def test_bad_date_window(text):
    with pytest.raises(InvalidDateWindowError) as info:
        parse_date_window(text)
    assert repr(text) in str(info.value)


def test_date_window_stac_interval():
    window = parse_date_window("2024-05-01/2024-05-31")
    assert window.stac == "2024-05-01T00:00:00Z/2024-05-31T23:59:59Z"
    assert window.compact == "20240501-20240531"


def test_utm_zone():
    assert utm_epsg(14.55, 45.87) == 32633
    assert utm_epsg(-70.0, -33.0) == 32719


lon = st.floats(min_value=6.2, max_value=11.8)
lat = st.floats(min_value=-60, max_value=60)


@settings(max_examples=40, deadline=None)
@given(lon=lon, lat=lat, w=st.floats(0.01, 0.3), h=st.floats(0.01, 0.3),
       size=st.sampled_from([64, 256, 512]), res=st.sampled_from([10.0, 20.0]))
def test_grid_tiles_cover_the_aoi_without_overlap(lon, lat, w, h, size, res):
    aoi = parse_bbox([lon, lat, lon + w, lat + h])
    tiles = grid_tiles(aoi, resolution_m=res, tile_size_px=size, epsg=32632)
    step = size * res
    ids = {t.tile_id for t in tiles}
    assert len(ids) == len(tiles)
    pminx, pminy, pmaxx, pmaxy = transform_bbox(aoi.bbox, 4326, 32632)
    union = (min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles),
             max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles))
    assert union[0] <= pminx and union[1] <= pminy and union[2] >= pmaxx and union[3] >= pmaxy
    area = sum((t.bounds[2] - t.bounds[0]) * (t.bounds[3] - t.bounds[1]) for t in tiles)
    assert area == pytest.approx((union[2] - union[0]) * (union[3] - union[1]))
    for t in tiles:
        assert t.shape == (size, size)
        assert t.bounds[0] % step == 0 and t.bounds[1] % step == 0


@settings(max_examples=30, deadline=None)
@given(lon=st.floats(-179, 179), lat=lat, w=st.floats(0.001, 0.2), res=st.sampled_from([10.0, 20.0, 60.0]))
def test_aoi_tile_is_pixel_aligned_and_covers(lon, lat, w, res):
    aoi = parse_bbox([lon, lat, lon + w, lat + w])
    tile = aoi_tile(aoi, resolution_m=res)
    for v in tile.bounds:
        assert v % res == 0
    pb = transform_bbox(aoi.bbox, 4326, tile.epsg)
    assert tile.bounds[0] <= pb[0] and tile.bounds[3] >= pb[3]
    assert aoi_tile(aoi, resolution_m=res).tile_id == tile.tile_id


def test_tile_transform_matches_bounds():
    aoi = parse_bbox([14.5, 45.8, 14.52, 45.82])
    tile = grid_tiles(aoi, resolution_m=10, tile_size_px=256)[0]
    a, b, c, d, e, f = tile.transform
    h, w = tile.shape
    assert (c, f) == (tile.bounds[0], tile.bounds[3])
    assert c + a * w == tile.bounds[2] and f + e * h == tile.bounds[1]
