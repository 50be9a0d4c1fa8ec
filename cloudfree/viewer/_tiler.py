"""The viewer's tile server: titiler's multi-asset factory over the output collection's
items, reading their COGs from S3 with the read-only key.

Tiles and point values are asked for by item id (``?item=ID``), never by URL: the server
reads the items of its one collection from the readers' STAC API and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

import attr
import httpx
from fastapi import Query
from rio_tiler.errors import RioTilerError
from rio_tiler.io import STACReader
from titiler.core.factory import MultiBaseTilerFactory

#: How long an item's JSON is reused between tiles, s: long enough for the tiles of one
#: screen, short enough that a re-published item (new folder, new hrefs) shows soon.
ITEM_TTL_S = 30.0
#: url -> (monotonic expiry, item); pruned of expired entries on every insert
_items: dict[str, tuple[float, dict[str, Any]]] = {}
_items_lock = threading.Lock()


class ItemNotFoundError(RioTilerError):
    """The collection has no item with the id asked for (a 404, not a server error)."""


def fetch_item(url: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """The item at ``url`` of the readers' STAC API, cached for :data:`ITEM_TTL_S`."""
    now = time.monotonic()
    with _items_lock:
        cached = _items.get(url)
    if cached is not None and cached[0] > now:
        return cached[1]
    # trust_env=False: the API is on 127.0.0.1 (or the configured host), never via a proxy
    response = httpx.get(url, timeout=timeout_s, trust_env=False)
    if response.status_code == 404:
        raise ItemNotFoundError(f"no item at {url}")
    response.raise_for_status()
    item: dict[str, Any] = response.json()
    with _items_lock:
        for key in [k for k, (expiry, _) in _items.items() if expiry <= now]:
            del _items[key]
        _items[url] = (now + ITEM_TTL_S, item)
    return item


@attr.s
class CatalogItemReader(STACReader):
    """rio-tiler's STAC reader with the item fetched through :func:`fetch_item`'s cache
    (rio-tiler's own cache keeps an item for the life of the process)."""

    def __attrs_post_init__(self) -> None:
        if self.item is None and self.input is not None:
            self.item = _to_pystac(fetch_item(self.input), self.input)
        super().__attrs_post_init__()  # type: ignore[no-untyped-call]  # rio-tiler's is untyped


#: pystac finds its extensions' hooks on the first parse, and marks them found before it
#: has added them (pystac 1.15, ``RegisteredExtensionHooks._discover``): a parse in another
#: thread meanwhile iterates a dict that grows ("dictionary changed size during
#: iteration"), and the map's first tiles, requested together, answered HTTP 500.
_parse_lock = threading.Lock()


def _to_pystac(item: dict[str, Any], href: str) -> Any:
    """``item`` as a :class:`pystac.Item`, parsed one at a time (see :data:`_parse_lock`)."""
    import pystac

    with _parse_lock:
        return pystac.Item.from_dict(item, href=href)


def create_tiler(stac_url: str, collection: str, gdal_env: Mapping[str, Any]
                 ) -> MultiBaseTilerFactory:
    """The titiler factory (tiles, tilejson, point, info) of ``collection``'s items, each
    request reading with ``gdal_env`` (the S3 endpoint, the read-only key's session).

    Each request applies it in its own worker thread, where rasterio keeps GDAL options
    thread-local (only the main thread sets them process-wide), and rio-tiler passes them
    on to the threads that read the assets: concurrent requests never clear each other's."""
    options = dict(gdal_env)

    def environment() -> dict[str, Any]:
        return options

    base = f"{stac_url.rstrip('/')}/collections/{quote(collection, safe='')}/items"

    def item_url(
        item: Annotated[str, Query(description="id of an item of the viewer's collection")],
    ) -> str:
        return f"{base}/{quote(item, safe='')}"

    return MultiBaseTilerFactory(
        reader=CatalogItemReader,
        path_dependency=item_url,
        environment_dependency=environment,
        router_prefix="/tiles",
        add_preview=False,
        add_part=False,
        add_viewer=False,
    )
