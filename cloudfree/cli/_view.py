"""``cloudfree view``: the map viewer of the output collection on http://127.0.0.1:PORT/."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cloudfree.errors import ServiceError
from cloudfree.settings import READONLY_CREDENTIALS_FILE, Settings

#: Clear of the local stack's ports (8082, 8083, 8333, 4200, 5439, 19330-19337).
DEFAULT_PORT = 8090


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "view", help="serve a map viewer of the output collection on 127.0.0.1",
        description="Serve a web page on http://127.0.0.1:PORT/ that shows the output "
                    "collection's mosaics in true and false colour, their provenance layers "
                    "(source date, fill method, clear count, uncertainty), event pairs "
                    "under a before/after swipe with their change layers, and a clicked "
                    "pixel's provenance. Tiles come from titiler in the same process, "
                    "reading the COGs with the read-only S3 key. Offline: the JavaScript "
                    "is vendored at set-up. Stop it with Ctrl-C.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument("--collection", default=None,
                   help="collection to show (default from settings: CLOUDFREE_OUTPUT_COLLECTION)")
    p.add_argument("--s3-credentials", type=Path, default=None, metavar="FILE",
                   help="JSON file with the read-only S3 key (access_key_id, "
                        "secret_access_key); default: the one 'cloudfree services up' writes, "
                        f"CLOUDFREE_STATE_DIR/{READONLY_CREDENTIALS_FILE}")
    p.add_argument("--max-items", type=int, default=2000,
                   help="most items the page lists (default 2000)")
    p.set_defaults(func=run)


def readonly_key(path: Path) -> tuple[str, str]:
    """The read-only S3 key in ``path``; fails saying where it comes from."""
    try:
        creds = json.loads(path.read_text())
        return str(creds["access_key_id"]), str(creds["secret_access_key"])
    except FileNotFoundError:
        reason = "does not exist"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"cannot be read as JSON with access_key_id and secret_access_key ({exc})"
    raise ServiceError(
        "viewer", f"read-only S3 credentials {path} {reason}. 'cloudfree services up' "
        "creates them for the local stack; elsewhere give --s3-credentials FILE")


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        from cloudfree import viewer
        from cloudfree.storage import gdal_s3_env
    except ImportError as exc:
        raise ServiceError(
            "viewer", f"{exc.name or exc} is not installed: run the set-up ('make setup'), "
            "or pip install -e '.[viewer]'") from exc
    from cloudfree.viewer._server import check_port

    if args.max_items < 1:
        from cloudfree.errors import InvalidParameterError

        raise InvalidParameterError("--max-items", args.max_items, "give at least 1")
    from cloudfree._stac_api import configure

    configure(retries=settings.http_retries, backoff_s=settings.http_backoff_s,
              max_retry_after_s=settings.max_retry_after_s)
    check_port(args.port)
    viewer.check_vendored()
    collection = args.collection or settings.output_collection
    key, secret = readonly_key(args.s3_credentials
                               or settings.state_dir / READONLY_CREDENTIALS_FILE)
    viewer.list_items(settings.stac_url, collection, max_items=1)  # answers, and has it
    gdal_env = {
        **gdal_s3_env(settings.s3_url, key, secret, timeout_s=settings.gdal_http_timeout_s,
                      retries=settings.http_retries,
                      retry_delay_s=max(settings.http_backoff_s, 0.1)),
        # no .aux.xml statistics written beside the COGs (the read-only key could not anyway)
        "GDAL_PAM_ENABLED": "NO",
        # open a COG without listing its folder on S3 first
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        # GDAL's curl reader only for the COGs
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
        # keep the blocks of recently read COGs in memory between tiles
        "VSI_CACHE": "TRUE",
    }
    app = viewer.create_app(stac_url=settings.stac_url, collection=collection,
                            gdal_env=gdal_env, max_items=args.max_items)
    print(f"cloudfree viewer: http://{viewer.HOST}:{args.port}/  (collection {collection!r} "
          f"at {settings.stac_url}; Ctrl-C stops it)", flush=True)
    viewer.serve(app, port=args.port)
    return 0
