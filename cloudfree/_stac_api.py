"""Minimal STAC API client: reads, and Transactions writes (create-or-update of collections
and items) with a bearer token.

Every request is retried on what passes: HTTP 5xx (but 501/505), 429, and transport errors
or timeouts, with exponential backoff, honouring ``Retry-After``. A retried write is safe:
an item or collection POST that the server committed before the connection broke answers
409 on the retry, and then goes out as a PUT; a PUT, a bulk upsert and a DELETE (404 once
gone) are idempotent. Any other 4xx fails at once.

The token is sent only in the ``Authorization`` header and never logged or put in an error.
The retry defaults come from ``CLOUDFREE_HTTP_RETRIES``, ``CLOUDFREE_HTTP_BACKOFF_S`` and
``CLOUDFREE_MAX_RETRY_AFTER_S`` when set (so Dask worker processes, which inherit the
environment, behave like the flow), else 4, 0.5 s and 60 s; :func:`configure` sets them
from the flows' and the CLI's settings.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from cloudfree.errors import PublishError, StacApiUnreachableError

log = logging.getLogger(__name__)

#: Statuses worth another try: the server is overloaded, restarting or behind a failing proxy.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507, 508, 520, 521, 522, 523, 524, 529})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request is retried."""

    retries: int = 4  # further attempts after the first
    backoff_s: float = 0.5  # first delay, doubled each retry
    max_retry_after_s: float = 60.0  # a longer Retry-After fails the request
    timeout_s: float = 30.0  # per attempt


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError:
        return default  # the Settings of the flow or CLI report the bad value


_policy = RetryPolicy(
    retries=int(_env_number("CLOUDFREE_HTTP_RETRIES", RetryPolicy.retries)),
    backoff_s=_env_number("CLOUDFREE_HTTP_BACKOFF_S", RetryPolicy.backoff_s),
    max_retry_after_s=_env_number("CLOUDFREE_MAX_RETRY_AFTER_S", RetryPolicy.max_retry_after_s),
)


def configure(
    *,
    retries: int | None = None,
    backoff_s: float | None = None,
    max_retry_after_s: float | None = None,
    timeout_s: float | None = None,
) -> RetryPolicy:
    """Set this process's retry defaults (``None`` keeps a value); returns the new policy."""
    global _policy
    old = _policy
    _policy = RetryPolicy(
        retries=old.retries if retries is None else retries,
        backoff_s=old.backoff_s if backoff_s is None else backoff_s,
        max_retry_after_s=old.max_retry_after_s if max_retry_after_s is None else max_retry_after_s,
        timeout_s=old.timeout_s if timeout_s is None else timeout_s,
    )
    return _policy


def current_policy() -> RetryPolicy:
    return _policy


