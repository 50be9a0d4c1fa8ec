"""Disaster response: one mosaic of an area of interest over a date window, fast."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from cloudfree.grid import aoi_tile, parse_bbox, parse_date_window, parse_geojson
from cloudfree.masking import DEFAULT_DILATION_M
from cloudfree.settings import Settings
from cloudfree.tile import MosaicParams
from flows._tasks import MosaicMethod, dask_client, preflight, search_task, tile_task


@flow(name="aoi-mosaic", log_prints=True)
def aoi_mosaic(
    datetime: str,
    bbox: list[float] | str | None = None,
    geojson: dict[str, Any] | str | None = None,
    collection: str | None = None,
    max_cloud_pct: float | None = None,
    method: MosaicMethod = "median",
    target_date: str | None = None,
    resolution_m: float = 10.0,
    epsg: int | None = None,
    dilation_m: float | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Search, composite and publish one mosaic covering the AOI.

    Args:
        datetime: ``YYYY-MM-DD/YYYY-MM-DD``.
        bbox: ``[minx, miny, maxx, maxy]`` in degrees (or a comma string); or
        geojson: a GeoJSON geometry/Feature/FeatureCollection, or a path to one.
        collection: source collection (default: the settings' source collection).
        max_cloud_pct: skip scenes with more scene-level cloud cover than this.
        method: a mosaic method of the registry, ``cloudfree.methods.list_methods("mosaic")``
            (the parameter schema lists them).
        target_date: the date a targeted method aims at (default: the window's middle).
        resolution_m: output pixel size.
        epsg: output CRS (default: the UTM zone of the AOI's centre).
        dilation_m: cloud/shadow mask dilation (default: the library's).
        force: re-make the mosaic even when published with the same inputs.
    """
    settings = Settings()
    aoi = parse_geojson(geojson) if geojson is not None else parse_bbox(bbox or "")
    window = parse_date_window(datetime)
    params = MosaicParams(method=method, target_date=target_date, resolution_m=resolution_m,
                          dilation_m=DEFAULT_DILATION_M if dilation_m is None else dilation_m)
    tile = aoi_tile(aoi, resolution_m=resolution_m, epsg=epsg)
    collection = collection or settings.source_collection
    preflight(settings, bands=params.bands)
    items = search_task(settings, collection=collection, aoi=aoi, window=window,
                        max_cloud_pct=max_cloud_pct)
    with dask_client(settings):
        outcome = tile_task(settings, items, tile, window, params, collection=collection,
                            force=force)
    get_run_logger().info("%s %s from %d scenes", outcome.status, outcome.item_id,
                          outcome.n_sources)
    return {"tiles": [vars(outcome)]}
