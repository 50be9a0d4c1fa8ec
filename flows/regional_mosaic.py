"""Scheduled regional mosaics: a region cut into grid tiles, one COG set and item each."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from cloudfree.catalogs import resolve_bands
from cloudfree.grid import grid_tiles, parse_bbox, parse_date_window, parse_geojson
from cloudfree.masking import DEFAULT_DILATION_M
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.settings import Settings
from cloudfree.tile import MosaicParams, halo_px, items_for_tile
from flows._tasks import (
    MosaicMethod,
    dask_client,
    plan_run,
    preflight,
    search_task,
    tile_task,
)


@flow(name="regional-mosaic", log_prints=True)
def regional_mosaic(
    datetime: str,
    bbox: list[float] | str | None = None,
    geojson: dict[str, Any] | str | None = None,
    collection: str | None = None,
    max_cloud_pct: float | None = None,
    method: MosaicMethod = "median",
    target_date: str | None = None,
    resolution_m: float = 10.0,
    tile_size_px: int = 512,
    epsg: int | None = None,
    dilation_m: float | None = None,
    force: bool = False,
    bands: list[str] | None = None,
    source: str | None = None,
    assume_decoding: str | None = None,
    signer: str | None = None,
) -> dict[str, Any]:
    """Mosaic every grid tile of a region; tiles already published with the same
    inputs are skipped.

    Args: as :func:`flows.aoi_mosaic.aoi_mosaic` (``bands``, ``source``,
    ``assume_decoding``, ``signer`` and the plan's budgets included), plus ``tile_size_px``,
    the grid tile size in pixels.
    """
    settings = Settings()
    aoi = parse_geojson(geojson) if geojson is not None else parse_bbox(bbox or "")
    window = parse_date_window(datetime)
    params = MosaicParams(bands=resolve_bands(bands) if bands else DEFAULT_BANDS,
                          method=method, target_date=target_date, resolution_m=resolution_m,
                          chunksize=min(1024, tile_size_px),
                          dilation_m=DEFAULT_DILATION_M if dilation_m is None else dilation_m)
    tiles = grid_tiles(aoi, resolution_m=resolution_m, tile_size_px=tile_size_px, epsg=epsg)
    collection = collection or settings.source_collection
    preflight(settings, bands=params.bands)
    items = search_task(settings, collection=collection, aoi=aoi, window=window,
                        max_cloud_pct=max_cloud_pct, bands=params.bands, source=source,
                        assume=assume_decoding, signer=signer)
    plan = plan_run(settings, items, params=params, aoi=aoi, window=window,
                    tile_size_px=tile_size_px, epsg=epsg, source=source, assume=assume_decoding)
    planned = {t.tile.tile_id for t in plan.tiles}  # the grid tiles that have scenes
    tiles = [t for t in tiles if t.tile_id in planned]
    logger = get_run_logger()
    with dask_client(settings):
        futures = [
            tile_task.submit(settings, items_for_tile(items, tile, halo=halo_px(params)), tile,
                             window, params,
                             collection=collection, force=force)
            for tile in tiles
        ]
        outcomes = [f.result() for f in futures]
    for o in outcomes:
        logger.info("%s %s (%d scenes)", o.status, o.item_id, o.n_sources)
    return {"tiles": [vars(o) for o in outcomes]}
