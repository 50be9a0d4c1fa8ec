"""The viewer in a real browser: `cloudfree view` against the session stack, loaded in
headless Chromium (Debian's chromium, driven over the DevTools protocol by
:mod:`cloudfree.viewer.browser`), which waits for the tiles, takes screenshots and clicks.

One event pair (one demo tile, median, event 2024-07-01) is published through event mode
(:func:`cloudfree.event_tile.event_tile`) into a collection of this module's own; its
post product is the mosaic of the single-product checks. One page load serves every
test, in order: mosaic over background, false colour, the fill layer, a pixel click
against the COG, the before/after swipe, a change layer.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform

from cloudfree.publish import FILL_COLOURS, published_item
from cloudfree.settings import Settings
from cloudfree.storage import s3_filesystem
from cloudfree.viewer.browser import Chromium, ChromiumError

COLLECTION = "cloudfree-viewer-test"
#: red/green/blue/nir for true and false colour; swir22 for dNBR
BANDS = ("blue", "green", "red", "nir", "swir22")
TILE_PX = 128
EVENT_DATE = "2024-07-01"
#: The page's background colour (viewer.js BACKGROUND), where no mosaic is.
BACKGROUND = (0x1B, 0x1F, 0x27)
WIDTH, HEIGHT = 900, 560


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collection(env: Settings) -> str:
    from cloudfree.publish import ensure_collection

    ensure_collection(env.stac_publish_url, COLLECTION, bands=BANDS, token=env.stac_token())
    return COLLECTION


#: Where the running `cloudfree view` writes its output (its errors: a tile's HTTP 500 is
#: logged there with its cause), so that a failed check can show it.
_VIEWER_LOG: list[Path] = []


def _viewer_log_tail(lines: int = 60) -> str:
    if not _VIEWER_LOG or not _VIEWER_LOG[-1].exists():
        return ""
    tail = _VIEWER_LOG[-1].read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(tail)


@pytest.fixture(scope="module")
def viewer_process(env: Settings, collection: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`cloudfree view` started in a subprocess, as a user starts it, and its URL; it
    starts up (imports titiler) while the pair is published. Its output goes to a file
    (a pipe nobody reads would fill up and block it)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("viewer") / "view.log"
    _VIEWER_LOG.append(log)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cloudfree.cli", "view", "--port", str(port),
             "--collection", collection],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield process, f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def pair(env: Settings, demo_scenes: list[dict], collection: str) -> dict[str, dict[str, Any]]:
    """The published pre and post items of one demo tile, as the readers' API serves them."""
    from cloudfree import catalogs
    from cloudfree.demo import demo_region
    from cloudfree.errors import CloudFreeWarning
    from cloudfree.event import parse_event
    from cloudfree.event_tile import event_tile
    from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window
    from cloudfree.tile import MosaicParams

    with warnings.catch_warnings():  # the demo catalog's host is no known catalog's
        warnings.simplefilter("ignore", CloudFreeWarning)
        items = catalogs.prepare_items(demo_scenes, BANDS)
    epsg, bbox, window = demo_region(demo_scenes, tile_size_px=TILE_PX)
    tile = grid_tiles(parse_bbox(list(bbox)), resolution_m=10, tile_size_px=TILE_PX,
                      epsg=epsg)[0]
    outcomes = event_tile(
        items, tile, parse_date_window(window), MosaicParams(bands=BANDS),
        parse_event(EVENT_DATE, "viewer test"), public_api_url=env.stac_url,
        output_collection=collection, api_url=env.stac_publish_url,
        source_api_url=env.stac_url, source_collection=env.source_collection,
        output_root=f"s3://{env.bucket}/{collection}", fs=s3_filesystem(env.storage_options()),
        gdal_env=env.gdal_env(), api_token=env.stac_token())
    found = {}
    for outcome in outcomes:
        item = published_item(env.stac_url, collection, outcome.item_id)
        assert item is not None, outcome.item_id
        found[item["properties"]["cloudfree:event_role"]] = item
    assert set(found) == {"pre", "post"}
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def viewer(viewer_process: tuple[subprocess.Popen[bytes], str]) -> str:
    """The viewer's URL, once it answers."""
    process, url = viewer_process
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"cloudfree view exited with {process.returncode}: {_viewer_log_tail()}")
        try:
            if httpx.get(f"{url}api/health", timeout=2, trust_env=False).is_success:
                return url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "cloudfree view did not answer in 60 s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    """Headless Chromium: never skipped, it fails saying to run the set-up when Chromium
    is missing."""
    try:
        chromium = Chromium(width=WIDTH, height=HEIGHT, timeout_s=60)
        chromium.start()
    except ChromiumError as exc:
        pytest.fail(str(exc))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def page(viewer_process: Any, browser: Chromium, pair: dict[str, dict[str, Any]],
         viewer: str) -> Chromium:
    """The viewer showing the post product in true colour, all its tiles drawn (the
    viewer and Chromium start while the pair is published)."""
    post_key = _catalog(viewer)["pair"]["post"]
    browser.navigate(f"{viewer}#layer=truecolor&product={post_key}")
    browser.evaluate("cloudfreeViewer.ready")
    _idle(browser)
    return browser


# --- helpers ----------------------------------------------------------------------------


def _catalog(viewer: str) -> dict[str, Any]:
    catalog = httpx.get(f"{viewer}api/catalog", timeout=30, trust_env=False).json()
    assert len(catalog["pairs"]) == 1, catalog["pairs"]
    return {**catalog, "pair": catalog["pairs"][0]}


def _idle(b: Chromium) -> None:
    """Wait for every tile and pixel request, then check the page reported no error."""
    b.evaluate("cloudfreeViewer.idle()", timeout_s=90)
    errors = b.evaluate("cloudfreeViewer.state.errors")
    assert errors == [] and b.console == [], (errors, b.console, _viewer_log_tail())


def _shot(b: Chromium) -> np.ndarray:
    png = b.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _click_element(b: Chromium, selector: str) -> None:
    """A real mouse click in the middle of the element ``selector`` (scrolled to)."""
    x, y = b.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); "
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                      "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    b.click(x, y)


def _choose_layer(b: Chromium, layer: str) -> None:
    _click_element(b, f'#layers input[value="{layer}"]')
    assert b.evaluate("cloudfreeViewer.state.layer") == layer
    _idle(b)


def _screen(b: Chromium, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates (CSS px) of a lon/lat on the main map."""
    x, y = b.evaluate(f"(() => {{ const p = cloudfreeViewer.map.project([{lon}, {lat}]); "
                      "const r = document.getElementById('maps').getBoundingClientRect(); "
                      "return [p.x + r.left, p.y + r.top]; })()")
    return float(x), float(y)


