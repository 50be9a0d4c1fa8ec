"""The ``cloudfree`` command: parses arguments, calls the library, returns exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from cloudfree.errors import CloudFreeError
from cloudfree.settings import Settings


def _use_local_prefect(settings: Settings) -> None:
    """Point Prefect at the local server when it runs and nothing else is configured;
    otherwise Prefect starts a temporary server of its own."""
    if os.environ.get("PREFECT_API_URL"):
        return
    import httpx

    try:
        ok = httpx.get(f"{settings.prefect_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        ok = False
    if ok:
        os.environ["PREFECT_API_URL"] = settings.prefect_url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")


def _cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    from cloudfree import localstack as services

    if args.action == "up":
        services.up(settings)
    elif args.action == "down":
        services.down(settings)
    rows = services.status(settings)
    for row in rows:
        print(row)
    return 0 if args.action != "status" or all(r.running for r in rows) else 1


def _cmd_demo_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from cloudfree.demo.catalog import build_demo_catalog

    ids = build_demo_catalog(
        stac_api_url=settings.stac_url,
        storage_options=settings.storage_options(),
        bucket=settings.bucket,
        collection_id=settings.source_collection,
        n_tiles=args.tiles,
        n_dates=args.dates,
        seed=args.seed,
        **({"size_px": args.size} if args.size else {}),
    )
    print(f"demo collection {settings.source_collection!r}: {len(ids)} scenes at {settings.stac_url}")
    return 0


def _flow_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "datetime": args.datetime,
        "collection": args.collection,
        "max_cloud_pct": args.max_cloud,
        "method": args.method,
        "target_date": args.target_date,
        "dilation_m": args.dilation,
        "resolution_m": args.resolution,
        "epsg": args.epsg,
        "force": args.force,
    }
    if args.geojson:
        kwargs["geojson"] = args.geojson
    else:
        kwargs["bbox"] = args.bbox
    return kwargs


def _print_outcomes(result: dict[str, Any]) -> None:
    for tile in result["tiles"]:
        print(f"{tile['status']:9s} {tile['item_id']}  ({tile['n_sources']} scenes)")
        for key, href in sorted(tile["hrefs"].items()):
            print(f"          {key:12s} {href}")


def _cmd_mosaic(args: argparse.Namespace, settings: Settings) -> int:
    if not args.bbox and not args.geojson:
        from cloudfree.errors import InvalidAOIError

        raise InvalidAOIError(None, "no area of interest given; pass --bbox or --geojson")
    _use_local_prefect(settings)
    kwargs = _flow_kwargs(args)
    if args.tile_size:
        from flows.regional_mosaic import regional_mosaic

        result = regional_mosaic(**kwargs, tile_size_px=args.tile_size)
    else:
        from flows.aoi_mosaic import aoi_mosaic

        result = aoi_mosaic(**kwargs)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        _print_outcomes(result)
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    _use_local_prefect(settings)
    from cloudfree.demo.run import run_demo
    from flows.regional_mosaic import regional_mosaic

    run_demo(settings, regional_mosaic, method=args.method, tile_size_px=args.tile_size,
             force=args.force)
    return 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from cloudfree.evaluation.harness import main as evaluate_main

    return evaluate_main(args.args)


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from cloudfree.training import main as train_main

    return train_main(args.args)


def _add_mosaic_options(p: argparse.ArgumentParser) -> None:
    from cloudfree.tile import MOSAIC_METHODS

    p.add_argument("--method", default="median", choices=MOSAIC_METHODS,
                   help="compositing method (default median); interpolate_corrected and "
                        "generator show the target date, gaps fitted to its clear pixels")
    p.add_argument("--force", action="store_true",
                   help="re-make tiles already published with the same inputs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudfree", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("services", help="start, stop or inspect the local stack on 127.0.0.1")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=_cmd_services)

    p = sub.add_parser("demo-catalog", help="write the synthetic Sentinel-2 L2A demo collection")
    p.add_argument("--tiles", type=int, default=2, help="adjacent tiles (default 2)")
    p.add_argument("--dates", type=int, default=10, help="dates per tile (default 10)")
    p.add_argument("--size", type=int, default=None, help="tile size in 10 m pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_catalog)

    p = sub.add_parser("mosaic", help="make and publish a cloud-free mosaic (runs the flow)")
    aoi = p.add_mutually_exclusive_group()
    aoi.add_argument("--bbox", help="minx,miny,maxx,maxy in degrees")
    aoi.add_argument("--geojson", help="GeoJSON file (Polygon/MultiPolygon/Feature[Collection])")
    p.add_argument("--datetime", required=True, help="YYYY-MM-DD/YYYY-MM-DD")
    p.add_argument("--collection", default=None, help="source collection (default from settings)")
    p.add_argument("--max-cloud", type=float, default=None, help="max scene eo:cloud_cover, %%")
    p.add_argument("--resolution", type=float, default=10.0, help="output pixel size, m")
    p.add_argument("--epsg", type=int, default=None, help="output CRS (default: UTM of the AOI)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="cut the AOI into grid tiles of this many pixels (regional flow)")
    p.add_argument("--target-date", default=None,
                   help="YYYY-MM-DD that bap, interpolate, interpolate_corrected and generator "
                        "aim at (default: the window's middle)")
    p.add_argument("--dilation", type=float, default=None,
                   help="grow SCL cloud and shadow masks by this many metres (default 100)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_mosaic_options(p)
    p.set_defaults(func=_cmd_mosaic)

    p = sub.add_parser(
        "evaluate", add_help=False,
        help="score methods on evaluation cases (.npz) under the hidden-pixel protocol; "
             "'cloudfree evaluate --help' for its options")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "train", add_help=False,
        help="train the generator (resumable); 'cloudfree train --help' for its options")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="regional mosaic of the demo collection, with a report")
    p.add_argument("--tile-size", type=int, default=512, help="grid tile size in pixels")
    _add_mosaic_options(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"]:  # its own parser, options included
        return _cmd_evaluate(argparse.Namespace(args=argv[1:]), None)  # type: ignore[arg-type]
    if argv[:1] == ["train"]:
        return _cmd_train(argparse.Namespace(args=argv[1:]), None)  # type: ignore[arg-type]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return int(args.func(args, settings) or 0)
    except CloudFreeError as exc:
        print(f"cloudfree: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
