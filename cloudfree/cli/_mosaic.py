"""``cloudfree mosaic``: make and publish a cloud-free mosaic by running a flow."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from cloudfree.catalogs import PRESETS, PROFILES, get_signer, parse_assume, resolve_bands
from cloudfree.catalogs.signing import signer_names
from cloudfree.errors import InvalidAOIError, InvalidParameterError
from cloudfree.methods import get_method, list_methods
from cloudfree.settings import Settings


def use_local_prefect(settings: Settings) -> None:
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


def add_mask_option(parser: argparse.ArgumentParser) -> None:
    """``--mask``: a cloud detector of the registry, or ``auto`` (the default)."""
    from cloudfree.detection import AUTO_ORDER, list_detectors

    parser.add_argument(
        "--mask", default="auto", choices=[*list_detectors("mosaic"), "auto"],
        help="cloud and shadow detector (default auto: per tile, the first that can run of "
             f"{', '.join(AUTO_ORDER)} (on L1C, s2cloudless first); e.g. multitemporal "
             "with SCL on an L2A series of 4+ dates, else scl)")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--method`` (the registry's mosaic methods) and ``--force``."""
    targeted = [name for name in list_methods("mosaic") if get_method(name).corrected]
    parser.add_argument(
        "--method", default="median", choices=list_methods("mosaic"),
        help=f"compositing method (default median); {' and '.join(targeted)} show the "
             "target date, gaps fitted to its clear pixels")
    parser.add_argument("--force", action="store_true",
                        help="re-make tiles already published with the same inputs")


def add_catalog_options(parser: argparse.ArgumentParser, *, signer: bool = True) -> None:
    """``--bands``, ``--source``, ``--assume-decoding`` (and ``--signer``): which bands to
    read and how the catalog's items are read (:mod:`cloudfree.catalogs`)."""
    parser.add_argument(
        "--bands", default=None,
        help="comma-separated bands: cloudfree names (blue ... swir22), Sentinel-2 ids (B02, "
             "B8A) or common names (default blue,green,red,nir,swir16,swir22)")
    parser.add_argument(
        "--source", default=None, metavar="PROFILE",
        help=f"the catalog profile ({', '.join(PROFILES)}); default: from each item's "
             "collection and hosts")
    parser.add_argument(
        "--assume-decoding", default=None, metavar="DECODING",
        help="for items whose DN decoding the metadata does not decide: 'scale=S,offset=O' "
             f"or a preset ({', '.join(PRESETS)})")
    if signer:
        parser.add_argument(
            "--signer", default=None,
            help=f"href signer ({', '.join(signer_names())}); default: the profile's")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    targeted = [name for name in list_methods("mosaic") if get_method(name).targeted]
    p.add_argument("--target-date", default=None,
                   help=f"YYYY-MM-DD that {', '.join(targeted)} aim at (default: the "
                        "window's middle)")
    p.add_argument("--dilation", type=float, default=None,
                   help="grow SCL cloud and shadow masks by this many metres (default 100)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_mask_option(p)
    add_catalog_options(p)
    add_method_options(p)
    p.set_defaults(func=run)


def check_catalog_options(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--source``, ``--assume-decoding`` or ``--signer`` before any
    search or flow starts."""
    if args.source is not None and args.source.strip().lower() not in PROFILES:
        raise InvalidParameterError("source", args.source,
                                    f"not a catalog profile; known: {', '.join(PROFILES)}")
    if args.assume_decoding is not None:
        parse_assume(args.assume_decoding)
    if getattr(args, "signer", None) is not None:
        get_signer(args.signer)


def _flow_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    check_catalog_options(args)
    kwargs: dict[str, Any] = {
        "datetime": args.datetime,
        "collection": args.collection,
        "max_cloud_pct": args.max_cloud,
        "method": args.method,
        "mask": args.mask,
        "target_date": args.target_date,
        "dilation_m": args.dilation,
        "resolution_m": args.resolution,
        "epsg": args.epsg,
        "force": args.force,
        "bands": list(resolve_bands(args.bands)) if args.bands else None,
        "source": args.source,
        "assume_decoding": args.assume_decoding,
        "signer": args.signer,
    }
    if args.geojson:
        kwargs["geojson"] = args.geojson
    else:
        kwargs["bbox"] = args.bbox
    return kwargs


def check_mask_bands(args: argparse.Namespace) -> None:
    """A named ``--mask`` whose bands ``--bands`` lacks fails at once (its dates and SCL
    are checked per tile by the plan, once the scenes are known)."""
    from cloudfree.detection import get_detector, runnable
    from cloudfree.errors import MissingDetectorInputError
    from cloudfree.sentinel2 import DEFAULT_BANDS

    if args.mask == "auto":
        return
    bands = list(resolve_bands(args.bands)) if args.bands else list(DEFAULT_BANDS)
    lacks = [need for need in get_detector(args.mask).missing(bands, has_scl=True,
                                                              n_dates=10**6)
             if not need.startswith("scl")]
    if lacks:
        raise MissingDetectorInputError(args.mask, lacks, bands,
                                        runnable(bands, has_scl=True, n_dates=10**6))


def check_request(args: argparse.Namespace, settings: Settings) -> None:
    """The flows' own checks of the area, window, target date, CRS and the grid's budgets
    (the same library calls), made before Prefect starts: bad input exits 2 at once, and
    nothing is searched or written."""
    from cloudfree.grid import check_target_date, parse_aoi, parse_date_window
    from cloudfree.plan import Budgets, area_tiles

    aoi = parse_aoi(args.bbox, args.geojson)
    window = parse_date_window(args.datetime)
    check_target_date(args.target_date, window)
    check_mask_bands(args)
    area_tiles(aoi, resolution_m=args.resolution, tile_size_px=args.tile_size, epsg=args.epsg,
               budgets=Budgets.from_settings(settings))


def _print_outcomes(result: dict[str, Any]) -> None:
    for tile in result["tiles"]:
        print(f"{tile['status']:9s} {tile['item_id']}  ({tile['n_sources']} scenes)")
        for key, href in sorted(tile["hrefs"].items()):
            print(f"          {key:12s} {href}")


def run(args: argparse.Namespace) -> int:
    if not args.bbox and not args.geojson:
        raise InvalidAOIError(None, "no area of interest given; pass --bbox or --geojson")
    kwargs = _flow_kwargs(args)  # bad --bands fail here, before Prefect starts
    settings = Settings()
    check_request(args, settings)  # and bad areas, windows, CRSs and budgets
    use_local_prefect(settings)
    if args.json:  # the output is for a program: no progress line on the terminal either
        os.environ["CLOUDFREE_PROGRESS"] = "0"
    result: dict[str, Any]
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
