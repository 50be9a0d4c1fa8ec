"""Product identity: the item id derives from every parameter that decides pixels (never
from the scene list), so two products never share an item; and the pure helpers of safe
replacement and ``cloudfree gc``."""

import dataclasses
import datetime as dt
import pickle
import random
import threading
import time

import pytest

from cloudfree.errors import InvalidParameterError, TileLockError
from cloudfree.gc import StoredObject, parse_duration, plan_gc
from cloudfree.grid import aoi_tile, grid_tiles, parse_bbox, parse_date_window
from cloudfree.locks import LockInfo, TileLock, lock_url
from cloudfree.publish import item_prefix, prefixes_overlap, within
from cloudfree.tile import MosaicParams, TileOutcome, plan_tile

WINDOW = parse_date_window("2024-04-01/2024-10-28")
AOI = parse_bbox("15.05,46.00,15.12,46.03")


def _scene(i: int, *, profile: str = "earth-search", assumed: bool = False) -> dict:
    """A prepared scene over the test AOI (only what planning reads)."""
    source = "--assume-decoding scale=0.0001,offset=-0.1" if assumed else "raster:bands"
    return {"id": f"S2A_33TWM_202406{i:02d}_0_L2A", "bbox": [14.9, 45.9, 15.3, 46.2],
            "properties": {"datetime": f"2024-06-{i:02d}T10:00:00Z", "updated": "x",
                           "cloudfree:decoding": {
                               "profile": profile, "bands": [
                                   {"band": "red", "scale": 0.0001, "offset": -0.1,
                                    "source": source}]}}}


SCENES = [_scene(i) for i in (1, 11, 21)]


def _plan(params: MosaicParams, *, aoi=AOI, items=SCENES, resolution=None, epsg=None):
    tile = aoi_tile(aoi, resolution_m=resolution or params.resolution_m, epsg=epsg)
    return plan_tile(items, tile, WINDOW, params)


def test_two_target_dates_are_two_items_with_the_same_readable_prefix():
    june = _plan(MosaicParams(method="interpolate", target_date="2024-06-15"))
    august = _plan(MosaicParams(method="interpolate", target_date="2024-08-15"))
    again = _plan(MosaicParams(method="interpolate", target_date="2024-06-15"))
    assert june.item_id != august.item_id
    assert june.item_id == again.item_id and june.inputs_hash == again.inputs_hash
    prefix = f"cloudfree-{june.tile.tile_id}-20240401-20241028-interpolate-v"
    assert june.item_id.startswith(prefix) and august.item_id.startswith(prefix)
    assert len(june.item_id.rsplit("-", 1)[1]) == 8
    # the default target date (the window's middle) is a date like any other
    middle = _plan(MosaicParams(method="interpolate"))
    assert middle.params.target_date == "2024-07-15"
    assert middle.item_id == _plan(MosaicParams(method="interpolate",
                                                target_date="2024-07-15")).item_id


def test_a_target_date_does_not_split_a_method_that_ignores_it():
    assert _plan(MosaicParams(method="median", target_date="2024-06-15")).item_id == \
        _plan(MosaicParams(method="median", target_date="2024-08-15")).item_id


def test_every_pixel_deciding_parameter_splits_the_product():
    base = MosaicParams(method="median")
    variants = {
        "resolution": _plan(dataclasses.replace(base, resolution_m=20.0)),
        "bands": _plan(dataclasses.replace(base, bands=("red", "green", "blue"))),
        "band order": _plan(dataclasses.replace(base, bands=tuple(reversed(base.bands)))),
        "dilation": _plan(dataclasses.replace(base, dilation_m=50.0)),
        "opening": _plan(dataclasses.replace(base, opening_m=20.0)),
        "invalid classes": _plan(dataclasses.replace(base, invalid_classes=(0, 1, 3, 8, 9))),
        "dilate classes": _plan(dataclasses.replace(base, dilate_classes=(9,))),
        "crs": _plan(base, epsg=3035),
        "method": _plan(dataclasses.replace(base, method="geomedian")),
        "source profile": _plan(base, items=[_scene(i, profile="planetary-computer")
                                             for i in (1, 11, 21)]),
        "assumed decoding": _plan(base, items=[_scene(i, assumed=True) for i in (1, 11, 21)]),
    }
    ids = {name: plan.item_id for name, plan in variants.items()}
    ids["base"] = _plan(base).item_id
    assert len(set(ids.values())) == len(ids), ids


