"""``cloudfree demo``: the regional flow over the demo collection, then a report of
what a downstream user sees: item ids, COG URLs, a STAC search and a quicklook."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cloudfree._stac_api import get_json
from cloudfree.demo.source import demo_region
from cloudfree.errors import UnknownCollectionError
from cloudfree.settings import Settings


def run_demo(
    settings: Settings,
    regional_mosaic: Callable[..., dict[str, Any]],
    *,
    method: str = "median",
    tile_size_px: int = 512,
    force: bool = False,
) -> dict[str, Any]:
    """Run ``regional_mosaic`` (the Prefect flow, passed in so the library never
    imports Prefect) over the demo collection and print the report."""
    from pystac_client import Client

    from cloudfree.demo.report import quicklook
    from cloudfree.search import open_client

    client = open_client(settings.stac_url)
    if get_json(f"{settings.stac_url}/collections/{settings.source_collection}") is None:
        raise UnknownCollectionError(
            settings.source_collection, settings.stac_url, [c.id for c in client.get_collections()]
        )
    scenes = list(
        client.search(collections=[settings.source_collection], max_items=10_000).items_as_dicts()
    )
    epsg, bbox, window = demo_region(scenes, tile_size_px=tile_size_px)
    print(
        f"demo: {len(scenes)} scenes; region {', '.join(f'{v:.4f}' for v in bbox)} "
        f"(EPSG:{epsg}), window {window}, method {method}"
    )
    t0 = time.perf_counter()
    result = regional_mosaic(
        datetime=window,
        bbox=list(bbox),
        method=method,
        tile_size_px=tile_size_px,
        epsg=epsg,
        force=force,
    )
    elapsed = time.perf_counter() - t0
    tiles = result["tiles"]
    n_new = sum(t["status"] == "published" for t in tiles)
    print(
        f"\nmosaic flow: {len(tiles)} tiles ({n_new} published, {len(tiles) - n_new} "
        f"skipped as already published with the same inputs) in {elapsed:.1f} s"
    )
    print("\npublished items:")
    for t in tiles:
        print(f"  {t['item_id']}")
    print("\nCOG URLs:")
    for t in tiles:
        for href in sorted(t["hrefs"].values()):
            if href.endswith(".tif"):
                print(f"  {href}")

    print(f"\npystac-client search of {settings.output_collection!r} at {settings.stac_url}:")
    search = Client.open(settings.stac_url).search(
        collections=[settings.output_collection], bbox=list(bbox), datetime=window
    )
    found = list(search.items_as_dicts())
    wanted = {t["item_id"] for t in tiles}
    found_ids = {it["id"] for it in found}
    for it in found:
        if it["id"] in wanted:
            print(
                f"  found {it['id']}  {it['properties']['start_datetime'][:10]}.."
                f"{it['properties']['end_datetime'][:10]}  {len(it['assets'])} assets"
            )
    missing = wanted - found_ids
    if missing:
        raise RuntimeError(f"published items missing from the search: {sorted(missing)}")

    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"quicklook-{method}.png"
    mine = [it for it in found if it["id"] in wanted]
    quicklook(scenes, mine, gdal_env=settings.gdal_env()).save(path)
    print(f"\nquicklook (an input date beside the mosaic): {path.resolve()}")
    return {"tiles": tiles, "quicklook": str(path)}
