"""The local world's subcommands: ``services`` (the local stack), ``demo-catalog`` and
``demo`` (the synthetic demo collection and a regional mosaic of it)."""

from __future__ import annotations

import argparse

from cloudfree.cli._mosaic import add_method_options, use_local_prefect
from cloudfree.settings import Settings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("services", help="start, stop or inspect the local stack on 127.0.0.1")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=run_services)

    p = sub.add_parser("demo-catalog", help="write the synthetic Sentinel-2 L2A demo collection")
    p.add_argument("--tiles", type=int, default=2, help="adjacent tiles (default 2)")
    p.add_argument("--dates", type=int, default=10, help="dates per tile (default 10)")
    p.add_argument("--size", type=int, default=None, help="tile size in 10 m pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_demo_catalog)


def add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="regional mosaic of the demo collection, with a report")
    p.add_argument("--tile-size", type=int, default=512, help="grid tile size in pixels")
    add_method_options(p)
    p.set_defaults(func=run_demo)


def run_services(args: argparse.Namespace) -> int:
    from cloudfree import localstack

    settings = Settings()
    if args.action == "up":
        localstack.up(settings)
    elif args.action == "down":
        localstack.down(settings)
    rows = localstack.status(settings)
    for row in rows:
        print(row)
    return 0 if args.action != "status" or all(r.running for r in rows) else 1


def run_demo_catalog(args: argparse.Namespace) -> int:
    from cloudfree._stac_api import configure
    from cloudfree.demo.catalog import build_demo_catalog

    settings = Settings()
    configure(retries=settings.http_retries, backoff_s=settings.http_backoff_s,
              max_retry_after_s=settings.max_retry_after_s)
    ids = build_demo_catalog(
        stac_api_url=settings.stac_publish_url,
        stac_token=settings.stac_token(),
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


def run_demo(args: argparse.Namespace) -> int:
    settings = Settings()
    use_local_prefect(settings)
    from cloudfree.demo.run import run_demo
    from flows.regional_mosaic import regional_mosaic

    run_demo(settings, regional_mosaic, method=args.method, tile_size_px=args.tile_size,
             force=args.force)
    return 0
