"""The viewer's web server: the page, its vendored JavaScript, the collection's catalog
and titiler's tiles, from one uvicorn process on 127.0.0.1."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from cloudfree._stac_api import _request
from cloudfree.errors import (
    CloudFreeError,
    InvalidParameterError,
    ServiceError,
    StacApiUnreachableError,
    UnknownCollectionError,
)
from cloudfree.viewer._catalog import build_catalog
from cloudfree.viewer._tiler import ITEM_TTL_S, ItemNotFoundError, create_tiler

#: The only address the viewer listens on: it serves whatever the read-only key can read.
HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"
#: MapLibre GL JS, vendored from npm by scripts/setup.sh (git-ignored).
VENDOR = STATIC / "vendor"
VENDORED = ("maplibre-gl.js", "maplibre-gl.css")
#: Items listed per STAC API page while building the catalog.
PAGE_SIZE = 250


def check_vendored(vendor: Path = VENDOR) -> None:
    """Fail with what to run when set-up has not vendored MapLibre GL JS (no CDN: the page
    must work offline)."""
    missing = [name for name in VENDORED if not (vendor / name).is_file()]
    if missing:
        raise ServiceError(
            "viewer",
            f"its JavaScript is missing: {', '.join(str(vendor / m) for m in missing)}. "
            "Run the set-up, which vendors MapLibre GL JS from npm: 'make setup' "
            "(or 'scripts/setup.sh .venv')",
        )


def check_port(port: int, host: str = HOST) -> None:
    """Refuse a port another process holds, before anything starts."""
    if not 1 <= port <= 65535:
        raise InvalidParameterError("--port", port, "give a TCP port between 1 and 65535")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise InvalidParameterError(
                "--port", port, f"{host}:{port} is already in use ({exc.strerror}); stop "
                "what listens there or pick another port with --port") from exc


def list_items(stac_url: str, collection: str, *, max_items: int) -> tuple[list[dict[str, Any]],
                                                                           bool]:
    """The collection's items from the readers' STAC API (following ``next`` links), at
    most ``max_items``; and whether there were more."""
    url: str | None = (f"{stac_url.rstrip('/')}/collections/{collection}/items"
                       f"?limit={min(PAGE_SIZE, max_items)}")
    items: list[dict[str, Any]] = []
    while url:
        page = _get_json(url)
        if page is None:
            raise UnknownCollectionError(collection, stac_url, list_collections(stac_url))
        items.extend(page.get("features", []))
        if len(items) >= max_items:
            return items[:max_items], len(items) > max_items or _next(page) is not None
        url = _next(page)
    return items, False


def list_collections(stac_url: str) -> list[str]:
    """Every collection id of the readers' STAC API, following ``next`` links (the API
    pages its listing: an error naming the first page only would leave most out)."""
    url: str | None = f"{stac_url.rstrip('/')}/collections"
    ids: list[str] = []
    seen: set[str] = set()
    while url and url not in seen:  # a page linking back to itself ends the listing
        seen.add(url)
        page = _get_json(url) or {}
        ids += [str(c.get("id")) for c in page.get("collections", [])]
        url = _next(page)
    return ids


def _get_json(url: str) -> dict[str, Any] | None:
    """GET a JSON document of the readers' API (retried); ``None`` on 404."""
    response = _request("GET", url)
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise StacApiUnreachableError(url, f"HTTP {response.status_code}: {response.text[:200]}")
    document: dict[str, Any] = response.json()
    return document


def _next(page: Mapping[str, Any]) -> str | None:
    for link in page.get("links", []):
        if link.get("rel") == "next" and link.get("method", "GET") == "GET":
            return str(link["href"])
    return None


def create_app(*, stac_url: str, collection: str, gdal_env: Mapping[str, Any],
               max_items: int = 2000) -> FastAPI:
    """The viewer's app: ``/`` (the page), ``/static`` (its scripts, MapLibre included),
    ``/api/catalog`` (the collection as :func:`build_catalog` describes it) and ``/tiles``
    (titiler: tiles, tilejson, point and info of an item, ``?item=ID``).

    ``gdal_env``: the GDAL options and session that read the COGs (the read-only S3 key),
    applied to every tile and point request."""
    check_vendored()
    # Our items carry raster:bands without statistics, which rio-tiler warns about per read.
    warnings.filterwarnings("ignore", message="Some statistics data in STAC are invalid")
    app = FastAPI(title="cloudfree viewer", docs_url=None, redoc_url=None)
    tiler = create_tiler(stac_url, collection, gdal_env)
    app.include_router(tiler.router, prefix="/tiles", tags=["tiles"])
    _add_error_handlers(app)
    _cache_tiles(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/catalog")
    def catalog() -> JSONResponse:
        """The products, pairs and layers of the collection, listed afresh."""
        try:
            items, truncated = list_items(stac_url, collection, max_items=max_items)
        except CloudFreeError as exc:
            return JSONResponse({"error": " ".join(str(exc).split())}, status_code=502)
        return JSONResponse(build_catalog(collection, items, truncated=truncated))

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "collection": collection}

    return app


def _add_error_handlers(app: FastAPI) -> None:
    from rio_tiler.errors import PointOutsideBounds
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers

    # a click inside an item's lon/lat footprint but beside its (UTM) raster: no pixel there
    add_exception_handlers(app, {ItemNotFoundError: 404, PointOutsideBounds: 404,
                                 **DEFAULT_STATUS_CODES})


def _cache_tiles(app: FastAPI) -> None:
    """Let the browser keep tile images as long as the server keeps their item, so that
    switching layers back and forth or reloading the page does not redraw them."""
    from titiler.core.middleware import CacheControlMiddleware

    app.add_middleware(CacheControlMiddleware, cachecontrol=f"private, max-age={ITEM_TTL_S:.0f}",
                       cachecontrol_max_http_code=400, exclude_path={r"^/(?!tiles/tiles/)"})


def serve(app: FastAPI, *, port: int, log_level: str = "warning") -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until interrupted."""
    import uvicorn

    check_port(port)
    uvicorn.run(app, host=HOST, port=port, log_level=log_level, access_log=False)
