"""Scheduled regional mosaics: a region cut into grid tiles, one COG set and item each."""

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


@flow(name="regional-mosaic", log_prints=True)
def regional_mosaic(
    datetime: str,
    bbox: list[float] | str | None = None,
    geojson: dict[str, Any] | str | None = None,
    collection: str | None = None,
    max_cloud_pct: float | None = None,
    method: MosaicMethod = "median",
    mask: MaskName = "auto",
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

    Bounded work (:func:`flows._tasks.run_tiles`): at most ``max_tiles_in_flight`` tiles at
    once, each planned, computed, encoded and published whole in one task on a Dask
    worker, only its outcome coming back. A failed tile does not stop the others; the run
    ends Failed after them, with the ``mosaic-tiles`` table artifact, and a re-run skips
    what was published and redoes only what failed.
    """
    settings = Settings()
    aoi = parse_aoi(bbox, geojson)
    window = parse_date_window(datetime)
    check_target_date(target_date, window)
    params = MosaicParams(bands=resolve_bands(bands) if bands else DEFAULT_BANDS,
                          method=method, mask=mask, target_date=target_date,
                          resolution_m=resolution_m,
                          chunksize=min(1024, tile_size_px),
                          dilation_m=DEFAULT_DILATION_M if dilation_m is None else dilation_m)
    return mosaic_area(settings, aoi=aoi, window=window, params=params,
                       tile_size_px=tile_size_px, epsg=epsg, collection=collection,
                       max_cloud_pct=max_cloud_pct, force=force, source=source,
                       assume=assume_decoding, signer=signer)
