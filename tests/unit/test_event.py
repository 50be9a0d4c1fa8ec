"""Event mode offline: the windows, each side's composite, the change layers, the pair's ids
and items, and the CLI's refusals (``tests/integration/test_event.py`` publishes a pair)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from cloudfree import cli
from cloudfree.errors import InvalidParameterError
from cloudfree.event import (
    CHANGE_NODATA,
    CHANGE_SCALE,
    Event,
    NoClearObservationError,
    burn_severity,
    can_fill,
    change_layers,
    check_sides,
    event_window,
    fill_gaps,
    observation_composite,
    parse_event,
    side_items,
    side_window,
)
from cloudfree.event_tile import (
    CHANGE_ASSETS,
    ONE_CHUNK_MAX_PX,
    EventPair,
    EventSide,
    one_chunk,
    plan_pair,
    write_change,
)
from cloudfree.grid import DateWindow, parse_date_window
from cloudfree.methods import FILL_GENERATED, FILL_NODATA, FILL_OBSERVED
from cloudfree.publish import build_item, static_item
from cloudfree.testing import make_items, make_tile, reflectance_cube
from cloudfree.testing.stac_validation import schema_dir, validate
from cloudfree.tile import MosaicParams, halo_px

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
EVENT = Event(dt.date(2024, 7, 1), "test fire")
#: Six dates, ten days apart: four at or before the event (06-01 .. 07-01), two after.
START = dt.date(2024, 6, 1)
WINDOW = DateWindow(START, dt.date(2024, 7, 31))
SIZE = 32


# --------------------------------------------------------------------------- windows


def test_the_window_defaults_to_sixty_days_around_the_event():
    assert event_window(None, EVENT) == DateWindow(dt.date(2024, 5, 2), dt.date(2024, 8, 30))
    window = parse_date_window("2024-04-01/2024-10-28")
    assert event_window("2024-04-01/2024-10-28", EVENT) == window
    assert side_window(window, EVENT, "pre") == DateWindow(window.start, EVENT.date)
    assert side_window(window, EVENT, "post") == DateWindow(dt.date(2024, 7, 2), window.end)
    # the first day of the window is a valid event: pre is that one day
    assert event_window("2024-07-01/2024-07-10", EVENT).start == EVENT.date


@pytest.mark.parametrize("window, says", [
    ("2024-07-02/2024-08-01", "before its first day"),
    ("2024-05-01/2024-06-30", "after its last day"),
    ("2024-05-01/2024-07-01", "on its last day, which leaves no day after it"),
])
def test_an_event_outside_the_window_is_refused(window, says):
    with pytest.raises(InvalidParameterError) as info:
        event_window(window, EVENT)
    message = str(info.value)
    assert message.startswith("invalid event_date '2024-07-01': it lies outside the search "
                              f"window {window}")
    assert says in message and "give an --event-date from" in message


def test_a_bad_event_date_or_name_is_refused():
    with pytest.raises(InvalidParameterError, match="give the event's day as an ISO date"):
        parse_event("1 July 2024")
    with pytest.raises(InvalidParameterError, match="at most 200 characters"):
        parse_event("2024-07-01", "x" * 201)
    assert parse_event("2024-07-01", "  Big   fire ") == Event(EVENT.date, "Big fire")
    assert parse_event("2024-07-01", " ").as_property() == {"date": "2024-07-01"}


def test_the_sides_split_the_scenes_at_the_event_day():
    items = [{"id": d, "properties": {"datetime": f"{d}T{t}Z"}} for d, t in
             [("2024-06-30", "10:00:00"), ("2024-07-01", "23:59:59"), ("2024-07-02", "00:00:01")]]
    assert [it["id"] for it in side_items(items, EVENT, "pre")] == ["2024-06-30", "2024-07-01"]
    assert [it["id"] for it in side_items(items, EVENT, "post")] == ["2024-07-02"]
    with pytest.raises(NoClearObservationError) as info:
        check_sides(items[:2], EVENT, WINDOW, where="over the AOI")
    message = str(info.value)
    assert "no clear observation after the event date 2024-07-01 over the AOI" in message
    assert "no scene after the event; the last is of 2024-07-01" in message
    assert "the post product is refused" in message and "widen --datetime" in message
    with pytest.raises(NoClearObservationError, match="at or before the event date"):
        check_sides(items[2:], EVENT, WINDOW, where="over the AOI")


# --------------------------------------------------------------------------- composites


def _cube():
    """Four dates; pixel (0, 0) clear on days 0 and 2, (0, 1) on 1 and 3, (0, 2) never."""
    values = np.full((4, 2, 1, 3), 0.2, np.float32)
    values += np.arange(4, dtype=np.float32)[:, None, None, None] * 0.01  # a date's value
    clear = np.zeros((4, 1, 3), bool)
    clear[[0, 2], 0, 0] = True
    clear[[1, 3], 0, 1] = True
    days = np.array([19875.0, 19885.0, 19895.0, 19905.0])  # 2024-06-01 + 10 d steps
    return reflectance_cube(values, days, bands=["red", "nir"], clear=clear)


@pytest.mark.parametrize("role, picks", [("pre", (2, 3)), ("post", (0, 1))])
def test_each_side_takes_its_latest_or_earliest_clear_observation(role, picks):
    cube, clear = _cube()
    eager = observation_composite(cube, clear, role=role)
    lazy = observation_composite(cube.chunk({"x": 2}), clear.chunk({"x": 2}), role=role)
    for result in (eager, lazy.compute()):
        days = [19875, 19885, 19895, 19905]
        assert result["source_date"].values[0].tolist() == [days[picks[0]], days[picks[1]], 0]
        np.testing.assert_array_equal(result["reflectance"].values[:, 0, :2],
                                      cube.values[list(picks), :, 0, [0, 1]].T)
        assert result["reflectance"].values[:, 0, 2].tolist() == [0, 0]  # never clear
        assert result["fill"].values[0].tolist() == [FILL_OBSERVED, FILL_OBSERVED, FILL_NODATA]
        assert result["clear_count"].values[0].tolist() == [2, 2, 0]


def test_gaps_are_filled_only_where_the_observations_have_none():
    cube, clear = _cube()
    observed = observation_composite(cube, clear, role="pre")
    filled = observed.copy()
    filled["reflectance"] = xr.full_like(observed["reflectance"], 1234)
    filled["fill"] = xr.full_like(observed["fill"], FILL_GENERATED)
    filled["source_date"] = xr.full_like(observed["source_date"], 19900)
    out = fill_gaps(observed, filled)
    assert out["fill"].values[0].tolist() == [FILL_OBSERVED, FILL_OBSERVED, FILL_GENERATED]
    assert out["reflectance"].values[:, 0, 2].tolist() == [1234, 1234]
    np.testing.assert_array_equal(out["reflectance"].values[:, 0, :2],
                                  observed["reflectance"].values[:, 0, :2])
    assert out["source_date"].values[0, 2] == 19900
    assert out["reflectance"].dtype == np.uint16 and out["fill"].dtype == np.uint8


def test_only_a_method_that_makes_values_fills_gaps():
    assert not can_fill("median") and not can_fill("geomedian") and not can_fill("bap")
    assert not can_fill("interpolate")
    assert can_fill("generator")


# --------------------------------------------------------------------------- change


def _side(nir, swir22, green, red, fill):
    """A computed side of one row: reflectance per band (None: nodata) and fill codes."""
    dn = {b: np.array([[0 if v is None else round((v + 0.1) / 1e-4) for v in values]],
                      np.uint16)
          for b, values in (("green", green), ("red", red), ("nir", nir), ("swir22", swir22))}
    refl = xr.DataArray(np.stack(list(dn.values())), dims=("band", "y", "x"),
                        coords={"band": list(dn)})
    return xr.Dataset({"reflectance": refl,
                       "fill": xr.DataArray(np.array([fill], np.uint8), dims=("y", "x"))})


def test_change_layers_have_the_signs_of_their_fields():
    # pixel 0: vegetation burned (nir falls, swir rises); 1: flooded; 2: no data after
    pre = _side(nir=[0.4, 0.4, 0.4], swir22=[0.1, 0.1, 0.1], green=[0.1, 0.1, 0.1],
                red=[0.05, 0.05, 0.05], fill=[1, 1, 1])
    post = _side(nir=[0.1, 0.05, None], swir22=[0.3, 0.02, None], green=[0.1, 0.2, None],
                 red=[0.1, 0.05, None], fill=[1, 4, 0])
    change = change_layers(pre, post, ["green", "red", "nir", "swir22"])
    dnbr, dndwi, dndvi = (change.layers[k][0] for k in ("dnbr", "dndwi", "dndvi"))
    assert dnbr[0] == pytest.approx(0.6 - (-0.5), abs=1e-4)  # NBR 0.6 before, -0.5 after
    assert dndwi[1] > 0.5 and dndwi[0] > 0  # wetter: green over nir after
    assert dndvi[0] < -0.5  # vegetation lost
    assert np.isnan(dnbr[2]) and np.isnan(dndvi[2])
    assert change.valid[0].tolist() == [1, 0, 0]  # generated after (1), no data (2)
    assert change.severity is not None and change.severity[0].tolist() == [7, 4, 0]  # dNBR 1.1, 0.17
    assert change.valid_pct() == pytest.approx(100 / 3, abs=1e-3)
    assert not change.skipped


def test_a_layer_without_its_bands_is_skipped_with_the_reason():
    side = _side(nir=[0.4], swir22=[0.1], green=[0.1], red=[0.1], fill=[1])
    change = change_layers(side, side, ["green", "red", "nir"])
    assert set(change.layers) == {"dndwi", "dndvi"} and change.severity is None
    assert change.skipped == {"dnbr": "NBR needs nir and swir22; the run's --bands "
                              "(green,red,nir) lack swir22 (B12): add them to --bands to "
                              "get dnbr"}


def test_burn_severity_uses_the_usgs_thresholds():
    dnbr = np.array([-0.6, -0.25, -0.11, -0.1, 0.099, 0.1, 0.27, 0.44, 0.659, 0.66, 1.5,
                     np.nan], np.float32)
    assert burn_severity(dnbr).tolist() == [1, 2, 2, 3, 3, 4, 5, 6, 6, 7, 7, 0]


def test_change_cogs_are_valid_scaled_and_classified(tmp_path):
    pre = _side(nir=[0.4, 0.3], swir22=[0.1, 0.1], green=[0.1, 0.1], red=[0.05, 0.05],
                fill=[1, 1])
    post = _side(nir=[0.1, None], swir22=[0.3, None], green=[0.1, None], red=[0.1, None],
                 fill=[1, 0])
    change = change_layers(pre, post, ["green", "red", "nir", "swir22"])
    tile = make_tile(size=2)
    written = write_change(change, tile, base_url=str(tmp_path), fs=None)
    assert [w.key for w in written] == list(CHANGE_ASSETS)
    by_key = {w.key: w for w in written}
    for asset in written:
        assert cog_validate(asset.href, quiet=True)[0], asset.key
    with rasterio.open(by_key["dnbr"].href) as src:
        raw = src.read(1)
        assert (src.dtypes[0], src.nodata, src.scales[0]) == ("int16", CHANGE_NODATA,
                                                               CHANGE_SCALE)
    assert raw[0, 0] == round(float(change.layers["dnbr"][0, 0]) / CHANGE_SCALE)
    assert raw[0, 1] == CHANGE_NODATA
    band = by_key["dnbr"].fields["raster:bands"][0]
    assert (band["data_type"], band["nodata"], band["scale"]) == ("int16", CHANGE_NODATA,
                                                                  CHANGE_SCALE)
    classes = by_key["dnbr_severity"].fields["classification:classes"]
    assert [c["value"] for c in classes] == list(range(1, 8))
    with rasterio.open(by_key["change_valid"].href) as src:
        assert src.read(1)[0].tolist() == [1, 0]


# --------------------------------------------------------------------------- the pair


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Six local dates over a 32 px tile. A cloud (SCL 9) over rows 0-7 on 07-01 (the
    event day) and on 07-11 (the first after): pre shows 06-21 there, post 07-21.
    Rows 24-31 are cloudy on both post dates: a gap of post. After the event the west
    half burns: nir falls, swir22 rises."""
    n = 6
    rng = np.random.default_rng(3)
    stack = rng.integers(1900, 2100, size=(n, len(BANDS), SIZE, SIZE)).astype(np.uint16)
    stack[:, BANDS.index("nir")] += 2500  # vegetation
    after = slice(4, None)
    stack[after, BANDS.index("nir"), :, :16] = 1400
    stack[after, BANDS.index("swir22"), :, :16] = 4000
    scl = np.full((n, SIZE, SIZE), 4, np.uint16)
    scl[3:5, 0:8] = 9
    scl[4:6, 24:32] = 9
    arrays = {b: stack[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    tile = make_tile(size=SIZE)
    items = make_items(tmp_path_factory.mktemp("event"), arrays, tile=tile, start=START)
    return tile, items, stack


PARAMS = MosaicParams(mask="scl", dilation_m=0, chunksize=32)


def test_a_pair_computes_each_side_from_its_own_scenes(scenes):
    tile, items, stack = scenes
    pair = EventPair(items, tile, WINDOW, PARAMS, EVENT)
    assert [len(pair.plans[r].sources) for r in ("pre", "post")] == [4, 2]
    pre, post = pair.result("pre"), pair.result("post")
    day = (np.datetime64(START) - np.datetime64("1970-01-01")).astype(int)
    source_pre, source_post = pre["source_date"].values, post["source_date"].values
    assert (source_pre[8:] == day + 30).all() and (source_pre[:8] == day + 20).all()
    assert (source_post[8:24] == day + 40).all() and (source_post[:8] == day + 50).all()
    assert (post["fill"].values[24:] == FILL_NODATA).all()  # both post dates cloudy there
    assert (source_pre <= day + 30).all() and (source_post[post["fill"].values > 0] > day + 30
                                               ).all()
    np.testing.assert_array_equal(pre["reflectance"].values[:, 20], stack[3, :, 20])
    change = pair.change()
    dnbr = change.layers["dnbr"]
    assert np.nanmin(dnbr[8:24, :16]) > 0.3 and np.nanmax(np.abs(dnbr[8:24, 16:])) < 0.2
    assert (change.valid[24:] == 0).all() and (change.valid[:24] == 1).all()


def test_the_event_enters_the_ids_and_the_inputs(scenes):
    tile, items, _ = scenes
    plans = plan_pair(items, tile, WINDOW, PARAMS, EVENT)
    post, pre = plans["post"], plans["pre"]
    assert "-post20240701-median-" in post.item_id and "-pre20240701-median-" in pre.item_id
    assert "-20240702-20240731-" in post.item_id and "-20240601-20240701-" in pre.item_id
    assert post.product["event"]["role"] == "post" and post.product["event"]["gap_fill"] is None
    assert plan_pair(items, tile, WINDOW, PARAMS, EVENT)["post"].item_id == post.item_id
    later = plan_pair(items, tile, WINDOW, PARAMS, Event(dt.date(2024, 7, 2)))
    assert later["post"].item_id != post.item_id and later["pre"].item_id != pre.item_id
    renamed = plan_pair(items, tile, WINDOW, PARAMS, Event(EVENT.date, "another name"))
    assert renamed["post"].item_id == post.item_id  # the same product ...
    assert renamed["post"].inputs_hash != post.inputs_hash  # ... made again, renamed
    # a new pre scene changes the post's inputs (its change layers) but not its id
    moved = [dict(it, properties={**it["properties"], "updated": "2024-08-01T00:00:00Z"})
             if it["id"] == items[0]["id"] else it for it in items]
    again = plan_pair(moved, tile, WINDOW, PARAMS, EVENT)
    assert again["post"].item_id == post.item_id
    assert again["post"].inputs_hash != post.inputs_hash
    with pytest.raises(NoClearObservationError, match="no scene of that side covers the tile"):
        plan_pair(items[:4], tile, WINDOW, PARAMS, EVENT)


def test_a_side_with_no_clear_observation_is_refused(scenes, tmp_path):
    tile, items, stack = scenes
    scl = np.full((6, SIZE, SIZE), 4, np.uint16)
    scl[4:] = 9  # every post date cloudy everywhere
    arrays = {b: stack[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    cloudy = make_items(tmp_path, arrays, tile=tile, start=START)
    pair = EventPair(cloudy, tile, WINDOW, PARAMS, EVENT)
    with pytest.raises(NoClearObservationError) as info:
        EventSide(pair, "post", items_url="http://api/collections/c/items").compute(
            pair.plans["post"], gdal_env=None, read_failure_policy="drop")
    assert "no clear observation after the event date 2024-07-01 over tile test" in str(
        info.value)
    assert "every scene of that side is cloudy" in str(info.value)


def test_the_pair_items_link_and_carry_the_event(scenes):
    tile, items, _ = scenes
    pair = EventPair(items, tile, WINDOW, PARAMS, EVENT)
    built = {}
    for role in ("post", "pre"):
        side = EventSide(pair, role, items_url="http://api.example/collections/out/items")
        plan = pair.plans[role]
        result = side.compute(plan, gdal_env=None, read_failure_policy="drop")
        properties, links = side.item_extras(plan, result)
        built[role] = build_item(
            item_id=plan.item_id, collection_id="out", tile=tile, window=plan.window,
            assets=[], source_items=plan.sources, source_api_url="http://src",
            source_collection="s2", method=plan.label, parameters={}, digest=plan.inputs_hash,
            nodata_pct=0.0, extra_properties=properties, extra_links=links)
    post, pre = built["post"], built["pre"]
    for item, other in ((post, pre), (pre, post)):
        assert item["properties"]["cloudfree:event"] == {"date": "2024-07-01",
                                                         "name": "test fire"}
        (related,) = [link for link in item["links"] if link["rel"] == "related"]
        assert related["href"] == f"http://api.example/collections/out/items/{other['id']}"
    assert (post["properties"]["cloudfree:event_role"],
            pre["properties"]["cloudfree:event_role"]) == ("post", "pre")
    assert post["properties"]["start_datetime"].startswith("2024-07-02")
    assert pre["properties"]["end_datetime"].startswith("2024-07-01")
    assert "earliest clear observation after" in post["properties"]["processing:lineage"]
    assert 0 < post["properties"]["cloudfree:change_valid_pct"] < 100
    if schema_dir() is not None:  # the offline STAC schemas (test_static_catalog needs them)
        for item in built.values():  # as the static catalog holds it, with its links
            report = validate(static_item(item, item_href=f"s3://b/out/{item['id']}.json",
                                          collection_href="s3://b/out/collection.json"))
            assert not report.errors, report.errors


def test_a_small_area_is_read_as_one_chunk():
    params = MosaicParams()  # 1024 px chunks, the auto mask's largest halo
    grown = max(make_tile(size=1000).grown(halo_px(params)).shape)
    assert one_chunk(params, make_tile(size=1000)).chunksize == grown > 1024
    assert one_chunk(params, make_tile(size=ONE_CHUNK_MAX_PX)).chunksize == 1024  # too large
    assert one_chunk(params, make_tile(size=500)) == params  # one chunk already


# --------------------------------------------------------------------------- the CLI


AOI = "15.05,46.00,15.12,46.03"
BAD_EVENT = {
    "outside the window": (["--datetime", "2024-04-01/2024-06-30", "--event-date",
                            "2024-07-01"],
                           ["invalid event_date '2024-07-01'", "outside the search window "
                            "2024-04-01/2024-06-30", "give an --event-date from 2024-04-01 "
                            "to 2024-06-29"]),
    "on the last day": (["--datetime", "2024-04-01/2024-07-01", "--event-date", "2024-07-01"],
                        ["leaves no day after it for the post product"]),
    "not a day": (["--event-date", "2024-13-01"],
                  ["invalid event_date '2024-13-01'", "ISO date, YYYY-MM-DD"]),
    "with a target date": (["--event-date", "2024-07-01", "--target-date", "2024-07-01"],
                           ["invalid target_date '2024-07-01'", "leave --target-date out"]),
    "over the tile budget": (["--event-date", "2024-07-01", "--bbox", "0,35,40,65"],
                             ["the plan exceeds the budget max_tiles",
                              "CLOUDFREE_MAX_TILES="]),
    "no window, no event": ([], ["invalid datetime None", "--event-date"]),
}


@pytest.mark.parametrize("case", list(BAD_EVENT))
def test_event_bad_input_exits_2_before_any_service(case, capsys, monkeypatch):
    for var in ("CLOUDFREE_STAC_PORT", "CLOUDFREE_S3_PORT", "CLOUDFREE_PREFECT_PORT"):
        monkeypatch.setenv(var, "9")
    argv, expected = BAD_EVENT[case]
    if "--bbox" not in argv:
        argv = ["--bbox", AOI, *argv]
    assert cli.main(["mosaic", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith("cloudfree: error: ")
    for text in expected:
        assert text in captured.err, (case, text)
