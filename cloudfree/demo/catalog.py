"""The demo catalog: the synthetic scenes' COGs written to S3 and their collection and items
loaded into a STAC API, idempotently."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cloudfree._stac_api import delete_item, get_json, upsert_collection, upsert_items
from cloudfree.cog import put
from cloudfree.demo.items import build_collection, item_id
from cloudfree.demo.layout import COLUMN_LETTERS, DEFAULT_SIZE_PX, ROW_LETTERS, demo_plan
from cloudfree.demo.scenes import generate_scenes
from cloudfree.errors import InvalidParameterError, StacApiUnreachableError
from cloudfree.storage import check_bucket, s3_filesystem

#: Bump when the generator changes, so existing demo catalogs are rebuilt.
GENERATOR_VERSION = 1


def _params(**kwargs: Any) -> tuple[dict[str, Any], str]:
    parameters = {"generator_version": GENERATOR_VERSION, **kwargs}
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
    return parameters, digest


def _existing_items(api_url: str, collection_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"{api_url}/collections/{collection_id}/items?limit=1000"
    while url:
        page = get_json(url) or {}
        found |= {it["id"]: it for it in page.get("features", [])}
        url = next((ln["href"] for ln in page.get("links", []) if ln.get("rel") == "next"), None)
    return found


def build_demo_catalog(
    *,
    stac_api_url: str,
    stac_token: str | None = None,
    storage_options: dict[str, Any],
    bucket: str,
    collection_id: str = "sentinel-2-l2a",
    n_tiles: int = 2,
    n_dates: int = 10,
    size_px: int = DEFAULT_SIZE_PX,
    seed: int = 0,
    max_workers: int = 2,
    force: bool = False,
) -> list[str]:
    """Write the synthetic demo collection: COGs to ``s3://{bucket}/{collection_id}/``,
    then the collection and its items to the STAC API. Returns the item ids.

    ``stac_api_url`` is an API that takes writes (the local stack's writer,
    ``Settings.stac_publish_url``), with its bearer token ``stac_token``.

    Idempotent: when the collection already holds every item generated with the same
    parameters (hash in the collection and the items) and every COG exists, nothing is
    written. ``force`` rebuilds anyway. Items of an older demo layout are deleted.

    Raises:
        StorageUnreachableError: S3 cannot be reached or refuses the credentials.
        StacApiUnreachableError: the STAC API does not answer.
        InvalidParameterError: a size or count out of range.
    """
    if not 1 <= n_tiles <= len(COLUMN_LETTERS) * len(ROW_LETTERS):
        raise InvalidParameterError("n_tiles", n_tiles, "give 1 to 16 tiles")
    if not 1 <= n_dates <= 40:
        raise InvalidParameterError("n_dates", n_dates, "give 1 to 40 dates")
    if size_px < 32 or size_px % 2:
        raise InvalidParameterError("size_px", size_px, "give an even tile size >= 32 px")
    api_url = stac_api_url.rstrip("/")
    fs = s3_filesystem(storage_options)
    check_bucket(fs, bucket, create=True)
    if get_json(f"{api_url}/") is None:
        raise StacApiUnreachableError(api_url, "no STAC API landing page (HTTP 404)")

    parameters, params_hash = _params(
        collection_id=collection_id,
        bucket=bucket,
        n_tiles=n_tiles,
        n_dates=n_dates,
        size_px=size_px,
        seed=seed,
    )
    tiles, plan = demo_plan(n_tiles=n_tiles, n_dates=n_dates, size_px=size_px, seed=seed)
    ids = [item_id(tile, acq) for tile in tiles for acq in plan]
    collection = get_json(f"{api_url}/collections/{collection_id}")
    existing = _existing_items(api_url, collection_id) if collection else {}
    prefix = f"{bucket}/{collection_id}"
    if not force and collection and _is_current(collection, existing, ids, params_hash):
        stored = set(fs.find(prefix))
        hrefs = {
            a["href"].removeprefix("s3://")
            for it in existing.values()
            for a in it["assets"].values()
        }
        if hrefs <= stored:
            return ids

    base_url = f"s3://{prefix}"
    items = generate_scenes(
        base_url=base_url,
        sink=lambda data, url: put(data, url, fs=fs),
        collection_id=collection_id,
        n_tiles=n_tiles,
        n_dates=n_dates,
        size_px=size_px,
        seed=seed,
        params_hash=params_hash,
        max_workers=max_workers,
    )
    upsert_collection(
        api_url,
        build_collection(collection_id, items, parameters=parameters, params_hash=params_hash),
        token=stac_token,
    )
    upsert_items(api_url, collection_id, items, token=stac_token)
    if collection and "cloudfree:demo" in collection:  # only ever prune our own demo
        _prune(api_url, collection_id, existing=existing, items=items, fs=fs, bucket=bucket,
               token=stac_token)
    return ids


def _prune(
    api_url: str,
    collection_id: str,
    *,
    existing: dict[str, dict[str, Any]],
    items: list[dict[str, Any]],
    fs: Any,
    bucket: str,
    token: str | None,
) -> None:
    """Delete the ``existing`` items that are not among ``items``, then their COGs."""
    stale = sorted(set(existing) - {it["id"] for it in items})
    for stale_id in stale:  # items first: no item may point at a deleted file
        delete_item(api_url, collection_id, stale_id, token=token)
    kept = {a["href"] for it in items for a in it["assets"].values()}
    orphans = [
        a["href"].removeprefix("s3://")
        for stale_id in stale
        for a in existing[stale_id]["assets"].values()
        if a["href"].startswith(f"s3://{bucket}/") and a["href"] not in kept
    ]
    if orphans:
        fs.rm(orphans)


def _is_current(
    collection: dict[str, Any],
    existing: dict[str, dict[str, Any]],
    ids: list[str],
    params_hash: str,
) -> bool:
    """The collection and exactly the planned items carry this parameter hash."""
    if collection.get("cloudfree:demo", {}).get("params_hash") != params_hash:
        return False
    return set(existing) == set(ids) and all(
        existing[i]["properties"].get("cloudfree:demo_params_hash") == params_hash for i in ids
    )
