"""Scene search: pystac-client queries with AOI, date window and cloud-cover filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from pystac_client import Client
from pystac_client.exceptions import APIError

from cloudfree.errors import NoScenesFoundError, StacApiUnreachableError, UnknownCollectionError
from cloudfree.grid import AOI, DateWindow


def open_client(url: str, *, timeout_s: float = 30.0) -> Client:
    """Open a STAC API, turning connection failures into a clear error."""
    try:
        return Client.open(url, timeout=timeout_s)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    except APIError as exc:
        raise StacApiUnreachableError(url, f"not a STAC API ({exc})") from exc


def check_collection(client: Client, url: str, collection: str) -> None:
    """Raise UnknownCollectionError, listing what the API does have, if ``collection``
    is missing."""
    try:
        found = client.get_collection(collection)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    if found is None:
        raise UnknownCollectionError(collection, url, [c.id for c in client.get_collections()])


def search_scenes(
    url: str,
    *,
    collection: str,
    aoi: AOI,
    window: DateWindow,
    max_cloud_pct: float | None = None,
    limit: int = 100,
    max_items: int | None = 2000,
    patch_url: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """Search scenes and return them as plain item dicts, oldest first.

    Args:
        url: STAC API root.
        collection: collection id, checked to exist first.
        aoi: the search geometry (its GeoJSON when given, else its bbox).
        window: the date window.
        max_cloud_pct: keep scenes with ``eo:cloud_cover`` at most this.
        limit: page size.
        max_items: stop after this many items.
        patch_url: rewrites every asset href (for signing or mirrors).

    Raises:
        StacApiUnreachableError, UnknownCollectionError, NoScenesFoundError.
    """
    client = open_client(url)
    check_collection(client, url, collection)
    params: dict[str, Any] = {
        "collections": [collection],
        "datetime": window.stac,
        "limit": limit,
        "max_items": max_items,
    }
    if aoi.geometry is not None:
        params["intersects"] = aoi.geometry
    else:
        params["bbox"] = list(aoi.bbox)
    if max_cloud_pct is not None:
        params["filter"] = {
            "op": "<=",
            "args": [{"property": "eo:cloud_cover"}, float(max_cloud_pct)],
        }
        params["filter_lang"] = "cql2-json"
    try:
        items = list(client.search(**params).items_as_dicts())
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    if not items:
        raise NoScenesFoundError(list(aoi.bbox), window.stac, collection, max_cloud_pct)
    if patch_url is not None:
        for item in items:
            for asset in item.get("assets", {}).values():
                asset["href"] = patch_url(asset["href"])
    items.sort(key=lambda it: (it["properties"]["datetime"], it["id"]))
    return items
