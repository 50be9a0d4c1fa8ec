"""The static copy is a STAC catalog: a collection.json and item copies with relative links,
valid against the offline schemas (../shared/data/stac-schemas), and the validator rejects
what is broken."""

import copy
import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window
from cloudfree.publish import (
    ATTRIBUTION,
    ITEM_ASSETS_EXTENSION,
    LICENSE_URL,
    STATIC_COLLECTION,
    LiveItem,
    WrittenAsset,
    attribution,
    build_collection,
    build_item,
    collection_extent,
    item_id,
    static_collection,
    static_item,
)
from cloudfree.testing.stac_validation import (
    CLASSIFICATION_V2,
    StacValidationError,
    schema_dir,
    validate,
)

ROOT = "s3://bucket/cloudfree-mosaics"
SOURCE_API = "http://127.0.0.1:8082"


@pytest.fixture(scope="module")
def schemas():
    found = schema_dir()
    if found is None:
        pytest.skip("no offline STAC schemas: ../shared/data/stac-schemas beside the checkout "
                    "is absent and CLOUDFREE_STAC_SCHEMAS is unset")
    return found


def _sources(day: str, platforms: list[str]):
    return [{"id": f"S2{p[-1].upper()}_33TWM_{day.replace('-', '')}_{i}_L2A",
             "properties": {"datetime": f"{day}T10:00:00Z", "platform": p}}
            for i, p in enumerate(platforms)]


def _assets(folder: str):
    def asset(key, kind="reflectance", band=None, roles=("data", "metadata")):
        suffix = "png" if kind == "thumbnail" else "tif"
        return WrittenAsset(key, f"{folder}/{key}.{suffix}", 1000, "ab" * 32,
                            "image/png" if kind == "thumbnail" else
                            "image/tiff; application=geotiff; profile=cloud-optimized",
                            roles, key, band=band, kind=kind)

    return [asset("red", band="red", roles=("data", "reflectance")),
            asset("nir", band="nir", roles=("data", "reflectance")),
            asset("clear_count", "clear_count"), asset("source_date", "source_date"),
            asset("fill", "fill"), asset("thumbnail", "thumbnail", roles=("thumbnail",))]


def _catalog():
    """Two tiles of one window (the second from two platforms in another year), as
    publish_tile writes them: (collection, [(item href, static item)], api items)."""
    tiles = grid_tiles(parse_bbox("14.50,45.80,14.56,45.81"), resolution_m=10,
                       tile_size_px=256)[:2]
    window = parse_date_window("2023-12-01/2024-01-31")
    entries, api_items = [], []
    for tile, sources in zip(tiles, [_sources("2024-01-05", ["sentinel-2a"]),
                                     _sources("2023-12-20", ["sentinel-2b", "sentinel-2a"])],
                             strict=True):
        iid = item_id(tile.tile_id, window, "median")
        folder = f"{ROOT}/{tile.tile_id}/{iid}/0123456789ab"
        href = f"{folder}/{iid}.json"
        item = build_item(
            item_id=iid, collection_id="cloudfree-mosaics", tile=tile, window=window,
            assets=_assets(folder), source_items=sources, source_api_url=SOURCE_API,
            source_collection="sentinel-2-l2a", method="median", parameters={"m": 1},
            digest="f" * 64, nodata_pct=2.5 if len(sources) == 1 else 0.0,
            fill_pct={"nodata": 2.5}, static_href=href,
            processed_at=dt.datetime(2024, 2, 1, tzinfo=dt.UTC))
        api_items.append(item)
        entries.append((href, static_item(item, item_href=href,
                                          collection_href=f"{ROOT}/{STATIC_COLLECTION}")))
    live = [LiveItem.from_item(it) for it in api_items]
    collection = build_collection("cloudfree-mosaics", bands=["red", "nir"], items=live,
                                  source_api_urls=[SOURCE_API, "https://earth-search.aws.element84.com/v1"])
    static = static_collection(collection, collection_href=f"{ROOT}/{STATIC_COLLECTION}",
                               item_hrefs={it["id"]: href for href, it in entries})
    return static, entries, api_items


def _on_disk(tmp_path: Path, static, entries) -> Path:
    """The catalog as it lies under the output root, mirrored into ``tmp_path``."""
    def local(url: str) -> Path:
        return tmp_path / url.removeprefix(ROOT + "/")

    for href, item in entries:
        local(href).parent.mkdir(parents=True, exist_ok=True)
        local(href).write_text(json.dumps(item))
    path = local(f"{ROOT}/{STATIC_COLLECTION}")
    path.write_text(json.dumps(static))
    return path


