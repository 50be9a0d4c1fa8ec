"""Event mode against the real stack: ``cloudfree mosaic --event-date`` publishes a linked
pre/post pair with change layers, a re-run is skipped, and a window with no scene after the
event is refused before anything is written (offline: ``tests/unit/test_event.py``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from cloudfree import cli
from cloudfree.event_tile import CHANGE_ASSETS
from cloudfree.methods import FILL_GENERATED, FILL_NODATA
from cloudfree.testing import settings_environment

#: Inside the session's demo catalog (two 128 px scenes): about 125 x 56 px over both.
BBOX = "15.031,46.041,15.047,46.046"
WINDOW = "2024-04-01/2024-10-28"
EVENT = "2024-07-01"
COLLECTION = "event-mode-test"


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def event_env(stack, demo_scenes):
    """The stack's settings with an output collection of this module's own."""
    settings = stack.model_copy(update={"output_collection": COLLECTION})
    with settings_environment(settings):
        yield settings


@pytest.fixture(scope="module")
def published(event_env):
    code, out, err = _cli("mosaic", "--bbox", BBOX, "--datetime", WINDOW, "--event-date", EVENT,
                          "--event-name", "test flood", "--json")
    assert code == 0, err[-3000:]
    return json.loads(out)


def _item(settings, item_id):
    """An item as a reader gets it from the readers' API."""
    response = httpx.get(f"{settings.stac_url}/collections/{COLLECTION}/items/{item_id}")
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def items(published, event_env):
    (pair,) = published["event"]["pairs"]
    return {role: _item(event_env, pair[role]) for role in ("post", "pre")}


def test_the_pair_is_published_post_first_and_linked(published, items, event_env):
    assert published["event"] == {"date": EVENT, "name": "test flood", "window": WINDOW,
                                  "pairs": published["event"]["pairs"]}
    tiles = published["tiles"]
    assert [t["status"] for t in tiles] == ["published", "published"]
    assert [t["item_id"] for t in tiles] == [items["post"]["id"], items["pre"]["id"]]
    post, pre = items["post"], items["pre"]
    assert post["properties"]["processing:datetime"] <= pre["properties"]["processing:datetime"]
    for item, other in ((post, pre), (pre, post)):
        props = item["properties"]
        assert props["cloudfree:event"] == {"date": EVENT, "name": "test flood"}
        related = [link["href"] for link in item["links"] if link["rel"] == "related"]
        assert related == [f"{event_env.stac_url}/collections/{COLLECTION}/items/{other['id']}"]
        assert httpx.get(related[0]).json()["id"] == other["id"]  # the link resolves
    assert post["properties"]["cloudfree:event_role"] == "post"
    assert pre["properties"]["cloudfree:event_role"] == "pre"
    assert post["properties"]["start_datetime"].startswith("2024-07-02")
    assert pre["properties"]["end_datetime"].startswith(EVENT)


def test_the_post_item_has_valid_change_layers(items, event_env):
    post = items["post"]
    assert set(CHANGE_ASSETS) <= set(post["assets"])
    assert not set(CHANGE_ASSETS) & set(items["pre"]["assets"])
    for key in ("dnbr", "dndwi", "dndvi"):
        band = post["assets"][key]["raster:bands"][0]
        assert (band["data_type"], band["scale"], band["nodata"]) == ("int16", 0.0001, -32768)
    names = [c["name"] for c in post["assets"]["dnbr_severity"]["classification:classes"]]
    assert names[0] == "enhanced_regrowth_high" and names[-1] == "high_severity"
    with rasterio.Env(**event_env.gdal_env()):
        for key in CHANGE_ASSETS:
            assert cog_validate(post["assets"][key]["href"], quiet=True)[0], key
        with rasterio.open(post["assets"]["dnbr"]["href"]) as src:
            dnbr = src.read(1, masked=True) * src.scales[0]
        with rasterio.open(post["assets"]["change_valid"]["href"]) as src:
            valid = src.read(1)
    assert valid.any() and set(np.unique(valid)) <= {0, 1}
    assert dnbr.count() > 0 and float(np.abs(dnbr).max()) <= 2.0
    assert post["properties"]["cloudfree:change_valid_pct"] == pytest.approx(
        100 * valid.mean(), abs=1e-2)


def test_source_dates_lie_on_their_side_of_the_event(items, event_env):
    day = (dt.date.fromisoformat(EVENT) - dt.date(1970, 1, 1)).days
    with rasterio.Env(**event_env.gdal_env()):
        for role, item in items.items():
            with rasterio.open(item["assets"]["source_date"]["href"]) as src:
                source = src.read(1).astype(int)
            with rasterio.open(item["assets"]["fill"]["href"]) as src:
                fill = src.read(1)
            real = (fill != FILL_NODATA) & (fill != FILL_GENERATED)
            assert real.any(), role
            if role == "pre":
                assert (source[real] <= day).all()
            else:
                assert (source[real] > day).all()


def test_a_rerun_replaces_nothing(published, event_env):
    code, out, err = _cli("mosaic", "--bbox", BBOX, "--datetime", WINDOW, "--event-date", EVENT,
                          "--event-name", "test flood", "--json")
    assert code == 0, err[-3000:]
    again = json.loads(out)
    assert [t["status"] for t in again["tiles"]] == ["skipped", "skipped"]
    assert again["event"]["pairs"] == published["event"]["pairs"]


@contextlib.contextmanager
def _prefect_console() -> Iterator[io.StringIO]:
    """What Prefect's own console handler prints meanwhile (the flow run's log, on a
    user's terminal), into a buffer."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert handlers, "Prefect's console handler is not configured"
    buffer = io.StringIO()
    previous = [h.console.file for h in handlers]  # it prints through a rich Console
    for handler in handlers:
        handler.console.file = buffer
    try:
        yield buffer
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.console.file = stream


def test_no_scene_after_the_event_is_refused_before_any_write(published, event_env):
    """The CLI's one error line, and Prefect's log of the failed flow run on the terminal
    holds no traceback either."""
    before = httpx.get(f"{event_env.stac_url}/collections/{COLLECTION}/items").json()
    with _prefect_console() as console:
        code, out, err = _cli("mosaic", "--bbox", BBOX, "--datetime", "2024-10-01/2024-11-30",
                              "--event-date", "2024-10-29")
    assert code == 2 and out == "", err[-3000:]
    assert "Encountered exception during execution: NoClearObservationError" in \
        console.getvalue()
    assert "Traceback" not in console.getvalue() and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("cloudfree: error: no clear observation after the event date "
                           "2024-10-29")
    assert "no scene after the event; the last is of 2024-10-28" in line
    assert "nothing of the event pair was published" in line
    after = httpx.get(f"{event_env.stac_url}/collections/{COLLECTION}/items").json()
    assert [f["id"] for f in after["features"]] == [f["id"] for f in before["features"]]
