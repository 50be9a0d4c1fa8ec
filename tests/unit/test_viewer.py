"""The viewer's pure parts: how items become products, pairs and tile queries, and the
refusals of `cloudfree view` that need no service (the page itself is tested in a real
browser: tests/integration/test_viewer.py)."""

from __future__ import annotations

import hashlib
import json
import socket
from typing import Any

import pytest

from cloudfree import cli
from cloudfree.errors import ServiceError
from cloudfree.viewer import LAYER_IDS, build_catalog, check_vendored
from cloudfree.viewer._catalog import LAYERS, layer_query, point_spec, product_key
from cloudfree.viewer.browser import ChromiumError, find_chromium

REFLECTANCE = {"raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": -0.1}]}
FILL = {"raster:bands": [{"nodata": 0, "data_type": "uint8"}],
        "classification:classes": [
            {"value": 0, "name": "nodata", "color_hint": "000000"},
            {"value": 1, "name": "observed", "color_hint": "2E8B57"},
            {"value": 4, "name": "generated", "color_hint": "DC143C"}]}
CHANGE = {"raster:bands": [{"nodata": -32768, "scale": 0.0001, "offset": 0.0}]}


def _item(tile: str, *, start: str = "2024-04-01", end: str = "2024-10-28",
          role: str | None = None, event: str | None = None, related: str | None = None,
          extra_assets: dict[str, Any] | None = None, x: float = 15.0) -> dict[str, Any]:
    window = f"{start.replace('-', '')}-{end.replace('-', '')}"
    tag = f"-{role}{event.replace('-', '')}" if role and event else ""
    assets = {key: REFLECTANCE for key in ("blue", "green", "red", "nir")}
    assets |= {"fill": FILL, "source_date": {"raster:bands": [{"nodata": 0}]},
               "clear_count": {"raster:bands": [{}]}, **(extra_assets or {})}
    properties: dict[str, Any] = {
        "cloudfree:tile_id": tile, "cloudfree:method": "median",
        "start_datetime": f"{start}T00:00:00Z", "end_datetime": f"{end}T23:59:59Z",
        "cloudfree:source_dates": ["2024-05-01", "2024-06-01", "2024-07-01"],
        "updated": "2024-11-01T00:00:00Z"}
    if role and event:
        properties |= {"cloudfree:event": {"date": event}, "cloudfree:event_role": role}
    links = [{"rel": "related", "href": f"http://127.0.0.1:8082/collections/c/items/{related}"}
             ] if related else []
    digest = hashlib.sha256(f"{tile}{window}{tag}".encode()).hexdigest()[:8]  # holds the tile
    return {"id": f"cloudfree-{tile}-{window}{tag}-median-v0.1.0-{digest}",
            "bbox": [x, 46.0, x + 0.02, 46.02], "geometry": None, "properties": properties,
            "assets": assets, "links": links}


def _layer(layer_id: str):
    return next(layer for layer in LAYERS if layer.id == layer_id)


def test_true_and_false_colour_rescale_reflectance_through_raster_bands():
    item = _item("t1")
    # reflectance 0..0.25 is DN 1000..3500 with scale 0.0001 and offset -0.1
    assert layer_query(_layer("truecolor"), item) == {
        "assets": ["red", "green", "blue"], "rescale": ["1000,3500"] * 3}
    assert layer_query(_layer("falsecolor"), item) == {
        "assets": ["nir", "red", "green"], "rescale": ["1000,6000", "1000,3500", "1000,3500"]}


def test_provenance_layers_follow_the_item():
    item = _item("t1")
    days = layer_query(_layer("source_date"), item)
    assert days == {"assets": ["source_date"], "rescale": ["19814,20024"],  # the window's days
                    "colormap_name": "viridis"}
    fill = layer_query(_layer("fill"), item)
    assert fill is not None and fill["assets"] == ["fill"]
    assert json.loads(str(fill["colormap"])) == {"0": [0, 0, 0, 0], "1": [46, 139, 87, 255],
                                                 "4": [220, 20, 60, 255]}
    clear = layer_query(_layer("clear_count"), item)
    assert clear is not None and clear["rescale"] == ["0,3"]  # one per source date
    assert layer_query(_layer("uncertainty"), item) is None  # not a corrected method's


def test_uncertainty_shows_the_red_band_and_change_layers_their_stored_range():
    uncertainty = {"eo:bands": [{"name": b} for b in ("blue", "green", "red", "nir")],
                   "raster:bands": [{"nodata": 65535, "scale": 0.0001, "offset": 0.0}] * 4}
    item = _item("t1", extra_assets={"uncertainty": uncertainty, "dndvi": CHANGE})
    assert layer_query(_layer("uncertainty"), item) == {
        "assets": ["uncertainty|bidx=3"], "rescale": ["0,500"], "colormap_name": "reds"}
    assert layer_query(_layer("dndvi"), item) == {
        "assets": ["dndvi"], "rescale": ["-6000,6000"], "colormap_name": "rdylgn"}