def test_static_catalog_resolves_with_relative_links(tmp_path):
    static, entries, _ = _catalog()
    collection = pystac.read_file(str(_on_disk(tmp_path, static, entries)))
    assert isinstance(collection, pystac.Collection)
    items = list(collection.get_items())
    assert sorted(it.id for it in items) == sorted(it["id"] for _, it in entries)
    for item in items:
        # root, parent and collection resolve to the collection.json read
        assert item.get_root().id == collection.id
        assert item.get_parent().id == collection.id
        assert item.get_collection().id == collection.id
        folder = Path(item.get_self_href()).parent
        assert Path(item.assets["red"].get_absolute_href()) == folder / "red.tif"
        assert Path(item.assets["thumbnail"].get_absolute_href()) == folder / "thumbnail.png"
    for href, item in entries:
        rels = {link["rel"]: link["href"] for link in item["links"]}
        assert rels["self"] == href.rsplit("/", 1)[1].join(["./", ""])
        assert rels["root"] == rels["parent"] == rels["collection"] == \
            f"../../../{STATIC_COLLECTION}"
        assert "alternate" not in rels  # the API item's link to this copy
        derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
        assert derived and all(h.startswith(f"{SOURCE_API}/collections/") for h in derived)
        assert all(not a["href"].startswith(("s3://", "http")) for a in item["assets"].values())
    own = [link for link in static["links"] if link["rel"] in ("self", "root", "item")]
    assert all(not link["href"].startswith(("s3://", "http", "/")) for link in own)


def test_static_catalog_validates_offline(schemas, tmp_path):
    static, entries, _ = _catalog()
    reports = [validate(static, schemas=schemas)] + [validate(it, schemas=schemas)
                                                      for _, it in entries]
    for report in reports:
        assert report.ok, report.errors
        assert any("/collection-spec/" in u or "/item-spec/" in u for u in report.validated)
        # what could not be validated is said
        assert any(n.startswith(CLASSIFICATION_V2) for n in report.not_validated)
    assert ITEM_ASSETS_EXTENSION in reports[0].validated
    assert {"eo", "raster", "projection", "file", "processing"} <= {
        u.split("/")[3] for u in reports[1].validated if "stac-extensions" in u}


def test_collection_says_true_things():
    static, entries, api_items = _catalog()
    bboxes = [it["bbox"] for it in api_items]
    assert static["extent"]["spatial"]["bbox"] == [[
        min(b[0] for b in bboxes), min(b[1] for b in bboxes),
        max(b[2] for b in bboxes), max(b[3] for b in bboxes)]]
    assert static["extent"]["temporal"]["interval"] == [["2023-12-01T00:00:00Z",
                                                         "2024-01-31T23:59:59Z"]]
    assert static["license"] == "proprietary"
    assert [link["href"] for link in static["links"] if link["rel"] == "license"] == [LICENSE_URL]
    assert f"{ATTRIBUTION} 2023-2024" in static["description"]
    roles = {p["name"]: p["roles"] for p in static["providers"]}
    assert any(set(r) == {"licensor", "producer"} for r in roles.values())
    assert roles["cloudfree"] == ["processor"]
    assert roles["earth-search.aws.element84.com"] == ["host"]
    assert all("127.0.0.1" not in p.get("url", "") for p in static["providers"])  # loopback
    summaries = static["summaries"]
    assert summaries["constellation"] == ["sentinel-2"] and summaries["instruments"] == ["msi"]
    assert summaries["platform"] == ["sentinel-2a", "sentinel-2b"]
    assert summaries["eo:cloud_cover"] == {"minimum": 0.0, "maximum": 2.5}
    assert summaries["gsd"] == [10] and [b["common_name"] for b in summaries["eo:bands"]] == \
        ["red", "nir"]
    assert summaries["raster:bands"][0]["scale"] == 0.0001
    assert ITEM_ASSETS_EXTENSION in static["stac_extensions"]
    one, mixed = (it["properties"] for _, it in entries)
    assert one["platform"] == "sentinel-2a" and "platform" not in mixed
    assert mixed["cloudfree:platforms"] == ["sentinel-2a", "sentinel-2b"]
    assert one["eo:cloud_cover"] == 2.5 == one["cloudfree:nodata_pct"]
    assert one["constellation"] == "sentinel-2" and one["instruments"] == ["msi"]


