"""Minimal STAC API Transactions client (create-or-update of collections and items)."""

from __future__ import annotations

from typing import Any

import httpx

from cloudfree.errors import PublishError, StacApiUnreachableError


def _request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return httpx.request(method, url, timeout=30.0, **kwargs)
    except httpx.TransportError as exc:
        raise StacApiUnreachableError(url, exc) from exc


def _check(response: httpx.Response, target: str) -> None:
    if response.status_code >= 400:
        raise PublishError(target, f"HTTP {response.status_code}: {response.text[:500]}")


def get_json(url: str) -> dict[str, Any] | None:
    """GET a JSON document; ``None`` on 404."""
    response = _request("GET", url)
    if response.status_code == 404:
        return None
    _check(response, url)
    document: dict[str, Any] = response.json()  # STAC endpoints answer JSON objects
    return document


def upsert_collection(api_url: str, collection: dict[str, Any]) -> None:
    """Create the collection, or replace it when it already exists."""
    api_url = api_url.rstrip("/")
    cid = collection["id"]
    response = _request("POST", f"{api_url}/collections", json=collection)
    if response.status_code == 409:
        response = _request("PUT", f"{api_url}/collections/{cid}", json=collection)
    _check(response, f"collection {cid}")


def upsert_item(api_url: str, item: dict[str, Any]) -> None:
    """Create the item in its collection, or replace it when it already exists."""
    api_url = api_url.rstrip("/")
    cid, iid = item["collection"], item["id"]
    response = _request("POST", f"{api_url}/collections/{cid}/items", json=item)
    if response.status_code == 409:
        response = _request("PUT", f"{api_url}/collections/{cid}/items/{iid}", json=item)
    _check(response, f"item {cid}/{iid}")


def upsert_items(api_url: str, collection_id: str, items: list[dict[str, Any]]) -> None:
    """Bulk create-or-update (one request) through the bulk transactions endpoint,
    falling back to one request per item when the API lacks it."""
    api_url = api_url.rstrip("/")
    body = {"items": {item["id"]: item for item in items}, "method": "upsert"}
    response = _request("POST", f"{api_url}/collections/{collection_id}/bulk_items", json=body)
    if response.status_code in (404, 405):
        for item in items:
            upsert_item(api_url, item)
        return
    _check(response, f"{len(items)} items in {collection_id}")


def delete_item(api_url: str, collection_id: str, item_id: str) -> None:
    response = _request("DELETE", f"{api_url.rstrip('/')}/collections/{collection_id}/items/{item_id}")
    if response.status_code != 404:
        _check(response, f"item {collection_id}/{item_id}")
