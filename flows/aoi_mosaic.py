"""Disaster response: one mosaic of an area of interest over a date window, fast; or, with
an event date, the pre/post pair around it with its change layers."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from cloudfree.catalogs import resolve_bands
from cloudfree.errors import InvalidParameterError
from cloudfree.event import (
    DEFAULT_LOOK_AHEAD_DAYS,
    DEFAULT_LOOK_BACK_DAYS,
    MAX_NAME_CHARS,
    event_window,
    parse_event,
)
from cloudfree.grid import check_target_date, parse_aoi, parse_date_window
from cloudfree.masking import DEFAULT_DILATION_M
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.settings import Settings
from cloudfree.tile import MosaicParams
from flows._tasks import MaskName, MosaicMethod, mosaic_area

#: The ``event_date`` parameter: a day, as the parameter schema checks it (Prefect refuses
#: another shape before a run starts); the flow checks that it is a real day in the window.
EventDate = Annotated[str | None, Field(
    default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"},
    description="event mode: the event's day, YYYY-MM-DD; publishes a pre and a post "
    "product per tile and the change layers (datetime then bounds how far back and "
    f"forward to look; default {DEFAULT_LOOK_BACK_DAYS} days before to "
    f"{DEFAULT_LOOK_AHEAD_DAYS} days after)")]
#: The ``event_name`` parameter: free text, bounded.
EventName = Annotated[str | None, Field(default=None, max_length=MAX_NAME_CHARS)]


@flow(name="aoi-mosaic", log_prints=True)
def aoi_mosaic(
    datetime: str | None = None,
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
    event_date: EventDate = None,
    event_name: EventName = None,
    tile_size_px: int | None = None,
) -> dict[str, Any]:
    """Search, composite and publish one mosaic covering the AOI (or, with ``event_date``,
    the event pair).

    Args:
        datetime: ``YYYY-MM-DD/YYYY-MM-DD`` (required without ``event_date``).
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
        event_date: event mode (:mod:`cloudfree.event`): per tile a ``post`` product (per
            pixel the earliest clear observation after the day), published first with the
            change layers (dNBR, dNDWI, dNDVI, ``change_valid``), then a ``pre`` product
            (the latest at or before it), linked ``related``; ``method`` fills their gaps
            where it can. ``datetime`` must hold the day and one after it; without it,
            :data:`~cloudfree.event.DEFAULT_LOOK_BACK_DAYS` before to
            :data:`~cloudfree.event.DEFAULT_LOOK_AHEAD_DAYS` after. No ``target_date``.
        event_name: the event's name, in ``cloudfree:event`` of both items.
        tile_size_px: cut the AOI into grid tiles of this many pixels (default: one tile,
            or grid tiles of :data:`cloudfree.plan.DEFAULT_TILE_SIZE_PX` px when the AOI
            is larger than ``max_pixels_per_tile``, below).

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
    event = None if event_date is None else parse_event(event_date, event_name)
    if event is None:
        if datetime is None:
            raise InvalidParameterError("datetime", None, "give the window, "
                                        "YYYY-MM-DD/YYYY-MM-DD (or an event_date)")
        window = parse_date_window(datetime)
        check_target_date(target_date, window)
    else:
        if target_date is not None:
            raise InvalidParameterError(
                "target_date", target_date, "event mode aims each side at the event date; "
                "leave target_date out with event_date")
        window = event_window(datetime, event)
    params = MosaicParams(bands=resolve_bands(bands) if bands else DEFAULT_BANDS,
                          method=method, mask=mask, target_date=target_date,
                          resolution_m=resolution_m,
                          dilation_m=DEFAULT_DILATION_M if dilation_m is None else dilation_m)
    return mosaic_area(settings, aoi=aoi, window=window, params=params, tile_size_px=tile_size_px,
                       epsg=epsg, collection=collection, max_cloud_pct=max_cloud_pct,
                       force=force, source=source, assume=assume_decoding, signer=signer,
                       event=event)
