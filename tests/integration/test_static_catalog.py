"""The static copy on S3 is a STAC catalog and the API collection stays true, against the
real stack: two small grid tiles of the demo scenes through :func:`cloudfree.tile.mosaic_tile`
into a collection of this module's own, then ``collection.json`` and the item copies read
back from SeaweedFS with pystac and validated offline (../shared/data/stac-schemas)."""

import json
import threading

import pystac
import pytest

from cloudfree import catalogs
from cloudfree._stac_api import delete_item, get_json
from cloudfree.demo import demo_region
from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window
from cloudfree.publish import (
    LICENSE_URL,
    STATIC_COLLECTION,
    collection_extent,
    ensure_collection,
    merge_extent,
    published_item,
    refresh_collection,
)
from cloudfree.storage import s3_filesystem
from cloudfree.testing.stac_validation import schema_dir, validate
from cloudfree.tile import MosaicParams, mosaic_tile

COLLECTION = "cloudfree-static-catalog-test"
BANDS = ("red", "green", "blue")
TILE_PX = 32


@pytest.fixture(scope="module")
def fs(env):
    return s3_filesystem(env.storage_options())


def _root(env):
    return f"s3://{env.bucket}/{COLLECTION}"


@pytest.fixture(scope="module")
def published(env, demo_scenes, fs):
    """Two tiles published: (their outcomes, the tiles, the window, the prepared items)."""
    items = catalogs.prepare_items(demo_scenes, BANDS)
    epsg, bbox, window = demo_region(demo_scenes, tile_size_px=TILE_PX)
    tiles = grid_tiles(parse_bbox(list(bbox)), resolution_m=10, tile_size_px=TILE_PX,
                       epsg=epsg)
    chosen = [tiles[0], tiles[-1]]
    ensure_collection(env.stac_publish_url, COLLECTION, bands=BANDS, token=env.stac_token(),
                      source_api_url=env.stac_url)
    outcomes = [_run(env, fs, items, tile, parse_date_window(window)) for tile in chosen]
    return outcomes, chosen, parse_date_window(window), items


def _run(env, fs, items, tile, window, **kwargs):
    return mosaic_tile(items, tile, window, MosaicParams(bands=BANDS, chunksize=TILE_PX),
                       api_url=env.stac_publish_url, source_api_url=env.stac_url,
                       source_collection=env.source_collection, output_collection=COLLECTION,
                       output_root=_root(env), fs=fs, gdal_env=env.gdal_env(),
                       api_token=env.stac_token(), **kwargs)


def _download(fs, env, tmp_path):
    """The output root, as a downstream user copies it (``aws s3 sync``)."""
    fs.invalidate_cache()
    root = _root(env).removeprefix("s3://")
    for key in fs.find(root):
        target = tmp_path / key.removeprefix(root + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat(key))
    return tmp_path / STATIC_COLLECTION


def _static(fs, env):
    fs.invalidate_cache()
    return json.loads(fs.cat(f"{_root(env).removeprefix('s3://')}/{STATIC_COLLECTION}"))


def _api_ids(env):
    page = get_json(f"{env.stac_url}/collections/{COLLECTION}/items?limit=100")
    return sorted(f["id"] for f in page["features"])


def test_static_copy_is_a_catalog_pystac_reads(published, env, fs, tmp_path):
    outcomes, _, _, _ = published
    assert [o.status for o in outcomes] == ["published", "published"]
    collection = pystac.read_file(str(_download(fs, env, tmp_path)))
    assert isinstance(collection, pystac.Collection) and collection.id == COLLECTION
    items = list(collection.get_items())
    assert sorted(it.id for it in items) == sorted(o.item_id for o in outcomes) == _api_ids(env)
    for item in items:
        assert item.get_root().id == item.get_collection().id == COLLECTION
        for key, asset in item.assets.items():
            local = asset.get_absolute_href()
            assert local.startswith(str(tmp_path)), (key, local)  # relative, resolved here
            assert pystac.utils.is_absolute_href(local)
            with open(local, "rb") as handle:
                assert handle.read(4) in (b"II*\x00", b"II+\x00", b"\x89PNG"), key
    text = (tmp_path / STATIC_COLLECTION).read_text()
    assert "127.0.0.1" not in text and "localhost" not in text  # no API host


def test_static_links_are_relative_and_sources_absolute(published, env, fs):
    static = _static(fs, env)
    for link in static["links"]:
        if link["rel"] == "license":
            assert link["href"] == LICENSE_URL
        else:
            assert link["href"].startswith("./"), link
    for link in (x for x in static["links"] if x["rel"] == "item"):
        key = f"{_root(env).removeprefix('s3://')}/{link['href'].removeprefix('./')}"
        item = json.loads(fs.cat(key))
        for own in (x for x in item["links"] if x["rel"] != "derived_from"):
            assert not own["href"].startswith(("http", "s3://", "/")), own
        derived = [x["href"] for x in item["links"] if x["rel"] == "derived_from"]
        assert derived and all(h.startswith(f"{env.stac_url}/collections/") for h in derived)
        # the API item points at this copy
        api = published_item(env.stac_url, COLLECTION, item["id"])
        assert f"s3://{key}" in [x["href"] for x in api["links"] if x["rel"] == "alternate"]