@contextmanager
def _cog(env: Settings, item: dict[str, Any], asset: str) -> Iterator[Any]:
    """The asset's COG opened from S3 with the readers' read-only key."""
    from cloudfree.localstack import readonly_s3_credentials
    from cloudfree.storage import gdal_s3_env

    key, secret = readonly_s3_credentials(env)
    with rasterio.Env(**gdal_s3_env(env.s3_url, key, secret), GDAL_PAM_ENABLED="NO"), \
            rasterio.open(item["assets"][asset]["href"]) as src:
        yield src


def _cog_value(env: Settings, item: dict[str, Any], asset: str, lon: float, lat: float
               ) -> float:
    """The COG's value at lon/lat (the pixel containing it)."""
    with _cog(env, item, asset) as src:
        (x,), (y,) = warp_transform("EPSG:4326", src.crs, [lon], [lat])
        row, col = src.index(x, y)
        return float(src.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])


def _mosaic_rect(b: Chromium, env: Settings, item: dict[str, Any]) -> tuple[int, int, int, int]:
    """The screen rectangle (x0, y0, x1, y1) the item's COG covers."""
    with _cog(env, item, "red") as src:
        left, bottom, right, top = src.bounds
        lons, lats = warp_transform(src.crs, "EPSG:4326", [left, right, right, left],
                                    [top, top, bottom, bottom])
    points = [_screen(b, lon, lat) for lon, lat in zip(lons, lats, strict=True)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))


def _inner(rect: tuple[int, int, int, int], shrink: float = 0.15) -> tuple[slice, slice]:
    x0, y0, x1, y1 = rect
    dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
    return slice(int(y0 + dy), int(y1 - dy)), slice(int(x0 + dx), int(x1 - dx))


