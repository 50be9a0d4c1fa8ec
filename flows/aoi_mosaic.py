"""Disaster response: one mosaic of an area of interest over a date window, fast."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cloudfree.catalogs import resolve_bands
from cloudfree.grid import check_target_date, parse_aoi, parse_date_window
from cloudfree.masking import DEFAULT_DILATION_M
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.settings import Settings
from cloudfree.tile import MosaicParams
from flows._tasks import MaskName, MosaicMethod, mosaic_area


@flow(name="aoi-mosaic", log_prints=True)
def aoi_mosaic(
    datetime: str,
    bbox: list[float] | str | None = None,
    geojson: dict[str, Any] | str | None = None,
    collection: str | None = None,
    max_cloud_pct: float | None = None,
    method: MosaicMethod = "median",
    mask: MaskName = "auto",
    target_date: str | None = None,
    resolution_m: float = 10.0,
    epsg: int | None = None,
    dilation_m: float | None = None,
    force: bool = False,
    bands: list[str] | None = None,
    source: str | None = None,
    assume_decoding: str | None = None,
    signer: str | None = None,
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
        mask: the cloud and shadow detector, ``cloudfree.detection.list_detectors("mosaic")``
            or ``auto`` (default: per tile, the first of
            :data:`cloudfree.detection.AUTO_ORDER` that can run on its sources, e.g.
            multitemporal on an L2A series of 4+ dates); one that cannot run on a tile
            fails the run's plan, before anything is written.
        target_date: the date a targeted method aims at (default: the window's middle).
        resolution_m: output pixel size.
        epsg: output CRS (default: the UTM zone of the AOI's centre).
        dilation_m: the SCL mask's dilation (default: the library's): ``scl``'s, and that of
            the SCL ``multitemporal`` unites with.
        force: re-make the mosaic even when published with the same inputs.
        bands: the bands to mosaic (``--bands`` names: cloudfree names, Sentinel-2 ids or
            common names; default :data:`cloudfree.sentinel2.DEFAULT_BANDS`).
        source: the catalog profile of the items (default: from each item's collection and
            hosts), see :data:`cloudfree.catalogs.PROFILES`.
        assume_decoding: the DN decoding of items whose metadata does not decide it
            (``"scale=0.0001,offset=-0.1"`` or a preset of :data:`cloudfree.catalogs.PRESETS`).
        signer: href signer name (default: the profile's, e.g. planetary-computer).

    The run's plan (:func:`cloudfree.plan.build_plan`, as ``cloudfree plan``) is logged
    first; a plan over the settings' budgets (``max_tiles``, ``max_scenes_per_tile``,
    ``max_tile_memory_gib``, ``max_pixels_per_tile``) is refused with
    :class:`~cloudfree.errors.BudgetExceededError` before anything is written. An AOI of
    more than ``max_pixels_per_tile`` pixels is cut into grid tiles of
    :data:`cloudfree.plan.DEFAULT_TILE_SIZE_PX` px instead of one tile
    (:func:`cloudfree.plan.area_tiles`), run as the regional flow runs its tiles: at most
    ``max_tiles_in_flight`` at once, each whole on a Dask worker; a failed tile fails the
    run after the others (:func:`flows._tasks.run_tiles`).
    """
    settings = Settings()
    aoi = parse_aoi(bbox, geojson)
    window = parse_date_window(datetime)
    check_target_date(target_date, window)
    params = MosaicParams(bands=resolve_bands(bands) if bands else DEFAULT_BANDS,
                          method=method, mask=mask, target_date=target_date,
                          resolution_m=resolution_m,
                          dilation_m=DEFAULT_DILATION_M if dilation_m is None else dilation_m)
    return mosaic_area(settings, aoi=aoi, window=window, params=params, tile_size_px=None,
                       epsg=epsg, collection=collection, max_cloud_pct=max_cloud_pct,
                       force=force, source=source, assume=assume_decoding, signer=signer)