def test_items_of_one_run_are_one_product_and_a_pair_needs_its_related_links():
    def post(tile: str, x: float, related: str) -> dict[str, Any]:
        return _item(tile, start="2024-07-02", role="post", event="2024-07-01", x=x,
                     related=related, extra_assets={"dndvi": CHANGE})

    pre_a = _item("a", end="2024-07-01", role="pre", event="2024-07-01", x=15.0,
                  related=post("a", 15.0, "")["id"])
    pre_b = _item("b", end="2024-07-01", role="pre", event="2024-07-01", x=15.02,
                  related=post("b", 15.02, "")["id"])
    post_a, post_b = post("a", 15.0, pre_a["id"]), post("b", 15.02, pre_b["id"])
    assert pre_a["id"].rsplit("-", 1)[1] != pre_b["id"].rsplit("-", 1)[1]  # the digests
    plain = _item("a")
    catalog = build_catalog("c", [pre_a, pre_b, post_a, post_b, plain])
    assert product_key(pre_a) == product_key(pre_b) != product_key(post_a)
    assert len(catalog["products"]) == 3
    by_key = {p["key"]: p for p in catalog["products"]}
    post = by_key[product_key(post_a)]
    assert len(post["items"]) == 2 and post["bbox"] == [15.0, 46.0, 15.04, 46.02]
    assert "dndvi" in post["layers"] and "dndvi" not in by_key[product_key(pre_a)]["layers"]
    assert post["label"].startswith("after 2024-07-01")
    [pair] = catalog["pairs"]
    assert (pair["pre"], pair["post"], pair["tiles"]) == (product_key(pre_a),
                                                          product_key(post_a), 2)
    # without the related links, or with another event, there is no pair
    unlinked = [{**it, "links": []} for it in (pre_a, post_a)]
    assert build_catalog("c", unlinked)["pairs"] == []
    other = {**pre_a, "properties": {**pre_a["properties"],
                                     "cloudfree:event": {"date": "2024-08-01"}}}
    assert build_catalog("c", [other, post_a])["pairs"] == []


def test_two_runs_of_one_tile_stay_two_products():
    """Same window and method, other settings (their digests differ): the newer item is
    the product, the older one a product of its own, never two items of one tile in one."""
    older = {**_item("a"), "id": "cloudfree-a-older"}
    newer = _item("a")
    newer["properties"] = {**newer["properties"], "updated": "2024-12-01T00:00:00Z"}
    other_tile = _item("b", x=15.02)
    catalog = build_catalog("c", [older, other_tile, newer])
    ids = [[it["id"] for it in p["items"]] for p in catalog["products"]]
    assert sorted(map(sorted, ids)) == sorted([sorted([newer["id"], other_tile["id"]]),
                                               [older["id"]]])
    labels = [p["label"] for p in catalog["products"]]
    assert any(label.endswith("(older run 2)") for label in labels), labels


def test_the_point_spec_lists_the_provenance_assets_with_their_classes():
    spec = point_spec(_item("t1", extra_assets={"dnbr": CHANGE}))
    assert [s["asset"] for s in spec] == ["source_date", "fill", "clear_count", "dnbr"]
    assert spec[1]["classes"] == {"0": "nodata", "1": "observed", "4": "generated"}
    assert spec[3]["bands"][0]["scale"] == 0.0001 and spec[3]["bands"][0]["nodata"] == -32768


def test_an_empty_collection_is_an_empty_catalog():
    catalog = build_catalog("c", [])
    assert catalog["products"] == [] and catalog["pairs"] == [] and catalog["bbox"] is None
    assert [layer["id"] for layer in catalog["layers"]] == list(LAYER_IDS)


def test_missing_javascript_says_to_run_the_set_up(tmp_path):
    with pytest.raises(ServiceError, match="make setup"):
        check_vendored(tmp_path)


def test_missing_chromium_says_to_run_the_set_up():
    with pytest.raises(ChromiumError, match="set-up.*apt-get install"):
        find_chromium(("no-such-chromium-binary",))


def test_a_port_in_use_is_one_clear_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["view", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"invalid --port {port}" in err and "already in use" in err, err
    assert err.count("\n") == 1


_FIRST_PARSES = """
import sys, threading
sys.setswitchinterval(1e-6)  # switch threads often: the race is short
from cloudfree.viewer._tiler import _to_pystac
item = {"type": "Feature", "stac_version": "0.9.0", "id": "x", "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [], "assets": {},
        "stac_extensions": []}
start, errors = threading.Barrier(32), []
def parse():
    start.wait()
    try:
        for _ in range(200):
            _to_pystac(dict(item), "http://127.0.0.1/x")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=parse) for _ in range(32)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:1])
"""


def test_the_first_item_parses_of_a_fresh_server_may_run_together():
    """The tile server's threads parse items as the map's first tiles arrive together;
    pystac finds its extension hooks on the first parse, and a parse beside it used to
    fail (HTTP 500). Unguarded, this script failed in 10 runs of 10 (4-24 of 32 threads);
    it runs in a fresh interpreter, where the hooks are not yet found."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FIRST_PARSES], capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.split()[0] == "0", done.stdout