def test_extent_and_attribution_of_no_item_and_of_gaps():
    assert collection_extent([])["temporal"]["interval"] == [["2015-06-23T00:00:00Z", None]]
    assert attribution([]) == ATTRIBUTION
    assert attribution([2024]) == f"{ATTRIBUTION} 2024"
    assert attribution([2021, 2023]) == f"{ATTRIBUTION} 2021, 2023"


def test_item_records_target_date_and_dropped_sources(schemas):
    tile = grid_tiles(parse_bbox("14.50,45.80,14.52,45.81"), resolution_m=10,
                      tile_size_px=256)[0]
    window = parse_date_window("2024-05-01/2024-05-31")
    sources = _sources("2024-05-11", ["sentinel-2a", "sentinel-2b"])
    dropped = [{"id": sources[1]["id"], "asset": "red", "error": "HTTP 500"}]
    item = build_item(
        item_id="x", collection_id="c", tile=tile, window=window, assets=_assets(f"{ROOT}/x"),
        source_items=sources, source_api_url=SOURCE_API, source_collection="s2",
        method="interpolate", parameters={}, digest="0" * 64, nodata_pct=0.0,
        target_date="2024-05-15", dropped_sources=dropped)
    props = item["properties"]
    assert props["cloudfree:target_date"] == "2024-05-15"
    assert props["cloudfree:dropped_sources"] == dropped
    derived = [link["title"] for link in item["links"] if link["rel"] == "derived_from"]
    assert derived == [sources[0]["id"]]  # the dropped scene is no source
    assert props["platform"] == "sentinel-2a" and "1 Sentinel-2" in props["processing:lineage"]
    copy_ = static_item(item, item_href=f"{ROOT}/x/x.json",
                        collection_href=f"{ROOT}/{STATIC_COLLECTION}")
    assert validate(copy_, schemas=schemas).ok


def _broken(item, path, value):
    doc = copy.deepcopy(item)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "says"), [
    (("properties", "datetime"), KeyError, "datetime"),
    (("properties", "proj:code"), 32633, "proj:code"),
    (("properties", "eo:cloud_cover"), "lots", "eo:cloud_cover"),
    (("assets", "red", "file:size"), -1, "file:size"),
    (("assets", "red", "raster:bands", 0, "data_type"), "u16", "data_type"),
    (("assets", "fill", "classification:classes", 1, "name"), KeyError, "name"),
    (("assets", "fill", "classification:classes", 1, "name"), "two words", "name"),
    (("bbox",), [1, 2, 3], "bbox"),
])
def test_validator_rejects_broken_items(schemas, path, value, says):
    _, entries, _ = _catalog()
    item = entries[0][1]
    assert validate(item, schemas=schemas).ok
    report = validate(_broken(item, path, value), schemas=schemas)
    assert not report.ok and any(says in e for e in report.errors), report.errors
    with pytest.raises(StacValidationError, match="not valid STAC"):
        report.raise_for_errors()


def test_validator_rejects_an_api_item_without_its_collection_link(schemas):
    """The API item has ``collection`` but no link to it (the API adds the link when it
    serves the item): as a file on its own, that is not STAC, the bug the static copy had."""
    _, _, api_items = _catalog()
    report = validate(api_items[0], schemas=schemas)
    assert any("/collection" in e and "rel 'collection'" in e for e in report.errors)


def test_validator_says_what_it_cannot_validate(schemas):
    static, _, _ = _catalog()
    newer = dict(static, stac_version="1.1.0")
    assert any("no offline core schema" in e for e in validate(newer, schemas=schemas).errors)
    unknown = dict(static, stac_extensions=[*static["stac_extensions"],
                                            "https://example.com/ext/v1.0.0/schema.json"])
    report = validate(unknown, schemas=schemas)
    assert report.ok
    assert "https://example.com/ext/v1.0.0/schema.json: schema not available offline" in \
        report.not_validated


@pytest.mark.parametrize(("target", "base", "expected"), [
    ("s3://b/root/collection.json", "s3://b/root/t/i/h", "../../../collection.json"),
    ("s3://b/root/t/i/h/red.tif", "s3://b/root/t/i/h", "./red.tif"),
    ("s3://other/root/red.tif", "s3://b/root/t", "s3://other/root/red.tif"),  # other bucket
    ("https://example.com/x.tif", "s3://b/root", "https://example.com/x.tif"),
    ("/data/root/collection.json", "/data/root/t/i", "../../collection.json"),
])
def test_links_are_relative_only_within_one_store(target, base, expected):
    from cloudfree.publish import _relative

    assert _relative(target, base) == expected
