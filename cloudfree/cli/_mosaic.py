"""``cloudfree mosaic``: make and publish a cloud-free mosaic by running a flow."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from cloudfree.catalogs import PRESETS, PROFILES, get_signer, parse_assume, resolve_bands
from cloudfree.catalogs.signing import signer_names
from cloudfree.errors import CloudFreeError, InvalidAOIError, InvalidParameterError
from cloudfree.event import DEFAULT_LOOK_AHEAD_DAYS, DEFAULT_LOOK_BACK_DAYS
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


class _UserErrorWithoutTraceback(logging.Filter):
    """Drop the traceback from a log record of a :class:`~cloudfree.errors.CloudFreeError`
    (bad input, a refused run): its message says what to fix, and the CLI prints it as
    its one error line. Other exceptions keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CloudFreeError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_error_tracebacks() -> None:
    """On the terminal, Prefect logs an exception raised in a flow or task with its
    traceback; the CLI runs flows in-process, and a refused run (no scene after an event,
    a budget, a tile that failed on bad input) is no crash. Filters Prefect's console
    handlers only: the flow run's logs on the Prefect server keep every traceback."""
    from prefect.logging.configuration import setup_logging

    setup_logging()  # as importing a flow does; incremental when it did already
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not any(
                    isinstance(f, _UserErrorWithoutTraceback) for f in handler.filters):
                handler.addFilter(_UserErrorWithoutTraceback())


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
    p.add_argument("--datetime", default=None,
                   help="YYYY-MM-DD/YYYY-MM-DD (with --event-date: how far back and forward "
                        f"to look, default {DEFAULT_LOOK_BACK_DAYS} days before to "
                        f"{DEFAULT_LOOK_AHEAD_DAYS} after the event)")
    p.add_argument("--event-date", default=None, metavar="YYYY-MM-DD",
                   help="event mode: publish a post product (per pixel the earliest clear "
                        "observation after the day) with dNBR/dNDWI/dNDVI change layers, "
                        "then a pre product (the latest at or before it)")
    p.add_argument("--event-name", default=None,
                   help="the event's name, in cloudfree:event of both items")
    p.add_argument("--collection", default=None, help="source collection (default from settings)")
    p.add_argument("--max-cloud", type=float, default=None, help="max scene eo:cloud_cover, %%")
    p.add_argument("--resolution", type=float, default=10.0, help="output pixel size, m")
    p.add_argument("--epsg", type=int, default=None, help="output CRS (default: UTM of the AOI)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="cut the AOI into grid tiles of this many pixels (regional flow; with "
                        "--event-date, a pair per grid tile)")
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
    if args.event_date is not None:
        kwargs.update(event_date=args.event_date, event_name=args.event_name)
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
    if args.event_date is not None:
        check_event_request(args)
    else:
        if args.datetime is None:
            raise InvalidParameterError(
                "datetime", None, "give the window as --datetime YYYY-MM-DD/YYYY-MM-DD (or "
                "--event-date for an event pair, which defaults the window around it)")
        window = parse_date_window(args.datetime)
        check_target_date(args.target_date, window)
    check_mask_bands(args)
    area_tiles(aoi, resolution_m=args.resolution, tile_size_px=args.tile_size, epsg=args.epsg,
               budgets=Budgets.from_settings(settings))


def check_event_request(args: argparse.Namespace) -> None:
    """Event mode's own checks: the event date is a day inside the window (and before its
    last day), and no ``--target-date`` (:mod:`cloudfree.event`)."""
    from cloudfree.event import event_window, parse_event

    event = parse_event(args.event_date, args.event_name)
    if args.target_date is not None:
        raise InvalidParameterError(
            "target_date", args.target_date, "--event-date aims each side at the event "
            "date; leave --target-date out")
    event_window(args.datetime, event)


def _print_outcomes(result: dict[str, Any]) -> None:
    if "event" in result:
        event = result["event"]
        print(f"event {event['date']}{' ' + event['name'] if event.get('name') else ''}, "
              f"window {event['window']}: post published first, then pre")
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
    quiet_user_error_tracebacks()
    if args.event_date is not None:  # event mode: the AOI flow, grid tiles or not
        from flows.aoi_mosaic import aoi_mosaic

        result = aoi_mosaic(**kwargs, tile_size_px=args.tile_size)
    elif args.tile_size:
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
