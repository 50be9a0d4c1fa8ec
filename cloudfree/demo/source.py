"""The demo catalog as a source to read: the region its scenes cover and, for training,
its default region and season."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudfree._stac_api import get_json
from cloudfree.demo.layout import SEASON
from cloudfree.errors import InvalidParameterError
from cloudfree.grid import Bbox, parse_bbox, parse_date_window, snap_bounds, transform_bbox
from cloudfree.search import check_collection, open_client, search_scenes


def demo_region(
    items: Sequence[dict[str, Any]], *, tile_size_px: int, resolution_m: float = 10.0
) -> tuple[int, Bbox, str]:
    """(epsg, lat/lon bbox, window) of the largest block of whole grid tiles inside the
    demo scenes' footprint, so every demo tile is fully covered by data."""
    properties = items[0]["properties"]
    epsg = int(properties.get("proj:epsg") or properties["proj:code"].split(":")[1])
    boxes = [it["properties"]["proj:bbox"] for it in items]
    minx, miny = min(b[0] for b in boxes), min(b[1] for b in boxes)
    maxx, maxy = max(b[2] for b in boxes), max(b[3] for b in boxes)
    step = tile_size_px * resolution_m
    sx0, sy0, sx1, sy1 = snap_bounds((minx, miny, maxx, maxy), step)
    # Snap inward, then keep a quarter tile clear of every edge so that the lat/lon round
    # trip cannot pull in a neighbouring, partly empty tile.
    inner = (
        sx0 + step if sx0 < minx else sx0,
        sy0 + step if sy0 < miny else sy0,
        sx1 - step if sx1 > maxx else sx1,
        sy1 - step if sy1 > maxy else sy1,
    )
    margin = step / 4
    shrunk = (inner[0] + margin, inner[1] + margin, inner[2] - margin, inner[3] - margin)
    dates = sorted(it["properties"]["datetime"][:10] for it in items)
    return epsg, transform_bbox(shrunk, epsg, 4326), f"{dates[0]}/{dates[-1]}"


def demo_defaults(
    stac_url: str,
    *,
    collection: str,
    bbox: Bbox | list[float] | str | None,
    datetime: str | None,
    size_px: int,
    resolution_m: float = 10.0,
) -> tuple[Bbox, str]:
    """The bbox and date window to train on: the ones given, else the demo catalog's own.

    Only the cloudfree demo collection has defaults (its season, and the region
    :func:`demo_region` finds inside its scenes); any other source must say where and
    when, since searching a whole real archive is never meant. Fits
    :class:`cloudfree.training.stac_data.SourceDefaults`.

    Raises:
        InvalidParameterError: one is missing and ``collection`` is not a demo catalog.
    """
    if bbox is not None and datetime is not None:
        return parse_bbox(bbox).bbox, datetime
    check_collection(open_client(stac_url), stac_url, collection)
    document = get_json(f"{stac_url.rstrip('/')}/collections/{collection}") or {}
    if "cloudfree:demo" not in document:
        raise InvalidParameterError(
            "bbox" if bbox is None else "datetime",
            None,
            f"collection {collection!r} at {stac_url} is not the cloudfree demo catalog, so it "
            "has no default region and dates; give both a bbox and a datetime",
        )
    window = datetime or f"{SEASON[0]}/{SEASON[1]}"
    if bbox is not None:
        return parse_bbox(bbox).bbox, window
    extent = document["extent"]["spatial"]["bbox"][0]
    scenes = search_scenes(
        stac_url, collection=collection, aoi=parse_bbox(extent), window=parse_date_window(window)
    )
    _, region, scene_window = demo_region(scenes, tile_size_px=size_px, resolution_m=resolution_m)
    return region, datetime or scene_window


if TYPE_CHECKING:  # mypy checks that demo_defaults fits where training takes defaults
    from cloudfree.training.stac_data import SourceDefaults

    _DEMO_DEFAULTS: SourceDefaults = demo_defaults