def test_the_scenes_and_the_encoding_make_the_same_product_again():
    """A new scene in the catalog, or another chunk size or compression, is the same product
    made again: the same item id, another inputs hash. (With the default mask, ``auto``,
    a scene that brings the series to the multitemporal detector's 4 dates changes the
    detector, so the product: four dates here, then five.)"""
    four = [*SCENES, _scene(25)]
    base = _plan(MosaicParams(), items=four)
    assert base.params.mask == "multitemporal" and _plan(MosaicParams()).params.mask == "scl"
    assert _plan(MosaicParams()).item_id != base.item_id
    for other in (_plan(MosaicParams(), items=[*four, _scene(28)]),
                  _plan(MosaicParams(chunksize=256), items=four),
                  _plan(MosaicParams(compress="zstd"), items=four)):
        assert other.item_id == base.item_id
        assert other.inputs_hash != base.inputs_hash
    # the float spelling of a parameter does not matter
    assert _plan(MosaicParams(resolution_m=10, dilation_m=100), items=four).item_id == \
        base.item_id


@pytest.mark.filterwarnings("ignore::cloudfree.errors.CloudFreeWarning")
def test_an_unprepared_scene_is_the_product_of_its_prepared_copy(tmp_path):
    """The cube prepares raw items itself, by the profile the catalog's own rules give: the
    same product as the flows' prepared items."""
    import numpy as np

    from cloudfree.catalogs import prepare_items
    from cloudfree.testing import make_items, make_tile

    tile = make_tile(size=8)
    params = MosaicParams()
    arrays = {b: np.full((2, 8, 8), 1000, np.uint16) for b in params.bands}
    raw = make_items(tmp_path, arrays | {"scl": np.full((2, 4, 4), 4, np.uint16)}, tile=tile)
    prepared = prepare_items(raw, params.bands)
    plans = [plan_tile(items, tile, WINDOW, params) for items in (raw, prepared)]
    assert plans[0].item_id == plans[1].item_id
    assert plans[0].product["source_profile"] == plans[1].product["source_profile"]
    assert plans[0].product["source_profile"]["profiles"] == \
        [prepared[0]["properties"]["cloudfree:decoding"]["profile"]]


def test_random_aois_never_share_an_item_between_10_and_20_m():
    """The issue's check: over 400 random AOIs the AOI tile ids of 10 m and 20 m runs
    collide (the snapped bounds agree), the item ids never do."""
    rng = random.Random(13)
    tile_collisions, ids = 0, set()
    for _ in range(400):
        lon, lat = rng.uniform(-170, 170), rng.uniform(-60, 60)
        w, h = rng.uniform(0.005, 0.08), rng.uniform(0.005, 0.08)
        aoi = parse_bbox([lon, lat, lon + w, lat + h])
        ten = plan_tile([], aoi_tile(aoi, resolution_m=10), WINDOW, MosaicParams())
        twenty = plan_tile([], aoi_tile(aoi, resolution_m=20), WINDOW,
                           MosaicParams(resolution_m=20))
        tile_collisions += ten.tile.tile_id == twenty.tile.tile_id
        ids.update((ten.item_id, twenty.item_id))
    print(f"AOI tile ids shared by 10 m and 20 m: {tile_collisions} of 400; item ids: "
          f"{800 - len(ids)}")
    assert tile_collisions > 0  # the case the product digest is for exists in the sample
    assert len(ids) == 800


def test_grid_tile_plans_keep_their_grid_ids():
    tile = grid_tiles(AOI, resolution_m=10, tile_size_px=256)[0]
    plan = plan_tile(SCENES, tile, WINDOW, MosaicParams())
    assert plan.item_id.startswith(f"cloudfree-{tile.tile_id}-20240401-20241028-median-v")
    assert plan.base_url("s3://b/out") == \
        f"s3://b/out/{tile.tile_id}/{plan.item_id}/{plan.inputs_hash[:12]}"
    fresh = dataclasses.replace(plan, prefix="s3://b/out/x/y/z-1234")
    assert fresh.base_url("s3://b/out") == "s3://b/out/x/y/z-1234"
    assert fresh.deterministic_url("s3://b/out") == plan.base_url("s3://b/out")


def test_folders_overlap_by_path_segment_only():
    assert within("s3://b/t/i/abc/red.tif", "s3://b/t/i/abc")
    assert within("s3://b/t/i/abc", "s3://b/t/i/abc/")
    assert not within("s3://b/t/i/abc-12/red.tif", "s3://b/t/i/abc")
    assert prefixes_overlap("s3://b/t/i", "s3://b/t/i/abc")
    assert not prefixes_overlap("s3://b/t/i/abc", "s3://b/t/i/abc-1f2e3d4c")
    item = {"assets": {"red": {"href": "s3://b/t/i/abc/red.tif"},
                       "fill": {"href": "s3://b/t/i/abc/fill.tif"}}}
    assert item_prefix(item) == "s3://b/t/i/abc"
    assert item_prefix({"assets": {}}) is None


def test_tile_outcome_is_small_and_picklable():
    outcome = TileOutcome("t", "i", "published", {"red": "s3://b/red.tif"}, 3,
                          dropped=[{"id": "S2A", "asset": "red", "error": "HTTP 500"}])
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    failed = TileOutcome.failure("t", "i", ValueError("bad\n  thing"), n_sources=2)
    assert (failed.status, failed.error, failed.n_sources) == ("failed", "ValueError: bad thing",
                                                               2)


