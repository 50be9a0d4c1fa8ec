"""Scene search: pystac-client queries with AOI, date window and cloud-cover filters.

Every request (the landing page, the collection, each search page) is retried on a
connection error, a read timeout, 429 and 5xx, with exponential backoff, honouring
``Retry-After`` up to a cap; a search pages through every match, and fails clearly
(:class:`~cloudfree.errors.SearchTooLargeError`) rather than truncate when more match
than ``max_items``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from cloudfree.errors import (
    NoScenesFoundError,
    SearchTooLargeError,
    StacApiUnreachableError,
    UnknownCollectionError,
)
from cloudfree.grid import AOI, DateWindow

if TYPE_CHECKING:
    from cloudfree.settings import Settings

#: Defaults of the retries, the same as :class:`~cloudfree.settings.Settings`'
#: ``http_retries``, ``http_backoff_s``, ``max_retry_after_s`` and ``max_search_items``
#: (library code takes plain values; the flows pass the settings' ones).
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_RETRY_AFTER_S = 60.0
DEFAULT_MAX_SEARCH_ITEMS = 20000
#: Statuses worth another try: throttling and the server-side errors of a busy or
#: restarting API (a 4xx other than 429 is the request's fault and is never retried).
RETRY_STATUSES = (429, 500, 502, 503, 504)


class _Retry(Retry):
    """urllib3's Retry with the first retry after ``backoff_factor`` s (urllib3 retries
    the first at once), doubling after, and a ``Retry-After`` longer than
    ``max_retry_after_s`` failing the request instead of sleeping that long."""

    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)  # urllib3 builds each next state with new()
        retry.max_retry_after_s = self.max_retry_after_s
        return retry

    def get_backoff_time(self) -> float:
        n = len(self.history)
        if n == 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (n - 1)))

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Self:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after_s:
                raise MaxRetryError(_pool, url or "", ResponseError(
                    f"Retry-After {wait:g} s is longer than the {self.max_retry_after_s:g} s "
                    "honoured (CLOUDFREE_MAX_RETRY_AFTER_S)"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def retry_policy(retries: int = DEFAULT_RETRIES, backoff_s: float = DEFAULT_BACKOFF_S,
                 max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> Retry:
    """The urllib3 retry policy of every STAC API read: ``retries`` more tries on a
    connection error, a read timeout, 429 or 5xx, for every method (a search POST is a
    read), after ``backoff_s``, doubled each time, or the ``Retry-After`` of a 429/503
    when it gives one (at most ``max_retry_after_s``)."""
    retry = _Retry(total=retries, connect=retries, read=retries, status=retries,
                   backoff_factor=backoff_s, status_forcelist=RETRY_STATUSES,
                   allowed_methods=None, respect_retry_after_header=True,
                   raise_on_status=True)
    retry.max_retry_after_s = max_retry_after_s
    return retry


def search_options(settings: Settings) -> dict[str, Any]:
    """:func:`search_scenes`' cap and retry arguments from the settings
    (``CLOUDFREE_MAX_SEARCH_ITEMS``, ``CLOUDFREE_HTTP_RETRIES``, ``CLOUDFREE_HTTP_BACKOFF_S``,
    ``CLOUDFREE_MAX_RETRY_AFTER_S``), for the flows and the CLI:
    ``search_scenes(url, ..., **search_options(settings))``."""
    return {"max_items": settings.max_search_items, "retries": settings.http_retries,
            "backoff_s": settings.http_backoff_s,
            "max_retry_after_s": settings.max_retry_after_s}


def open_client(url: str, *, timeout_s: float = 30.0, retries: int = DEFAULT_RETRIES,
                backoff_s: float = DEFAULT_BACKOFF_S,
                max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> Client:
    """Open a STAC API whose every request is retried (:func:`retry_policy`) and times
    out after ``timeout_s``, turning connection failures into a clear error."""
    stac_io = StacApiIO(timeout=timeout_s,
                        max_retries=retry_policy(retries, backoff_s, max_retry_after_s))
    try:
        return Client.open(url, stac_io=stac_io)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    except APIError as exc:
        if _transient(exc):
            raise StacApiUnreachableError(url, f"still failing after {retries} retries: "
                                               f"{_short(exc)}") from exc
        raise StacApiUnreachableError(url, f"not a STAC API ({_short(exc)})") from exc


def _transient(exc: APIError) -> bool:
    """An APIError that is a retried failure (retries exhausted, a connection error, a
    timeout, a 429/5xx), not an answer about the request."""
    status = getattr(exc, "status_code", None)
    return status in RETRY_STATUSES or (status is None and any(
        word in str(exc) for word in ("Max retries", "Retry-After", "timed out",
                                      "Connection", "RemoteDisconnected")))


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:300]


def check_collection(client: Client, url: str, collection: str) -> None:
    """Raise UnknownCollectionError, listing what the API does have, if ``collection``
    is missing."""
    try:
        found = client.get_collection(collection)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    except APIError as exc:
        if _transient(exc):
            raise StacApiUnreachableError(url, f"still failing after retries: {_short(exc)}"
                                          ) from exc
        raise
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
    max_items: int = DEFAULT_MAX_SEARCH_ITEMS,
    patch_url: Callable[[str], str] | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Search scenes and return them as plain item dicts, oldest first.

    Args:
        url: STAC API root.
        collection: collection id, checked to exist first.
        aoi: the search geometry (its GeoJSON when given, else its bbox).
        window: the date window.
        max_cloud_pct: keep scenes with ``eo:cloud_cover`` at most this.
        limit: page size.
        max_items: the most scenes the search may return; when more match, it fails
            (never truncates): before paging when the API says how many match, else as
            soon as the pages pass the cap.
        patch_url: rewrites every asset href (for signing or mirrors).
        retries, backoff_s, max_retry_after_s, timeout_s: every request's retries on a
            connection error, timeout, 429 or 5xx (:func:`retry_policy`), and timeout.

    Raises:
        StacApiUnreachableError (also when the retries run out), UnknownCollectionError,
        NoScenesFoundError, SearchTooLargeError.
    """
    client = open_client(url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                         max_retry_after_s=max_retry_after_s)
    check_collection(client, url, collection)
    params: dict[str, Any] = {
        "collections": [collection],
        "datetime": window.stac,
        "limit": min(limit, max_items + 1),
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
    items: list[dict[str, Any]] = []

    def too_large(matched: int | None) -> SearchTooLargeError:
        return SearchTooLargeError(url, collection, list(aoi.bbox), window.stac,
                                   max_cloud_pct, max_items, matched)

    try:
        for page in client.search(**params).pages_as_dicts():
            matched = page.get("numberMatched", (page.get("context") or {}).get("matched"))
            if isinstance(matched, int) and matched > max_items:
                raise too_large(matched)  # before paging through them
            items.extend(page.get("features", []))
            if len(items) > max_items:
                raise too_large(matched if isinstance(matched, int) else None)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise StacApiUnreachableError(url, exc.__class__.__name__) from exc
    except APIError as exc:
        if _transient(exc):
            raise StacApiUnreachableError(
                url, f"search still failing after {retries} retries: {_short(exc)}") from exc
        raise
    if not items:
        raise NoScenesFoundError(list(aoi.bbox), window.stac, collection, max_cloud_pct)
    if patch_url is not None:
        for item in items:
            for asset in item.get("assets", {}).values():
                asset["href"] = patch_url(asset["href"])
    items.sort(key=lambda it: (it["properties"]["datetime"], it["id"]))
    return items
