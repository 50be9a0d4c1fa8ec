import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudfree.errors import (
    BudgetExceededError,
    CloudFreeError,
    InvalidAOIError,
    InvalidDateWindowError,
    InvalidParameterError,
)
from cloudfree.grid import (
    aoi_tile,
    check_epsg,
    check_target_date,
    grid_size,
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


# --------------------------------------------------------------------------- bad input (issue 13)


def _feature(geometry):
    return {"type": "Feature", "properties": {}, "geometry": geometry}


SQUARE = {"type": "Polygon", "coordinates": [[[14.0, 45.0], [14.1, 45.0], [14.1, 45.1],
                                              [14.0, 45.1], [14.0, 45.0]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[14.0, 45.0], [14.1, 45.1], [14.1, 45.0],
                                              [14.0, 45.1], [14.0, 45.0]]]}


@pytest.mark.parametrize(("source", "expected"), [
    (_feature(None), 'the Feature has no geometry ("geometry": null)'),
    ({"type": "Feature", "properties": {}}, 'the Feature has no geometry ("geometry": null)'),
    ({"type": "FeatureCollection", "features": [_feature(SQUARE), _feature(None)]},
     'feature 1 has no geometry'),
    (BOWTIE, "the polygon is not valid (Self-intersection[14.05 45.05])"),
    (_feature(BOWTIE), "do not self-intersect"),
    ([1, 2], "GeoJSON must be an object"),
    ({"type": "Polygon", "coordinates": [[[14.0, 45.0], "x", [14.1, 45.1], [14.0, 45.0]]]},
     "malformed coordinates"),
])
def test_unusable_geojson_is_refused_naming_it(source, expected):
    with pytest.raises(InvalidAOIError) as info:
        parse_geojson(source)
    assert expected in str(info.value)
    assert repr(source)[:20] in str(info.value)


def test_valid_geojson_still_parses():
    assert parse_geojson(_feature(SQUARE)).bbox == (14.0, 45.0, 14.1, 45.1)
    holes = {"type": "Polygon", "coordinates": [
        SQUARE["coordinates"][0],
        [[14.02, 45.02], [14.02, 45.04], [14.04, 45.04], [14.04, 45.02], [14.02, 45.02]]]}
    assert parse_geojson(holes).geometry == holes


@pytest.mark.parametrize(("text", "reason"), [
    ("2024-01-01T99:99/2024-02-01", "hour must be in 0..23"),
    ("2024-01-01T10:61:00Z/2024-02-01", "minute must be in 0..59"),
    ("2024-01-01Tnoon/2024-02-01", "not an ISO date or RFC 3339 datetime"),
    ("2024-02-30/2024-03-01", "day is out of range for month"),
])
def test_every_part_of_a_datetime_is_checked(text, reason):
    with pytest.raises(InvalidDateWindowError) as info:
        parse_date_window(text)
    assert repr(text) in str(info.value) and reason in str(info.value)


def test_rfc3339_datetimes_give_their_days():
    window = parse_date_window("2024-01-01T00:00:00Z/2024-02-01T23:59:59.5+00:00")
    assert (window.start.isoformat(), window.end.isoformat()) == ("2024-01-01", "2024-02-01")


def test_target_date_must_lie_in_the_window():
    window = parse_date_window("2024-04-01/2024-10-28")
    check_target_date(None, window)
    check_target_date("2024-04-01", window)
    check_target_date("2024-10-28", window)
    for day in ("2024-03-31", "2024-10-29"):
        with pytest.raises(InvalidParameterError, match=f"'{day}': it lies outside the window "
                                                        "2024-04-01/2024-10-28"):
            check_target_date(day, window)
    with pytest.raises(InvalidParameterError, match="ISO date"):
        check_target_date("15 June", window)


@pytest.mark.parametrize(("epsg", "expected"), [
    (999999, "no such EPSG code"),
    (4326, "WGS 84 is not projected in metres (units: degree)"),
    (2263, "not projected in metres (units: US survey foot)"),
])
def test_unusable_crs_is_refused(epsg, expected):
    aoi = parse_bbox("15.05,46.00,15.12,46.03")
    for make in (lambda: aoi_tile(aoi, resolution_m=10, epsg=epsg),
                 lambda: grid_tiles(aoi, resolution_m=10, tile_size_px=64, epsg=epsg),
                 lambda: check_epsg(epsg)):
        with pytest.raises(InvalidParameterError) as info:
            make()
        assert f"invalid epsg {epsg}" in str(info.value) and expected in str(info.value)
    assert check_epsg(3035) == 3035 and check_epsg(None) is None


def test_the_grid_is_counted_before_it_is_made():
    aoi = parse_bbox("14.5,45.8,14.6,45.9")
    assert grid_size(aoi, resolution_m=10, tile_size_px=256, epsg=32633) == (4, 5)
    assert len(grid_tiles(aoi, resolution_m=10, tile_size_px=256, epsg=32633)) == 20
    assert len(grid_tiles(aoi, resolution_m=10, tile_size_px=256, max_tiles=20)) == 20
    with pytest.raises(BudgetExceededError) as info:
        grid_tiles(aoi, resolution_m=10, tile_size_px=256, epsg=32633, max_tiles=19)
    assert (info.value.budget, info.value.figure, info.value.limit) == ("max_tiles", 20, 19)
    assert "4 x 5 = 20 tiles; split the run into at least 2 smaller areas" in str(info.value)
    # a grid of 10^13 one-pixel tiles: refused from its bounds, never enumerated
    with pytest.raises(BudgetExceededError, match="CLOUDFREE_MAX_TILES"):
        grid_tiles(parse_bbox("-30,-60,30,60"), resolution_m=1, tile_size_px=1, max_tiles=10)
