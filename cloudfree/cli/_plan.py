"""``cloudfree plan``: the dry run of a mosaic: tiles, scenes, decoding and estimates; reads
no pixel and starts nothing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cloudfree.cli._mosaic import add_catalog_options, add_mask_option, check_catalog_options
from cloudfree.errors import InvalidAOIError, InvalidDateWindowError
from cloudfree.methods import list_methods
from cloudfree.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan", help="dry run: the tiles, scenes, per-band decoding and estimates of a mosaic",
        description="Plan a mosaic without reading a pixel: search the STAC API (--bbox or "
                    "--geojson with --datetime) or read item files (--items), then list the "
                    "tiles (with the halo each reads), the scenes of each tile, how each "
                    "scene's bands decode (asset key, scale, offset and why), and the "
                    "estimated memory and compute time per tile.")
    aoi = p.add_mutually_exclusive_group()
    aoi.add_argument("--bbox", help="minx,miny,maxx,maxy in degrees")
    aoi.add_argument("--geojson", help="GeoJSON file (Polygon/MultiPolygon/Feature[Collection])")
    p.add_argument("--items", nargs="+", metavar="FILE", default=None,
                   help="STAC Item JSON files or ItemCollections; no search. Without "
                        "--bbox/--geojson the items are grouped by overlapping footprint, "
                        "each group cut into grid tiles")
    p.add_argument("--datetime", default=None,
                   help="YYYY-MM-DD/YYYY-MM-DD (needed to search; with --items, keeps the "
                        "items acquired in it)")
    p.add_argument("--collection", default=None, help="source collection (default from settings)")
    p.add_argument("--max-cloud", type=float, default=None, help="max scene eo:cloud_cover, %%")
    p.add_argument("--method", default="median", choices=list_methods("mosaic"),
                   help="compositing method (default median): its halo and throughput")
    p.add_argument("--resolution", type=float, default=10.0, help="output pixel size, m")
    p.add_argument("--tile-size", type=int, default=None,
                   help="grid tile size in pixels (default: one tile over --bbox/--geojson, "
                        "as 'cloudfree mosaic'; 2048 with --items alone)")
    p.add_argument("--epsg", type=int, default=None,
                   help="output CRS (default: UTM of the area, or of each item group)")
    p.add_argument("--dilation", type=float, default=None,
                   help="SCL mask dilation in metres (default 100): part of the halo")
    add_mask_option(p)
    add_catalog_options(p, signer=False)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def _items(args: argparse.Namespace, settings: Settings, aoi: Any,
           window: Any) -> tuple[list[dict[str, Any]], str, str | None]:
    from cloudfree.plan import load_items

    if args.items:
        return load_items(args.items), "items", None
    if aoi is None:
        raise InvalidAOIError(None, "nothing to plan: pass --bbox or --geojson with --datetime "
                                    "to search the STAC API, or --items FILE... to plan item "
                                    "files")
    if window is None:
        raise InvalidDateWindowError(None, "searching the STAC API needs --datetime")
    from cloudfree.search import search_scenes

    url = settings.source_stac_api_url or settings.stac_url
    items = search_scenes(url, aoi=aoi, window=window,
                          collection=args.collection or settings.source_collection,
                          max_cloud_pct=args.max_cloud)
    return items, "search", url


def run(args: argparse.Namespace) -> int:
    from cloudfree.catalogs import resolve_bands
    from cloudfree.grid import check_epsg, parse_bbox, parse_date_window, parse_geojson
    from cloudfree.masking import DEFAULT_DILATION_M
    from cloudfree.plan import Budgets, area_tiles, budget_problems, budget_table, build_plan
    from cloudfree.sentinel2 import DEFAULT_BANDS
    from cloudfree.tile import MosaicParams

    check_catalog_options(args)
    settings = Settings()
    bands = resolve_bands(args.bands) if args.bands else DEFAULT_BANDS
    params = MosaicParams(bands=bands, method=args.method, resolution_m=args.resolution,
                          mask=args.mask,
                          dilation_m=DEFAULT_DILATION_M if args.dilation is None
                          else args.dilation)
    aoi = (parse_geojson(args.geojson) if args.geojson
           else parse_bbox(args.bbox) if args.bbox else None)
    window = parse_date_window(args.datetime) if args.datetime else None
    check_epsg(args.epsg)
    budgets = Budgets.from_settings(settings)
    if aoi is not None:  # the grid's budgets, before any search
        area_tiles(aoi, resolution_m=args.resolution, tile_size_px=args.tile_size,
                   epsg=args.epsg, budgets=budgets)
    items, origin, api_url = _items(args, settings, aoi, window)
    plan = build_plan(items, params=params, aoi=aoi, window=window,
                      max_cloud_pct=args.max_cloud, tile_size_px=args.tile_size,
                      epsg=args.epsg, source=args.source, assume=args.assume_decoding,
                      api_url=api_url, origin=origin, budgets=budgets)
    if args.json:
        record = plan.as_dict()
        record["budgets"] = budget_table(plan, budgets)
        print(json.dumps(record, indent=1))
    else:
        print(plan.render())
        for problem in budget_problems(plan, budgets):
            print(f"budget: {problem}")
    return 0