def test_static_catalog_and_api_documents_validate_offline(published, env, fs):
    schemas = schema_dir()
    if schemas is None:
        pytest.skip("no offline STAC schemas (../shared/data/stac-schemas, "
                    "CLOUDFREE_STAC_SCHEMAS)")
    static = _static(fs, env)
    root = _root(env).removeprefix("s3://")
    documents = [static] + [json.loads(fs.cat(f"{root}/{x['href'].removeprefix('./')}"))
                            for x in static["links"] if x["rel"] == "item"]
    # as downstream readers get them from the API, with the API's own links
    documents.append(get_json(f"{env.stac_url}/collections/{COLLECTION}"))
    documents += [published_item(env.stac_url, COLLECTION, iid) for iid in _api_ids(env)]
    for doc in documents:
        report = validate(doc, schemas=schemas)
        assert report.ok, (doc["id"], report.errors)
        assert report.not_validated  # classification v2.0.0: said, not skipped silently


def test_api_collection_extent_licence_and_providers_are_true(published, env):
    collection = get_json(f"{env.stac_url}/collections/{COLLECTION}")
    [box] = collection["extent"]["spatial"]["bbox"]
    [[start, end]] = collection["extent"]["temporal"]["interval"]
    items = [published_item(env.stac_url, COLLECTION, iid) for iid in _api_ids(env)]
    assert box == [min(it["bbox"][0] for it in items), min(it["bbox"][1] for it in items),
                   max(it["bbox"][2] for it in items), max(it["bbox"][3] for it in items)]
    assert start == min(it["properties"]["start_datetime"] for it in items)
    assert end == max(it["properties"]["end_datetime"] for it in items)
    assert [x["href"] for x in collection["links"] if x["rel"] == "license"] == [LICENSE_URL]
    roles = sorted(r for p in collection["providers"] for r in p["roles"])
    assert roles == ["licensor", "processor", "producer"]  # the source host is loopback
    years = sorted({d[:4] for it in items for d in it["properties"]["cloudfree:source_dates"]})
    assert f"Contains modified Copernicus Sentinel data {years[0]}" in collection["description"]
    platforms = sorted({p for it in items for p in it["properties"]["cloudfree:platforms"]})
    assert collection["summaries"]["platform"] == platforms
    for item in items:
        assert item["properties"]["eo:cloud_cover"] == item["properties"]["cloudfree:nodata_pct"]


def test_replaced_and_deleted_items_leave_the_catalog(published, env, fs):
    outcomes, tiles, window, items = published
    before = {x["title"]: x["href"] for x in _static(fs, env)["links"] if x["rel"] == "item"}
    # a forced re-run writes the item under a fresh prefix and removes the old one
    again = _run(env, fs, items, tiles[0], window, force=True)
    assert again.status == "published"
    after = {x["title"]: x["href"] for x in _static(fs, env)["links"] if x["rel"] == "item"}
    assert sorted(after) == sorted(before)
    assert after[again.item_id] != before[again.item_id]
    assert fs.exists(f"{_root(env).removeprefix('s3://')}/"
                     f"{after[again.item_id].removeprefix('./')}")
    # an item deleted (as cloudfree gc does) leaves both documents at the next refresh
    gone = outcomes[1].item_id
    delete_item(env.stac_publish_url, COLLECTION, gone, token=env.stac_token())
    static = refresh_collection(env.stac_publish_url, COLLECTION, output_root=_root(env),
                                fs=fs, token=env.stac_token())
    assert [x["title"] for x in static["links"] if x["rel"] == "item"] == [again.item_id]
    assert _static(fs, env) == static
    kept = published_item(env.stac_url, COLLECTION, again.item_id)
    api = get_json(f"{env.stac_url}/collections/{COLLECTION}")
    assert api["extent"]["spatial"]["bbox"] == [kept["bbox"]]  # shrunk to what is left


def test_concurrent_refreshes_list_every_item(published, env, fs):
    """Two publishers refreshing at once: whichever writes last, both see every item."""
    errors = []

    def refresh():
        try:
            refresh_collection(env.stac_publish_url, COLLECTION, output_root=_root(env),
                               fs=s3_filesystem(env.storage_options()), token=env.stac_token())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    listed = sorted(x["title"] for x in _static(fs, env)["links"] if x["rel"] == "item")
    assert listed == _api_ids(env)


def test_each_publish_grows_the_extent_at_constant_cost(env):
    """``merge_extent`` (what a flow's tiles do on publishing): the placeholder extent
    becomes the first item's, a second item widens it, an item inside it changes nothing."""
    cid = "cloudfree-merge-extent-test"
    url, token = env.stac_publish_url, env.stac_token()
    ensure_collection(url, cid, bands=BANDS, token=token)

    def item(bbox, start, end):
        return {"id": "x", "bbox": bbox,
                "properties": {"start_datetime": start, "end_datetime": end}}

    def extent():
        return get_json(f"{env.stac_url}/collections/{cid}")["extent"]

    assert extent() == collection_extent([])
    first = item([15.0, 46.0, 15.1, 46.1], "2024-04-01T00:00:00Z", "2024-06-30T23:59:59Z")
    assert merge_extent(url, cid, first, token=token)
    assert extent()["spatial"]["bbox"] == [[15.0, 46.0, 15.1, 46.1]]
    second = item([15.05, 45.9, 15.3, 46.05], "2024-03-01T00:00:00Z", "2024-05-31T23:59:59Z")
    assert merge_extent(url, cid, second, token=token)
    assert extent() == {"spatial": {"bbox": [[15.0, 45.9, 15.3, 46.1]]},
                        "temporal": {"interval": [["2024-03-01T00:00:00Z",
                                                   "2024-06-30T23:59:59Z"]]}}
    assert not merge_extent(url, cid, first, token=token)