def _retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), ``None`` if absent."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request, retried per ``policy``; the last response once it is not retryable or
    the retries are spent (the caller checks its status)."""
    policy = policy or _policy
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    attempt = 0
    while True:
        try:
            response = httpx.request(
                method, url, headers=headers, timeout=policy.timeout_s, **kwargs
            )
        except httpx.TransportError as exc:  # refused, reset, timed out, protocol error
            if attempt >= policy.retries:
                raise StacApiUnreachableError(
                    url, f"{type(exc).__name__}: {exc}; {attempt + 1} attempts"
                ) from exc
            delay = policy.backoff_s * 2**attempt
            why = type(exc).__name__
        else:
            if response.status_code not in RETRY_STATUSES or attempt >= policy.retries:
                response.extensions["cloudfree_attempts"] = attempt + 1
                return response
            after = _retry_after_s(response)
            if after is not None and after > policy.max_retry_after_s:
                raise PublishError(
                    f"{method} {url}",
                    f"HTTP {response.status_code} asks to retry after {after:.0f} s, longer "
                    f"than the {policy.max_retry_after_s:.0f} s allowed "
                    "(CLOUDFREE_MAX_RETRY_AFTER_S); raise it, or run again later",
                )
            delay = after if after is not None else policy.backoff_s * 2**attempt
            why = f"HTTP {response.status_code}"
        attempt += 1
        log.warning(
            "STAC API %s %s: %s; retry %d of %d in %.2f s",
            method, url, why, attempt, policy.retries, delay,
        )  # fmt: skip
        time.sleep(delay)


def _check(response: httpx.Response, target: str, *, token: str | None = None) -> None:
    status = response.status_code
    if status < 400:
        return
    attempts = response.extensions.get("cloudfree_attempts", 1)
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if status in (401, 403) and response.request.method != "GET":
        sent = "the write token was refused" if token else "no write token was sent"
        raise PublishError(
            target,
            f"HTTP {status} from {response.request.url.host}: {sent}. Writes need the "
            "writer's bearer token: CLOUDFREE_STAC_WRITE_TOKEN, else the file "
            "stac-write-token that 'cloudfree services up' writes under CLOUDFREE_STATE_DIR; "
            "and CLOUDFREE_STAC_WRITE_URL must be the writer API",
        )
    if status == 405 and response.request.method != "GET":
        raise PublishError(
            target,
            f"HTTP 405 from {response.request.url}: this STAC API takes no writes "
            "(Transactions off: a readers' API?). Publish to the writer API "
            "(CLOUDFREE_STAC_WRITE_URL, default the local writer)",
        )
    raise PublishError(target, f"HTTP {status}{tried}: {response.text[:500]}")


def get_json(url: str, *, token: str | None = None) -> dict[str, Any] | None:
    """GET a JSON document; ``None`` on 404."""
    response = _request("GET", url, token=token)
    if response.status_code == 404:
        return None
    _check(response, url)
    document: dict[str, Any] = response.json()  # STAC endpoints answer JSON objects
    return document


def upsert_collection(api_url: str, collection: dict[str, Any], *, token: str | None = None) -> None:
    """Create the collection, or replace it when it already exists."""
    api_url = api_url.rstrip("/")
    cid = collection["id"]
    response = _request("POST", f"{api_url}/collections", json=collection, token=token)
    if response.status_code == 409:
        response = _request("PUT", f"{api_url}/collections/{cid}", json=collection, token=token)
    _check(response, f"collection {cid}", token=token)


def upsert_item(api_url: str, item: dict[str, Any], *, token: str | None = None) -> None:
    """Create the item in its collection, or replace it when it already exists."""
    api_url = api_url.rstrip("/")
    cid, iid = item["collection"], item["id"]
    response = _request("POST", f"{api_url}/collections/{cid}/items", json=item, token=token)
    if response.status_code == 409:
        response = _request(
            "PUT", f"{api_url}/collections/{cid}/items/{iid}", json=item, token=token
        )
    _check(response, f"item {cid}/{iid}", token=token)


def upsert_items(
    api_url: str, collection_id: str, items: list[dict[str, Any]], *, token: str | None = None
) -> None:
    """Bulk create-or-update (one request) through the bulk transactions endpoint,
    falling back to one request per item when the API lacks it."""
    api_url = api_url.rstrip("/")
    body = {"items": {item["id"]: item for item in items}, "method": "upsert"}
    response = _request(
        "POST", f"{api_url}/collections/{collection_id}/bulk_items", json=body, token=token
    )
    if response.status_code in (404, 405):
        for item in items:
            upsert_item(api_url, item, token=token)
        return
    _check(response, f"{len(items)} items in {collection_id}", token=token)


def delete_item(
    api_url: str, collection_id: str, item_id: str, *, token: str | None = None
) -> None:
    """Delete the item; one already gone is not an error (a retried DELETE finds it gone)."""
    response = _request(
        "DELETE", f"{api_url.rstrip('/')}/collections/{collection_id}/items/{item_id}",
        token=token,
    )  # fmt: skip
    if response.status_code != 404:
        _check(response, f"item {collection_id}/{item_id}", token=token)


def delete_collection(api_url: str, collection_id: str, *, token: str | None = None) -> None:
    """Delete the collection and its items; one already gone is not an error."""
    response = _request(
        "DELETE", f"{api_url.rstrip('/')}/collections/{collection_id}", token=token
    )
    if response.status_code != 404:
        _check(response, f"collection {collection_id}", token=token)