# --------------------------------------------------------------------------- gc planner

NOW = dt.datetime(2026, 1, 2, 12, tzinfo=dt.UTC)
ROOT = "s3://bucket/out"


def _obj(path: str, hours_ago: float, size: int = 10) -> StoredObject:
    return StoredObject(path, size, NOW - dt.timedelta(hours=hours_ago), etag='"e"')


def test_gc_plan_finds_orphans_and_keeps_live_young_and_foreign_files():
    objects = [
        _obj("t1/item-a/h1/red.tif", 30), _obj("t1/item-a/h1/item-a.json", 30),  # live
        _obj("t1/item-a/h0/red.tif", 30, 100), _obj("t1/item-a/h0/item-a.json", 30),  # old
        _obj("t1/item-a/h0-ab12cd34/red.tif", 0.5),  # being written: too young
        _obj("t2/item-b/h9/red.tif", 7),  # no item at all
        _obj("collection.json", 100), _obj("t1/notes.txt", 100),  # outside the layout
        _obj("_locks/item-a.lock", 1), _obj("_locks/item-c.lock", 0.001),
    ]
    plan = plan_gc(objects, [f"{ROOT}/t1/item-a/h1"], root=ROOT, now=NOW,
                   min_age=dt.timedelta(hours=6))
    found = {o.url: o for o in plan.orphans}
    assert set(found) == {f"{ROOT}/t1/item-a/h0", f"{ROOT}/t2/item-b/h9",
                          f"{ROOT}/_locks/item-a.lock"}
    assert found[f"{ROOT}/t1/item-a/h0"].objects == 2
    assert found[f"{ROOT}/t1/item-a/h0"].size == 110
    assert found[f"{ROOT}/_locks/item-a.lock"].kind == "lock"
    assert found[f"{ROOT}/t2/item-b/h9"].item_id == "item-b"
    assert plan.live == 1 and plan.young == (f"{ROOT}/t1/item-a/h0-ab12cd34",)
    assert plan.other == 2
    # a lock's own time to live counts: a long one is not stale after an hour
    long = plan_gc(objects, [], root=ROOT, now=NOW, min_age=dt.timedelta(0),
                   lock_ttls={"_locks/item-a.lock": 7200.0})
    assert f"{ROOT}/_locks/item-a.lock" not in {o.url for o in long.orphans}
    assert f"{ROOT}/t1/item-a/h0-ab12cd34" in {o.url for o in long.orphans}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                               ("6h", 21600), ("2d", 172800), ("0", 0),
                                               ("1.5h", 5400)])
def test_min_age_parses(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "6 hours", "-1h", "h", "1w"])
def test_bad_min_age_is_a_clear_error(text):
    with pytest.raises(InvalidParameterError, match="--min-age.*90s, 30m, 6h"):
        parse_duration(text)


# --------------------------------------------------------------------------- locks (local)


def test_a_lock_keeps_a_second_holder_out_until_released(tmp_path):
    url = lock_url(str(tmp_path), "item-a")
    with TileLock(url, fs=None, ttl_s=5):
        with pytest.raises(TileLockError, match="held by .* pid .*Another run of this tile"):
            TileLock(url, fs=None, ttl_s=5, wait_s=0.3).acquire()
    with TileLock(url, fs=None, ttl_s=5, wait_s=0):  # released: free again
        pass
    assert not (tmp_path / "_locks" / "item-a.lock").exists()


def test_a_waiter_gets_the_lock_when_the_holder_releases(tmp_path):
    url = lock_url(str(tmp_path), "item-a")
    first = TileLock(url, fs=None, ttl_s=5).acquire()
    threading.Timer(0.4, first.release).start()
    second = TileLock(url, fs=None, ttl_s=5, wait_s=10).acquire()
    try:
        assert second.waited_s >= 0.3
    finally:
        second.release()


def test_a_lock_nobody_refreshes_is_taken_over(tmp_path):
    """A run that died leaves its lock; once it has not changed for its TTL, a waiter takes
    it over; a live holder's refreshes keep waiters out past the TTL."""
    url = lock_url(str(tmp_path), "item-a")
    path = tmp_path / "_locks" / "item-a.lock"
    path.parent.mkdir(parents=True)
    dead = LockInfo(owner="dead", item="item-a", host="gone", pid=1, ttl_s=0.3, beat=0,
                    acquired_at="2026-01-01T00:00:00Z")
    path.write_bytes(dead.to_bytes())
    start = time.monotonic()
    with TileLock(url, fs=None, ttl_s=0.3, wait_s=5) as taker:
        assert time.monotonic() - start >= 0.3
        assert LockInfo.parse(path.read_bytes()).owner == taker.owner
        with pytest.raises(TileLockError):  # refreshed every ttl/4: never stale
            TileLock(url, fs=None, ttl_s=0.3, wait_s=1.0).acquire()
        taker.check()