def _is_background(pixels: np.ndarray) -> np.ndarray:
    return np.all(np.abs(pixels - np.array(BACKGROUND)) <= 1, axis=-1)


def _date(days: float) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(days))).isoformat()


# --- the tests --------------------------------------------------------------------------


def test_the_page_and_its_scripts_come_from_the_viewer_alone(page: Chromium, viewer: str):
    """Offline: every resource the page loaded (MapLibre, the catalog, the tiles) came
    from the viewer's own origin; no CDN."""
    urls = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.endswith("/static/vendor/maplibre-gl.js") for u in urls), urls
    assert any("/tiles/tiles/WebMercatorQuad/" in u for u in urls), urls
    assert all(u.startswith(viewer) for u in urls), [u for u in urls if not u.startswith(viewer)]


def test_the_map_shows_the_mosaic_where_it_is_and_background_elsewhere(page, env, pair):
    image = _shot(page)
    x0, y0, x1, y1 = rect = _mosaic_rect(page, env, pair["post"])
    map_left = int(page.evaluate("document.getElementById('maps').getBoundingClientRect().left"))
    assert map_left + 40 < x0 < x1 < WIDTH - 40, (map_left, rect)  # background on both sides
    inside = image[_inner(rect)]
    assert _is_background(inside).mean() < 0.01
    assert inside.std() > 5  # an image, not a flat fill
    rows = slice(int(y0 + (y1 - y0) * 0.2), int(y1 - (y1 - y0) * 0.2))
    for columns in (slice(map_left + 5, x0 - 8), slice(x1 + 8, WIDTH - 5)):
        assert _is_background(image[rows, columns]).all(), columns


def test_false_colour_shows_vegetation_red(page, env, pair):
    true_colour = _shot(page)[_inner(_mosaic_rect(page, env, pair["post"]))]
    _choose_layer(page, "falsecolor")
    false_colour = _shot(page)[_inner(_mosaic_rect(page, env, pair["post"]))]
    # NIR on red: the demo's fields and meadows turn red
    assert false_colour[..., 0].mean() > false_colour[..., 1].mean() + 10
    assert true_colour[..., 1].mean() > true_colour[..., 0].mean() - 10
    assert np.abs(false_colour - true_colour).mean() > 10


def test_the_fill_layer_draws_the_fill_classes_colours(page, env, pair):
    _choose_layer(page, "fill")
    inside = _shot(page)[_inner(_mosaic_rect(page, env, pair["post"]))]
    colours = np.array([c for name, c in FILL_COLOURS.items() if name != "nodata"])
    nearest = np.abs(inside[:, :, None, :] - colours[None, None]).max(axis=-1).min(axis=-1)
    assert (nearest <= 2).mean() > 0.99  # every drawn pixel is a fill class's colour
    legend = page.evaluate("document.getElementById('legend').textContent")
    assert "observed" in legend and "generated" in legend, legend


