"""Nothing published is replaced by a different product, nor lost: against the real stack
(SeaweedFS S3, the writer and reader STAC APIs), one small grid tile of the demo scenes,
mosaicked through :func:`cloudfree.tile.mosaic_tile` into a collection of this module's
own."""

import json
import threading
import warnings

import pytest

from cloudfree import catalogs, cli
from cloudfree.demo import demo_region
from cloudfree.errors import CloudFreeWarning, PublishError
from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window
from cloudfree.locks import LOCKS_DIR
from cloudfree.publish import ensure_collection, item_prefix, published_item
from cloudfree.storage import s3_filesystem
from cloudfree.tile import MosaicParams, mosaic_tile, plan_tile

COLLECTION = "cloudfree-publishing-test"
BANDS = ("red", "green", "blue")
TILE_PX = 32


@pytest.fixture(scope="module")
def setup(env, demo_scenes):
    with warnings.catch_warnings():  # the demo catalog's host is no known catalog's
        warnings.simplefilter("ignore", CloudFreeWarning)
        items = catalogs.prepare_items(demo_scenes, BANDS)
    epsg, bbox, window = demo_region(demo_scenes, tile_size_px=TILE_PX)
    tiles = grid_tiles(parse_bbox(list(bbox)), resolution_m=10, tile_size_px=TILE_PX, epsg=epsg)
    ensure_collection(env.stac_publish_url, COLLECTION, bands=BANDS, token=env.stac_token())
    return items, tiles[len(tiles) // 2], parse_date_window(window)


@pytest.fixture(scope="module")
def fs(env):
    return s3_filesystem(env.storage_options())


def _root(env):
    return f"s3://{env.bucket}/{COLLECTION}"


def _run(env, setup, params, **kwargs):
    items, tile, window = setup
    options = dict(api_url=env.stac_publish_url, source_api_url=env.stac_url,
                   source_collection=env.source_collection, output_collection=COLLECTION,
                   output_root=_root(env), fs=s3_filesystem(env.storage_options()),
                   gdal_env=env.gdal_env(), api_token=env.stac_token())
    return mosaic_tile(items, tile, window, params, **(options | kwargs))


def _live(env, item_id):
    """The item as downstream readers see it (the reader API)."""
    return published_item(env.stac_url, COLLECTION, item_id)


def _keys(fs, url):
    """The objects under a folder (s3fs's find names an emptied folder itself: left out)."""
    found = fs.find(url.removeprefix("s3://"), detail=True)
    return sorted(name for name, info in found.items() if info["type"] == "file")


def _assert_consistent(fs, item):
    """Every asset href exists and lies in the item's own folder, which holds nothing else
    than those files and the static copy."""
    folder = item_prefix(item)
    hrefs = sorted(a["href"].removeprefix("s3://") for a in item["assets"].values())
    assert all(h.startswith(folder.removeprefix("s3://") + "/") for h in hrefs), (folder, hrefs)
    assert all(fs.exists(h) for h in hrefs), [h for h in hrefs if not fs.exists(h)]
    static = f"{folder.removeprefix('s3://')}/{item['id']}.json"
    assert _keys(fs, folder) == sorted([*hrefs, static])


def test_two_target_dates_stay_two_items(env, setup, fs):
    """The acceptance 'Two products stay two': interpolate at 2024-06-15, then at
    2024-08-15: two items, each with its cloudfree:target_date and all its files."""
    _, _, window = setup
    assert window.start.isoformat() < "2024-06-15" < "2024-08-15" < window.end.isoformat()
    june = _run(env, setup, MosaicParams(bands=BANDS, method="interpolate",
                                         target_date="2024-06-15"))
    august = _run(env, setup, MosaicParams(bands=BANDS, method="interpolate",
                                           target_date="2024-08-15"))
    assert (june.status, august.status) == ("published", "published")
    assert june.item_id != august.item_id
    for outcome, date in ((june, "2024-06-15"), (august, "2024-08-15")):
        item = _live(env, outcome.item_id)
        assert item is not None, outcome.item_id
        assert item["properties"]["cloudfree:target_date"] == date
        _assert_consistent(fs, item)


def test_forced_rerun_writes_a_fresh_folder_and_removes_the_old_one_after(env, setup, fs):
    params = MosaicParams(bands=BANDS, dilation_m=60.0)  # a product of this test's own
    first = _run(env, setup, params)
    old = item_prefix(_live(env, first.item_id))
    again = _run(env, setup, params)
    assert again.status == "skipped" and again.hrefs == first.hrefs
    forced = _run(env, setup, params, force=True)
    assert forced.status == "published" and forced.item_id == first.item_id
    item = _live(env, forced.item_id)
    new = item_prefix(item)
    assert new != old and not new.startswith(old + "/") and not old.startswith(new + "/")
    assert _keys(fs, old) == []  # removed once the new item was live
    _assert_consistent(fs, item)
    items, tile, window = setup
    plan = plan_tile(items, tile, window, params)
    assert _keys(fs, plan.item_url(_root(env))) == _keys(fs, new)  # nothing else left
    # forced once more: back to the deterministic folder, the random one removed
    again = _run(env, setup, params, force=True)
    assert item_prefix(_live(env, again.item_id)) == plan.deterministic_url(_root(env))
    assert _keys(fs, new) == []


def test_two_concurrent_runs_of_one_tile_leave_one_consistent_item(env, setup, fs):
    """Two runs of one tile at once: one publishes, the other waits for its lock, finds the
    same inputs live and skips; the bucket holds what one clean run leaves, and no lock."""
    params = MosaicParams(bands=BANDS, dilation_m=70.0)
    start = threading.Barrier(2)
    outcomes, errors = [], []

    def one_run():
        start.wait()
        try:
            outcomes.append(_run(env, setup, params))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(o.status for o in outcomes) == ["published", "skipped"]
    assert outcomes[0].item_id == outcomes[1].item_id
    assert outcomes[0].hrefs == outcomes[1].hrefs
    item = _live(env, outcomes[0].item_id)
    _assert_consistent(fs, item)
    items, tile, window = setup
    plan = plan_tile(items, tile, window, params)
    assert item_prefix(item) == plan.deterministic_url(_root(env))  # a clean run's folder
    assert _keys(fs, plan.item_url(_root(env))) == _keys(fs, item_prefix(item))
    assert _keys(fs, f"{_root(env)}/{LOCKS_DIR}") == []


def test_a_failed_publish_leaves_no_files_and_no_lock(env, setup, fs):
    """The API refuses the item (here: no such collection), after the COGs were written:
    they are removed again, the lock released."""
    from cloudfree import _stac_api

    params = MosaicParams(bands=BANDS, dilation_m=80.0)
    retries = _stac_api.current_policy().retries
    _stac_api.configure(retries=0)  # the refusal is final: no need to wait for retries
    try:
        with pytest.raises(PublishError):
            _run(env, setup, params, output_collection="no-such-collection")
    finally:
        _stac_api.configure(retries=retries)
    items, tile, window = setup
    plan = plan_tile(items, tile, window, params)
    assert _keys(fs, plan.item_url(_root(env))) == []
    assert _keys(fs, f"{_root(env)}/{LOCKS_DIR}") == []


def test_s3_lock_excludes_and_a_dead_runs_lock_is_taken_over(env, fs):
    """On SeaweedFS: a held lock keeps a second run out; a lock left by a run that died
    (never refreshed) is taken over once unchanged for its TTL; none is left behind."""
    import time

    from cloudfree.errors import TileLockError
    from cloudfree.locks import LockInfo, TileLock, lock_url

    url = lock_url(_root(env), "cloudfree-lock-test")
    with TileLock(url, fs=fs, ttl_s=2) as holder:
        with pytest.raises(TileLockError, match="held by"):
            TileLock(url, fs=fs, ttl_s=2, wait_s=2.5).acquire()  # refreshed: never stale
        holder.check()
    dead = LockInfo(owner="dead", item="cloudfree-lock-test", host="gone", pid=1, ttl_s=0.5,
                    beat=0, acquired_at="2026-01-01T00:00:00Z")
    fs.pipe(url.removeprefix("s3://"), dead.to_bytes())
    start = time.monotonic()
    with TileLock(url, fs=fs, ttl_s=2, wait_s=10) as taker:
        assert time.monotonic() - start >= 0.5
        info = LockInfo.parse(fs.cat_file(url.removeprefix("s3://")))
        assert info is not None and info.owner == taker.owner
    assert not fs.exists(url.removeprefix("s3://"))


def _gc(capsys, *args):
    code = cli.main(["gc", "--collection", COLLECTION, "--json", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_gc_lists_orphans_and_deletes_them_on_request(env, setup, fs, capsys):
    params = MosaicParams(bands=BANDS, dilation_m=90.0)
    outcome = _run(env, setup, params)
    live = _live(env, outcome.item_id)
    items, tile, window = setup
    plan = plan_tile(items, tile, window, params)
    orphan = f"{plan.item_url(_root(env))}/0123456789ab"  # a killed run's files
    fs.pipe(f"{orphan.removeprefix('s3://')}/red.tif", b"half a COG")
    # a young orphan is kept: it may be a running job's
    young = _gc(capsys, "--min-age", "1h")
    assert orphan not in {o["url"] for o in young["orphans"]} and orphan in young["young"]
    dry = _gc(capsys, "--min-age", "0")
    listed = {o["url"]: o for o in dry["orphans"]}
    assert listed[orphan]["kind"] == "prefix" and listed[orphan]["objects"] == 1
    assert item_prefix(live) not in listed
    assert dry["dry_run"] and dry["deleted"] == [] and fs.exists(f"{orphan[5:]}/red.tif")
    assert cli.main(["gc", "--collection", COLLECTION, "--min-age", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"orphan     {orphan}  (1 files" in printed and "dry run: nothing deleted" in printed
    done = _gc(capsys, "--min-age", "0", "--delete")
    assert orphan in done["deleted"] and not fs.exists(f"{orphan[5:]}/red.tif")
    assert not done["busy"]
    _assert_consistent(fs, _live(env, outcome.item_id))  # the live files stay


def test_gc_removes_a_dead_runs_lock_and_spares_a_busy_item(env, setup, fs):
    """A lock nobody refreshes is an orphan once older than its TTL (plus a minute of clock
    slack: judged here as seen two minutes on); an orphaned folder whose item a run holds
    the lock of is left alone (busy)."""
    import datetime as dt

    from cloudfree.gc import delete_orphans, find_orphans
    from cloudfree.locks import TileLock, lock_url

    root = _root(env)
    dead = f"{root}/{LOCKS_DIR}/cloudfree-dead-item.lock"
    fs.pipe(dead.removeprefix("s3://"), json.dumps({
        "owner": "dead", "item": "cloudfree-dead-item", "host": "gone", "pid": 1,
        "ttl_s": 1.0, "beat": 0, "acquired_at": "2026-01-01T00:00:00Z"}).encode())
    busy = f"{root}/t/cloudfree-busy-item/0123456789ab"
    fs.pipe(f"{busy.removeprefix('s3://')}/red.tif", b"half a COG")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    with TileLock(lock_url(root, "cloudfree-busy-item"), fs=fs, ttl_s=600):
        plan = find_orphans(fs, root, env.stac_url, COLLECTION, min_age=dt.timedelta(0),
                            now=later)
        assert {dead, busy} <= {o.url for o in plan.orphans}
        done = delete_orphans(fs, plan, env.stac_url, COLLECTION, now=later)
    assert dead in done.deleted and not fs.exists(dead.removeprefix("s3://"))
    assert busy in done.busy and fs.exists(f"{busy.removeprefix('s3://')}/red.tif")
    fs.rm(busy.removeprefix("s3://"), recursive=True)


def test_gc_bad_input_is_a_clear_error(env, capsys):
    assert cli.main(["gc", "--min-age", "soon"]) == 2
    err = capsys.readouterr().err
    assert "invalid --min-age 'soon'" in err and "Traceback" not in err
    assert cli.main(["gc", "--collection", "no-such-collection"]) == 2
    assert "unknown collection 'no-such-collection'" in capsys.readouterr().err


def test_cli_two_target_dates_stay_two_items(env, demo_scenes, fs, capsys):
    """The acceptance through the CLI and the AOI flow (Prefect, Dask, the writer API): two
    ``cloudfree mosaic --method interpolate`` runs that differ only in ``--target-date``
    leave two items, each with its target date and all its files."""
    _, (minx, miny, maxx, maxy), window = demo_region(demo_scenes, tile_size_px=64)
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    bbox = f"{cx - 0.002},{cy - 0.0015},{cx + 0.002},{cy + 0.0015}"
    ids = {}
    for date in ("2024-06-15", "2024-08-15"):
        assert cli.main(["mosaic", "--bbox", bbox, "--datetime", window, "--method",
                         "interpolate", "--target-date", date, "--bands", "red,green,blue",
                         "--json"]) == 0
        (tile,) = json.loads(capsys.readouterr().out)["tiles"]
        assert tile["status"] == "published"
        ids[date] = tile["item_id"]
    assert ids["2024-06-15"] != ids["2024-08-15"]
    for date, item_id in ids.items():
        item = published_item(env.stac_url, env.output_collection, item_id)
        assert item is not None and item["properties"]["cloudfree:target_date"] == date
        _assert_consistent(fs, item)