def test_a_pixel_click_reports_the_source_date_the_cog_holds(page, env, pair):
    _choose_layer(page, "truecolor")
    post = pair["post"]
    with _cog(env, post, "source_date") as src:  # a pixel's middle, a third into the tile
        x, y = src.xy(src.height // 3, src.width // 3)
        (lon,), (lat,) = warp_transform(src.crs, "EPSG:4326", [x], [y])
    page.click(*_screen(page, lon, lat))
    _idle(page)
    shown = page.evaluate("""(() => {
        const box = document.getElementById('pixel');
        const side = box.querySelector('[data-role="main"]');
        return {lon: Number(box.dataset.lon), lat: Number(box.dataset.lat),
                item: side.dataset.item,
                date: side.querySelector('[data-field="source-date"]').textContent,
                fill: side.querySelector('[data-field="fill"]').textContent}; })()""")
    assert shown["item"] == post["id"]
    assert abs(shown["lon"] - lon) < 5e-5 and abs(shown["lat"] - lat) < 5e-5, (shown, lon, lat)
    days = _cog_value(env, post, "source_date", shown["lon"], shown["lat"])
    assert days > 0
    assert shown["date"] == _date(days)
    assert shown["date"] > EVENT_DATE  # post: observed after the event
    fill = int(_cog_value(env, post, "fill", shown["lon"], shown["lat"]))
    classes = {c["value"]: c["name"] for c in post["assets"]["fill"]["classification:classes"]}
    assert shown["fill"] == classes[fill]


def _drag_swipe_to(b: Chromium, fraction: float) -> float:
    """Drag the swipe's grip (real mouse events) to ``fraction`` of the map's width;
    returns the handle's x."""
    start = b.evaluate("(() => { const r = document.querySelector('#swipe .grip')"
                       ".getBoundingClientRect(); return [r.x + r.width / 2, "
                       "r.y + r.height / 2]; })()")
    left, width = b.evaluate("(() => { const r = document.getElementById('maps')"
                             ".getBoundingClientRect(); return [r.left, r.width]; })()")
    end = (left + fraction * width, start[1])
    b.drag((start[0], start[1]), end)
    _idle(b)
    assert abs(b.evaluate("cloudfreeViewer.state.swipe") - fraction) < 0.02
    return float(end[0])


def test_the_swipe_shows_both_items_of_the_pair(page, env, pair, viewer):
    catalog = _catalog(viewer)
    _click_element(page, f'#pairs button[data-pair="{catalog["pair"]["key"]}"]')
    _idle(page)
    assert page.evaluate("cloudfreeViewer.state.pair") == catalog["pair"]["key"]
    rows, columns = _inner(_mosaic_rect(page, env, pair["post"]), shrink=0.1)
    _drag_swipe_to(page, 0.98)
    before = _shot(page)[rows, columns]  # all but a sliver: the pre product
    _drag_swipe_to(page, 0.02)
    after = _shot(page)[rows, columns]  # the post product
    middle = _drag_swipe_to(page, 0.5)
    swiped = _shot(page)[rows, columns]
    split = int(middle) - columns.start
    left, right = slice(0, split - 14), slice(split + 14, None)  # clear of the handle's grip
    assert np.abs(before[:, right] - after[:, right]).mean() > 5  # two different mosaics
    assert np.abs(swiped[:, left] - before[:, left]).mean() < 1  # left of it: before
    assert np.abs(swiped[:, right] - after[:, right]).mean() < 1  # right of it: after
    labels = page.evaluate("[...document.querySelectorAll('.side-label')].map(e => e.textContent)")
    assert labels == ["before: True colour", "after: True colour"], labels


def test_a_click_in_the_swipe_reports_both_sides_and_the_change(page, env, pair):
    _choose_layer(page, "dndvi")
    assert page.evaluate("document.getElementById('label-after').textContent") == "after: dNDVI"
    lon = (pair["post"]["bbox"][0] * 2 + pair["post"]["bbox"][2]) / 3
    lat = (pair["post"]["bbox"][1] + pair["post"]["bbox"][3]) / 2
    page.click(*_screen(page, lon, lat))
    _idle(page)
    pixel = page.evaluate("cloudfreeViewer.state.pixel")
    sides = pixel["sides"]
    assert sides["before"]["item"] == pair["pre"]["id"]
    assert sides["after"]["item"] == pair["post"]["id"]
    for role, item in (("before", pair["pre"]), ("after", pair["post"])):
        days = _cog_value(env, item, "source_date", pixel["lon"], pixel["lat"])
        assert sides[role]["source_date"] == _date(days), role
    assert sides["before"]["source_date"] <= EVENT_DATE < sides["after"]["source_date"]
    stored = _cog_value(env, pair["post"], "dndvi", pixel["lon"], pixel["lat"])
    scale = pair["post"]["assets"]["dndvi"]["raster:bands"][0]["scale"]
    assert sides["after"]["dndvi"] == pytest.approx(stored * scale, abs=1e-6)
    text = page.evaluate("document.getElementById('pixel').textContent")
    assert sides["after"]["source_date"] in text and sides["before"]["source_date"] in text


@pytest.mark.parametrize(("args", "message"), [
    (["--collection", "no-such-collection"], "unknown collection 'no-such-collection'"),
    (["--s3-credentials", "/nonexistent/ro.json"], "read-only S3 credentials"),
])
def test_bad_input_is_one_clear_line(env, collection, capsys, args, message):
    """Refused before serving anything: one line naming the input, exit code 2."""
    from cloudfree import cli

    assert cli.main(["view", "--port", str(_free_port()), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cloudfree: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    if "collection" in message:
        assert COLLECTION in err  # the collections that exist are listed
