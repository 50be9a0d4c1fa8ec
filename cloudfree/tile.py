"""One tile, in four steps: plan → compute → write → publish.

``plan_tile`` decides, from the source items and the parameters alone, what the tile will
be: its sources, its item id and its inputs hash (a re-run with the same inputs is
skipped), and resolves the cloud detector (``auto``: per tile, :func:`resolve_mask`).
``compute_tile`` builds the cube (:mod:`cloudfree.cube`), masks it with the detector
(:func:`cloudfree.detection._dask.detect_cube`) and runs the method
(:mod:`cloudfree.methods`). ``write_tile``
encodes the COGs and the thumbnail (:mod:`cloudfree.cog`). ``publish_tile`` builds the
complete item (:mod:`cloudfree.publish`) and publishes it, in the order of DESIGN.md:
every COG first, the static JSON next, the API item last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from cloudfree import cog, methods
from cloudfree.cube import build_cube
from cloudfree.errors import InvalidParameterError
from cloudfree.grid import DateWindow, Tile, bbox_intersects
from cloudfree.masking import (
    DEFAULT_DILATE_CLASSES,
    DEFAULT_DILATION_M,
    DEFAULT_INVALID_CLASSES,
)
from cloudfree.methods import FILL_CLASSES, get_method
from cloudfree.publish import (
    WrittenAsset,
    build_item,
    inputs_hash,
    item_id,
    item_prefix,
    prefixes_overlap,
    product_digest,
    publish_item,
    published_item,
    within,
)
from cloudfree.quicklook import rgb_uint8, thumbnail
from cloudfree.sentinel2 import DEFAULT_BANDS, NODATA, OFFSET, SCALE

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

#: ``compute_tile``'s ``compose``: (parameters, reflectance cube, clear mask) -> lazy result.
Compose = Callable[["MosaicParams", xr.DataArray, xr.DataArray], xr.Dataset]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MosaicParams:
    """Everything that, with the source items, determines a mosaic."""

    bands: tuple[str, ...] = DEFAULT_BANDS
    #: A method of the registry (``cloudfree.methods.list_methods("mosaic")``).
    method: str = "median"
    #: For the targeted methods: the date the mosaic should show (default: the middle of
    #: the window). Ignored by the others.
    target_date: str | None = None
    #: The shipped weights to use (learned methods only).
    model: str = "default"
    resolution_m: float = 10.0
    invalid_classes: tuple[int, ...] = DEFAULT_INVALID_CLASSES
    dilate_classes: tuple[int, ...] = DEFAULT_DILATE_CLASSES
    dilation_m: float = DEFAULT_DILATION_M
    opening_m: float = 0.0
    chunksize: int = 1024
    compress: Literal["deflate", "zstd"] = "deflate"
    #: The cloud and shadow detector (``cloudfree.detection.list_detectors("mosaic")``), or
    #: ``auto``: the first of :data:`cloudfree.detection.AUTO_ORDER` that can run on the
    #: tile, resolved per tile by :func:`resolve_mask` (:func:`plan_tile` replaces it with
    #: the detector it resolved to). The SCL classes, dilation and opening above are the
    #: ``scl`` detector's parameters.
    mask: str = "auto"
    #: The named detector's own parameters, as ``(name, value)`` pairs (hashable; a dict is
    #: accepted and sorted into pairs): they override its defaults
    #: (:func:`mask_parameters`). None with ``auto``, whose detector is not known yet.
    mask_params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        from cloudfree.detection import get_detector

        get_method(self.method, "mosaic")
        if self.mask != "auto":
            get_detector(self.mask, "mosaic")
        pairs = self.mask_params.items() if isinstance(self.mask_params, Mapping) \
            else self.mask_params
        pairs = tuple(sorted((str(k), _hashable(v)) for k, v in pairs))
        object.__setattr__(self, "mask_params", pairs)
        if pairs and self.mask == "auto":
            raise InvalidParameterError(
                "mask_params", dict(pairs), "name the detector (mask=...) to give it "
                "parameters: 'auto' resolves per tile, to detectors that take others")
        if self.target_date is not None:
            try:
                dt.date.fromisoformat(self.target_date)
            except ValueError:
                raise InvalidParameterError("target_date", self.target_date,
                                            "give an ISO date, YYYY-MM-DD") from None

    def as_dict(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out["mask_params"] = {k: _plain(v) for k, v in self.mask_params}
        return out

    def method_options(self) -> dict[str, Any]:
        """The method's own options: the weights, for a learned method."""
        return {"model_name": self.model} if get_method(self.method).learned else {}


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class TileOutcome:
    """What one tile's run came to; small and picklable (it is all that comes back from a
    Dask worker).

    ``status``: ``published`` (this run made the live item), ``skipped`` (an item with the
    same inputs already was live, or a concurrent run published it), ``failed`` (``error``
    says why; built by the caller that caught the error, :meth:`failure`). ``dropped``: the
    source scenes left out because they could not be read (``{"id", "asset", "error"}``)."""

    tile_id: str
    item_id: str
    status: Literal["published", "skipped", "failed"]
    hrefs: dict[str, str] = field(default_factory=dict)
    n_sources: int = 0
    error: str | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def failure(cls, tile_id: str, item_id: str, error: BaseException | str,
                n_sources: int = 0) -> TileOutcome:
        """The outcome of a tile whose run raised ``error`` (its type and message, one
        line)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(tile_id, item_id, "failed", n_sources=n_sources,
                   error=" ".join(text.split()))


@dataclass(frozen=True)
class TilePlan:
    """What a tile will be, decided before any pixel is read."""

    tile: Tile
    window: DateWindow
    #: The parameters, with a targeted method's default target date filled in.
    params: MosaicParams
    sources: list[dict[str, Any]]
    #: The method as it appears in the item id (a learned one with its model version).
    label: str
    item_id: str
    inputs_hash: str
    #: :func:`~cloudfree.publish.product_digest` of :attr:`product` (its head is the end
    #: of the item id).
    product_digest: str = ""
    #: What decides the pixels besides the sources: the parameters the id derives from.
    product: dict[str, Any] = field(default_factory=dict)
    #: Where this run writes, when not :meth:`deterministic_url` (a fresh folder, chosen by
    #: :func:`mosaic_tile` while another making of the item is live).
    prefix: str | None = None

    def item_url(self, output_root: str) -> str:
        """The folder of every making of the item: ``{root}/{tile_id}/{item_id}``."""
        return f"{output_root.rstrip('/')}/{self.tile.tile_id}/{self.item_id}"

    def deterministic_url(self, output_root: str) -> str:
        """``{root}/{tile_id}/{item_id}/{inputs_hash[:12]}``: a re-run after a crash (the item
        not live) writes over its own half-written files, and leaves nothing behind."""
        return f"{self.item_url(output_root)}/{self.inputs_hash[:12]}"

    def base_url(self, output_root: str) -> str:
        """Where the tile's files go: :attr:`prefix` when set, else
        :meth:`deterministic_url`; never the folder of the live item's files (see
        :func:`mosaic_tile`)."""
        return self.prefix or self.deterministic_url(output_root)


def mask_parameters(params: MosaicParams, detector: str | None = None) -> dict[str, Any]:
    """Every parameter the mask's detector runs with (``detector``, default
    ``params.mask``, which must then be resolved): its defaults, the SCL classes, dilation
    and opening of ``params`` for ``scl`` (the dilation of the SCL it unites with, for
    ``multitemporal``), then ``params.mask_params``
    (:func:`cloudfree.detection._dask.detector_parameters`)."""
    from cloudfree.detection._dask import detector_parameters

    name = detector or params.mask
    if name == "auto":
        raise InvalidParameterError("mask", name, "resolve it first (resolve_mask)")
    base: dict[str, Any] = {}
    if name == "multitemporal":  # the SCL it unites with is dilated as --dilation says
        base = {"scl_dilation_m": float(params.dilation_m)}
    if name == "scl":
        base = {"invalid_classes": tuple(sorted(int(c) for c in params.invalid_classes)),
                "dilate_classes": tuple(sorted(int(c) for c in params.dilate_classes)),
                "dilation_m": float(params.dilation_m), "opening_m": float(params.opening_m)}
    return detector_parameters(name, {**base, **dict(params.mask_params)})


def _auto_candidates(params: MosaicParams) -> list[str]:
    """What ``auto`` may resolve to on a cube of ``params.bands`` (dates and SCL unknown)."""
    from cloudfree.detection import AUTO_ORDER, get_detector

    out = [name for name in AUTO_ORDER
           if not get_detector(name).missing(params.bands, has_scl=True, n_dates=10**6)]
    return out or list(AUTO_ORDER)


def mask_reach_px(params: MosaicParams, detector: str | None = None) -> int:
    """How far the clear mask at a pixel looks at the data around it, in whole pixels: the
    detector's halo (:meth:`cloudfree.detection.DetectorSpec.halo_px` at its
    :func:`mask_parameters`; ``scl``: the opening, twice, plus the dilation). ``detector``
    (default ``params.mask``); for ``auto`` unresolved, the largest halo of the detectors
    it may resolve to (what a tile's sources are first gathered with)."""
    from cloudfree.detection import get_detector

    name = detector or params.mask
    if name == "auto":
        return max(mask_reach_px(params, c) for c in _auto_candidates(params))
    return get_detector(name).halo_px(params.resolution_m, mask_parameters(params, name))


def halo_px(params: MosaicParams, detector: str | None = None) -> int:
    """The tile halo: the mask's reach (:func:`mask_reach_px`, of ``detector``, default
    ``params.mask``; an upper bound while that is ``auto``) plus the method's declared
    neighbourhood (the registry's ``halo_px``). A tile reads and computes on its bounds
    grown by this much, then crops, so two adjacent tiles agree at their shared edge."""
    return mask_reach_px(params, detector) + get_method(params.method).halo_px


def chunk_px(params: MosaicParams, grown: Tile) -> int:
    """The cube's chunk size on a grown tile: ``params.chunksize``, unless that is under
    twice the halo (a small tile): then the grown tile in one chunk, up to 1024 px. Each
    chunk is computed with its method's overlap on every side, so chunks much smaller than
    that overlap would compute the same pixels many times over."""
    halo = halo_px(params)
    if params.chunksize >= 2 * halo:
        return params.chunksize
    return max(params.chunksize, min(max(grown.shape), 1024))


def items_for_tile(items: Sequence[Mapping[str, Any]], tile: Tile, *, halo: int = 0
                   ) -> list[dict[str, Any]]:
    """The items whose bbox intersects the tile grown by ``halo`` pixels (a tile's sources
    are every scene its halo reads, or its edge would not see what its neighbour sees)."""
    box = tile.grown(halo).bbox_latlon()
    return [dict(it) for it in items if bbox_intersects(tuple(it["bbox"]), box)]


# --------------------------------------------------------------------------- 1. plan


def _has_scl(item: Mapping[str, Any]) -> bool:
    """The item has a scene classification asset; one with no assets listed (only what
    planning reads) is taken as the pipeline's L2A, with SCL, unless it says it is L1C."""
    from cloudfree.catalogs import choose_profile
    from cloudfree.catalogs._assets import find_scl_asset
    from cloudfree.errors import CloudFreeError

    if _level(item) == "L1C":
        return False
    if not item.get("assets"):
        return True
    try:
        find_scl_asset(item, choose_profile(item)[0])
    except CloudFreeError:
        return False
    return True


def _level(item: Mapping[str, Any]) -> str | None:
    """``L1C``, ``L2A`` or None, from the product type or the collection."""
    props = item.get("properties") or {}
    text = " ".join(str(v) for v in (props.get("s2:product_type"), item.get("collection"),
                                     props.get("processing:level")) if v).upper()
    if "L1C" in text or "MSI1C" in text:
        return "L1C"
    if "L2A" in text or "MSI2A" in text:
        return "L2A"
    return None


def source_needs(sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a detector's needs are checked against, from a tile's source items alone:
    ``has_scl`` (every one has a scene classification asset: the cube reads it),
    ``n_dates`` (distinct UTC days: the cube's time steps) and ``level`` (the one
    processing level they share, or None). No sources: an SCL is assumed (the pipeline's
    L2A), with 0 dates."""
    days = {str((s.get("properties") or {}).get("datetime") or "")[:10] for s in sources}
    levels = {_level(s) for s in sources}
    return {"has_scl": all(_has_scl(s) for s in sources), "n_dates": len(days),
            "level": levels.pop() if len(levels) == 1 else None}


def resolve_mask(items: Sequence[Mapping[str, Any]], tile: Tile, params: MosaicParams
                 ) -> tuple[str, list[dict[str, Any]]]:
    """The detector ``params.mask`` resolves to on ``tile``, with the tile's sources (the
    items its halo reads, :func:`items_for_tile` grown by that detector's
    :func:`halo_px`). ``auto``: the first of :func:`cloudfree.detection.auto_order` that
    can run (:func:`cloudfree.detection.runnable`) on its own sources: the cube's bands
    (``params.bands``), whether they carry SCL, their distinct dates and level
    (:func:`source_needs`). Pure: reads nothing.

    Raises:
        MissingDetectorInputError: a named detector (or every one ``auto`` tries) cannot
            run on the tile's sources; it names what is missing and what would run.
    """
    from cloudfree.detection import auto_order, choose, runnable

    if params.mask == "auto":  # the order depends on the sources' level
        level = source_needs(items_for_tile(items, tile, halo=halo_px(params)))["level"]
        names = list(auto_order(level))
    else:
        names = [params.mask]
    sources: list[dict[str, Any]] = []
    needs: dict[str, Any] = {}
    for name in names:
        sources = items_for_tile(items, tile, halo=halo_px(params, name))
        needs = source_needs(sources)
        if not sources:  # nothing to compute (the plan of a tile without scenes): one date
            needs["n_dates"] = 1
        if params.mask != "auto" or name in runnable(params.bands, **needs):
            return choose(name, params.bands, **needs), sources
    choose("auto", params.bands, **needs)  # raises: nothing can run
    raise AssertionError("unreachable")  # pragma: no cover


def source_profile(sources: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """How the sources decode, as a product sees it: the catalog profiles they were read
    by (``cloudfree:decoding``, or the profile :func:`cloudfree.catalogs.choose_profile`
    gives an item not yet prepared, as the cube would) and any ``--assume-decoding``. A new
    scene from the same catalog changes neither."""
    from cloudfree.catalogs import DECODING_PROPERTY, choose_profile

    profiles: set[str] = set()
    assumed: set[str] = set()
    for item in sources:
        decoding = (item.get("properties") or {}).get(DECODING_PROPERTY)
        if not decoding:
            profiles.add(choose_profile(item)[0].name)
            continue
        profiles.add(str(decoding.get("profile")))
        assumed.update(str(b.get("source")) for b in decoding.get("bands", [])
                       if str(b.get("source", "")).startswith("--assume-decoding"))
    return {"profiles": sorted(profiles), "assumed_decoding": sorted(assumed)}


def product_definition(tile: Tile, window: DateWindow, params: MosaicParams, label: str,
                       sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every parameter that decides a tile's pixels, but not which scenes it reads: the item
    id derives from it (:func:`~cloudfree.publish.product_digest`), so another target date,
    band set, resolution, CRS, mask or catalog is another item. The chunk size and the
    compression decide no pixel and are not in it (they are in the inputs hash)."""
    return {
        "tile": {"id": tile.tile_id, "epsg": tile.epsg,
                 "bounds": [float(v) for v in tile.bounds],
                 "resolution_m": float(tile.resolution_m)},
        "window": window.compact,
        "method": label,
        "method_parameters": methods.hashed_parameters(params.method),
        "target_date": params.target_date if get_method(params.method).targeted else None,
        "bands": list(params.bands),
        "mask": mask_definition(params),
        "source_profile": source_profile(sources),
    }


def mask_definition(params: MosaicParams) -> dict[str, Any]:
    """The mask as a product sees it (``params.mask`` resolved): ``scl``'s parameters alone
    for ``scl`` (the product definition of the mosaics made before other detectors
    existed, so their item ids stand), else ``{"detector": name, **its parameters}``."""
    parameters = mask_parameters(params)
    return parameters if params.mask == "scl" else {"detector": params.mask, **parameters}


def plan_tile(items: Sequence[Mapping[str, Any]], tile: Tile, window: DateWindow,
              params: MosaicParams) -> TilePlan:
    """The tile's sources, item id and inputs hash (pure: reads nothing).

    The id is the tile, window, method and version, then the head of the product digest
    (:func:`product_definition`); the inputs hash adds the sources and every parameter.
    The mask is resolved first (:func:`resolve_mask`; ``params.mask`` of the plan is the
    detector, never ``auto``), which raises
    :class:`~cloudfree.errors.MissingDetectorInputError` for a detector that cannot run."""
    mask, sources = resolve_mask(items, tile, params)
    params = dataclasses.replace(params, mask=mask)
    if params.target_date is None and get_method(params.method).targeted:
        middle = window.start + (window.end - window.start) / 2
        params = dataclasses.replace(params, target_date=middle.isoformat())
    label = methods.label(params.method, params.method_options())
    product = product_definition(tile, window, params, label, sources)
    digest = product_digest(product)
    hashed = {**params.as_dict(), "mask_parameters": mask_parameters(params),
              "method_label": label, "tile": tile.tile_id,
              "bounds": list(tile.bounds), "window": window.compact,
              **methods.hashed_parameters(params.method), "product": digest}
    return TilePlan(tile=tile, window=window, params=params, sources=sources, label=label,
                    item_id=item_id(tile.tile_id, window, label, product=digest),
                    inputs_hash=inputs_hash(sources, hashed), product_digest=digest,
                    product=product)


# --------------------------------------------------------------------------- 2. compute


def compute_tile(
    items: Sequence[Mapping[str, Any]],
    tile: Tile,
    params: MosaicParams,
    *,
    gdal_env: dict[str, Any] | None = None,
    read_failure_policy: Literal["fail", "drop"] = "drop",
    compose: Compose | None = None,
) -> xr.Dataset:
    """Build the cube, mask it and run the method on the tile grown by :func:`halo_px`, then
    crop back to the tile; returns computed numpy data (a corrected method's choice of
    candidate and width in ``attrs["parameters"]``, the detector and its parameters in
    ``attrs["mask"]``).

    The mask is ``params.mask``'s detector (``auto`` resolved on ``items`` by
    :func:`resolve_mask`) run per chunk with its halo
    (:func:`cloudfree.detection._dask.detect_cube`); the cube carries the SCL band when
    the sources have one, and the per-date sun the items record (else the detector
    computes it at the tile's centre). Everything a pixel depends on lies within the halo
    (the detector's reach, the method's neighbourhood), so two adjacent tiles agree at
    their shared edge; only the per-tile choices of the corrected methods (the
    correction's candidate and width, the generator's test-time head) are made on the
    grown tile's pixels and may differ between neighbours. A tile's ``auto`` choice is
    its own too: a tile with fewer dates than its neighbour may resolve to another
    detector.

    A source read that still fails (after GDAL's and the reader's retries) raises
    :class:`~cloudfree.errors.SourceReadError` with ``read_failure_policy="fail"``; with
    ``"drop"`` the scene is left out and the tile computed again without it, exactly as a
    run without that scene (a pass per failing scene, so at most one per scene; none
    left: :class:`~cloudfree.errors.NoReadableSourceError`). ``attrs["dropped_sources"]``
    lists the dropped scenes, ``[{"id", "asset", "error"}]`` (``[]`` when none). Progress
    goes to :mod:`cloudfree.progress` (stages ``read``, the method's, ``compute``).

    ``compose``: what turns the masked cube into the lazy result instead of the method
    alone, ``compose(params, reflectance, clear)`` (an event side's latest or earliest clear
    observation, its gaps filled by the method: :func:`cloudfree.event.compose_side`); it
    returns the variables a method does, on the grown tile."""
    from cloudfree import progress
    from cloudfree.errors import NoReadableSourceError, SourceReadError

    if not items:
        raise InvalidParameterError("items", [], f"no scene intersects tile {tile.tile_id}")
    if read_failure_policy not in ("fail", "drop"):
        raise InvalidParameterError("read_failure_policy", read_failure_policy,
                                    "give 'fail' (fail the tile) or 'drop' (drop the scene)")
    lonlat = _centre_lonlat(tile)
    used = {"params": params}

    def run(sources: list[dict[str, Any]]) -> xr.Dataset:
        from cloudfree.detection._dask import detect_cube

        # auto: resolved on these sources (a pass after a dropped scene may resolve anew)
        p = params if params.mask != "auto" else dataclasses.replace(
            params, mask=resolve_mask(sources, tile, params)[0])
        used["params"] = p
        halo = halo_px(p)
        grown = tile.grown(halo)
        needs = source_needs(sources)
        cube = build_cube(
            sources, [*p.bands, *(["scl"] if needs["has_scl"] else [])], tile=grown,
            chunksize=chunk_px(p, grown), gdal_env=gdal_env,
        )
        cube = _with_sun(cube, sources)
        reflectance = cube.sel(band=list(p.bands))
        clear = detect_cube(p.mask, reflectance,
                            cube.sel(band="scl") if needs["has_scl"] else None,
                            resolution_m=tile.resolution_m, params=mask_parameters(p),
                            level=needs["level"], lonlat=lonlat)
        if compose is not None:
            result = compose(p, reflectance, clear)
        else:
            result = methods.mosaic(p.method, reflectance, clear,
                                    target_date=p.target_date, **p.method_options())
        if halo:
            result = result.isel(y=slice(halo, -halo), x=slice(halo, -halo))
        with progress.dask_tasks(tile.tile_id) as callbacks:
            return methods.compute(p.method, result, callbacks=callbacks)

    remaining = [dict(item) for item in items]
    dropped: list[dict[str, str]] = []
    while True:  # each pass returns, raises, or drops one scene: bounded by len(items)
        try:
            computed = run(remaining)
            break
        except SourceReadError as exc:
            left = [it for it in remaining if str(it.get("id")) != exc.item_id]
            if read_failure_policy == "fail" or len(left) == len(remaining):
                raise
            dropped.append({"id": exc.item_id, "asset": exc.asset, "error": exc.reason})
            progress.report(tile.tile_id, "dropped", len(dropped), len(items), unit="scenes")
            if not left:
                raise NoReadableSourceError(tile.tile_id, dropped) from None
            remaining = left
    final = used["params"]
    computed.attrs["halo_px"] = halo_px(final)
    computed.attrs["dropped_sources"] = dropped
    computed.attrs["mask"] = {"detector": final.mask, "parameters": mask_parameters(final)}
    return computed


def _centre_lonlat(tile: Tile) -> tuple[float, float]:
    minx, miny, maxx, maxy = tile.bbox_latlon()
    return (minx + maxx) / 2, (miny + maxy) / 2


def _item_sun(item: Mapping[str, Any]) -> tuple[float, float] | None:
    """(zenith, azimuth) an item records, or None."""
    props = item.get("properties") or {}
    zenith, azimuth = props.get("s2:mean_solar_zenith"), props.get("s2:mean_solar_azimuth")
    if zenith is None and props.get("view:sun_elevation") is not None:
        zenith = 90.0 - float(props["view:sun_elevation"])
    azimuth = props.get("view:sun_azimuth") if azimuth is None else azimuth
    if zenith is None or azimuth is None:
        return None
    return float(zenith), float(azimuth)


def _with_sun(cube: xr.DataArray, sources: Sequence[Mapping[str, Any]]) -> xr.DataArray:
    """The cube with ``s2:mean_solar_zenith``/``_azimuth`` per time step: the mean of what
    the step's scenes record (the cube's ``id`` coordinate; several scenes of one day are
    joined by commas). Unchanged when a step's scenes record no sun: the detector then
    computes it (:func:`cloudfree.detection._dask.sun_angles`)."""
    if "id" not in cube.coords:
        return cube
    suns = {str(it.get("id")): _item_sun(it) for it in sources}
    zenith, azimuth = [], []
    for ids in np.atleast_1d(cube["id"].values):
        known = [sun for i in str(ids).split(",") if (sun := suns.get(i)) is not None]
        if not known:
            return cube
        zenith.append(float(np.mean([z for z, _ in known])))
        azimuth.append(float(np.mean([a for _, a in known])))
    return cube.assign_coords({"s2:mean_solar_zenith": ("time", zenith),
                               "s2:mean_solar_azimuth": ("time", azimuth)})


# --------------------------------------------------------------------------- 3. write


def _written(key: str, url: str, data: bytes, **kw: Any) -> WrittenAsset:
    return WrittenAsset(
        key=key, href=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **kw
    )


def write_tile(
    result: xr.Dataset, tile: Tile, *, base_url: str, fs: Any, params: MosaicParams
) -> list[WrittenAsset]:
    """Encode and upload one COG per band, the provenance rasters, a corrected method's
    ``uncertainty`` (one COG, a band per reflectance band) and an RGB thumbnail.

    ``fill`` carries its classes inside the TIFF, for a GIS: a colour table (QGIS shows
    it as paletted, in :data:`~cloudfree.publish.FILL_COLOURS`) and the CF
    ``flag_values``/``flag_meanings`` band metadata naming them (GDAL can keep category
    names only in an ``.aux.xml`` sidecar, which is not written: a sidecar is no asset of
    the item, and readers with ``GDAL_PAM_ENABLED=NO`` never see it). The item's
    ``classification:classes`` carry the same names and colours."""
    from cloudfree.publish import fill_colour

    crs, transform = f"EPSG:{tile.epsg}", tile.transform
    classes = sorted(FILL_CLASSES.items())
    fill_meta: dict[str, Any] = {
        "colormap": {code: (*fill_colour(name), 0 if code == 0 else 255)
                     for code, (name, _) in classes},
        "band_tags": [{"flag_values": " ".join(str(code) for code, _ in classes),
                       "flag_meanings": " ".join(name for _, (name, _) in classes)}],
    }
    written: list[WrittenAsset] = []
    for band in params.bands:
        data = cog.write_cog(
            result["reflectance"].sel(band=band).values,
            transform=transform, crs=crs, nodata=NODATA, scale=SCALE, offset=OFFSET,
            band_names=[band], compress=params.compress,
        )
        url = f"{base_url}/{band}.tif"
        cog.put(data, url, fs=fs)
        written.append(_written(band, url, data, media_type=COG_MEDIA_TYPE,
                                roles=("data", "reflectance"),
                                title=f"{band} surface reflectance", band=band))
    provenance = {  # variable: (nodata, title); classes and counts: nearest overviews
        "clear_count": (None, "clear-observation count"),
        "source_date": (0, "source date (days since 1970-01-01)"),
        "fill": (0, "fill method"),
    }
    for name, (nodata, title) in provenance.items():
        data = cog.write_cog(result[name].values, transform=transform, crs=crs,
                             nodata=nodata, band_names=[name], compress=params.compress,
                             overview_resampling="nearest",
                             **(fill_meta if name == "fill" else {}))
        url = f"{base_url}/{name}.tif"
        cog.put(data, url, fs=fs)
        written.append(_written(name, url, data, media_type=COG_MEDIA_TYPE,
                                roles=("data", "metadata"), title=title, kind=name))
    if "uncertainty" in result:  # a corrected method's 90 % interval, one band per band
        from cloudfree.methods.corrected import UNCERTAINTY_NODATA
        from cloudfree.publish import UNCERTAINTY_TITLE

        bands = list(params.bands)
        data = cog.write_cog(result["uncertainty"].sel(band=bands).values,
                             transform=transform, crs=crs, nodata=UNCERTAINTY_NODATA,
                             scale=SCALE, offset=0.0, band_names=bands,
                             compress=params.compress)
        url = f"{base_url}/uncertainty.tif"
        cog.put(data, url, fs=fs)
        written.append(_written("uncertainty", url, data, media_type=COG_MEDIA_TYPE,
                                roles=("data", "metadata"), title=UNCERTAINTY_TITLE,
                                kind="uncertainty", bands=tuple(bands)))
    if {"red", "green", "blue"} <= set(params.bands):
        refl = result["reflectance"]
        img = rgb_uint8(refl.sel(band="red").values, refl.sel(band="green").values,
                        refl.sel(band="blue").values)
        data = thumbnail(img)
        url = f"{base_url}/thumbnail.png"
        cog.put(data, url, fs=fs)
        written.append(_written("thumbnail", url, data, media_type="image/png",
                                roles=("thumbnail",), title="RGB thumbnail", kind="thumbnail"))
    return written


# --------------------------------------------------------------------------- 4. publish


def publish_tile(
    plan: TilePlan,
    result: xr.Dataset,
    written: Sequence[WrittenAsset],
    *,
    api_url: str,
    source_api_url: str,
    source_collection: str,
    output_collection: str,
    output_root: str,
    fs: Any,
    token: str | None = None,
    refresh: bool = True,
    extra_properties: Mapping[str, Any] | None = None,
    extra_links: Sequence[Mapping[str, Any]] = (),
) -> TileOutcome:
    """Build the complete item, write its static copy beside the COGs, publish it, then
    make the collection true of it (:func:`~cloudfree.publish.refresh_collection`: the
    API collection's extent and summaries, the static ``{output_root}/collection.json``).
    ``refresh=False`` (the tiles of a flow run): only grow the API collection's extent
    (:func:`~cloudfree.publish.merge_extent`, constant cost); the run refreshes the whole
    collection once at its end, since a refresh lists every live item.

    The static copy (``{base_url}/{item_id}.json``) is the item with relative ``self``,
    ``root``, ``parent`` and ``collection`` links to that ``collection.json`` and relative
    asset hrefs; the API item keeps only its ``derived_from`` and ``alternate`` links (the
    API makes the others). A targeted method's ``cloudfree:target_date`` and the scenes
    dropped as unreadable (``result.attrs["dropped_sources"]``) go into the item. ``token``
    goes with every write to ``api_url``. A failed refresh is logged, not raised: the
    item is live and complete, and the next refresh lists it. ``extra_properties`` and
    ``extra_links`` go into the item (:func:`~cloudfree.publish.build_item`)."""
    from cloudfree.publish import (
        STATIC_COLLECTION,
        merge_extent,
        refresh_collection,
        static_item,
    )

    params = plan.params
    count = result["clear_count"].values
    fill = result["fill"].values
    static_href = f"{plan.base_url(output_root)}/{plan.item_id}.json"
    item = build_item(
        item_id=plan.item_id, collection_id=output_collection, tile=plan.tile,
        window=plan.window, assets=written, source_items=plan.sources,
        source_api_url=source_api_url, source_collection=source_collection, method=plan.label,
        parameters={**params.as_dict(), "mask_parameters": mask_parameters(params),
                    **result.attrs.get("parameters", {})},
        digest=plan.inputs_hash, nodata_pct=100.0 * float(np.mean(count == 0)),
        fill_pct={name: round(100.0 * float(np.mean(fill == code)), 3)
                  for code, (name, _) in sorted(FILL_CLASSES.items())},
        software=methods.software(params.method, params.method_options()),
        static_href=static_href,
        target_date=params.target_date if get_method(params.method).targeted else None,
        dropped_sources=list(result.attrs.get("dropped_sources") or []),
        extra_properties=extra_properties, extra_links=extra_links,
    )
    static = static_item(item, item_href=static_href,
                         collection_href=f"{output_root.rstrip('/')}/{STATIC_COLLECTION}")
    cog.put(json.dumps(static, indent=1).encode(), static_href, fs=fs)
    publish_item(api_url, item, token=token)
    try:
        if refresh:
            refresh_collection(api_url, output_collection, output_root=output_root, fs=fs,
                               bands=params.bands, source_api_url=source_api_url, token=token)
        else:
            merge_extent(api_url, output_collection, item, token=token)
    except Exception as exc:  # derived state: the next refresh rebuilds it
        log.warning("tile %s: item %s is published, but the collection was not refreshed "
                    "(%s: %s); the next publish or a refresh of %s lists it", plan.tile.tile_id,
                    plan.item_id, type(exc).__name__, exc, output_collection)
    return TileOutcome(plan.tile.tile_id, plan.item_id, "published",
                       {w.key: w.href for w in written}, len(plan.sources))


class TileProduct:
    """The steps of :func:`mosaic_tile` that a product other than the plain mosaic makes
    its own (an event pair's side, :class:`cloudfree.event_tile.EventSide`): what it
    plans, computes, writes and adds to its item. This base is the plain mosaic:
    :func:`plan_tile`, :func:`compute_tile`, :func:`write_tile`, nothing added. Everything
    else of :func:`mosaic_tile` (the skip, the lock, the folders, the publish order, the
    clean-up) is the same for every product."""

    def plan(self, items: Sequence[Mapping[str, Any]], tile: Tile, window: DateWindow,
             params: MosaicParams) -> TilePlan:
        return plan_tile(items, tile, window, params)

    def compute(self, plan: TilePlan, *, gdal_env: dict[str, Any] | None,
                read_failure_policy: Literal["fail", "drop"]) -> xr.Dataset:
        return compute_tile(plan.sources, plan.tile, plan.params, gdal_env=gdal_env,
                            read_failure_policy=read_failure_policy)

    def write(self, result: xr.Dataset, plan: TilePlan, *, base_url: str, fs: Any
              ) -> list[WrittenAsset]:
        return write_tile(result, plan.tile, base_url=base_url, fs=fs, params=plan.params)

    def item_extras(self, plan: TilePlan, result: xr.Dataset
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The properties and links the product adds to its item."""
        return {}, []


def mosaic_tile(
    items: Sequence[Mapping[str, Any]],
    tile: Tile,
    window: DateWindow,
    params: MosaicParams,
    *,
    api_url: str,
    source_api_url: str,
    source_collection: str,
    output_collection: str,
    output_root: str,
    fs: Any,
    gdal_env: dict[str, Any] | None = None,
    force: bool = False,
    api_token: str | None = None,
    read_failure_policy: Literal["fail", "drop"] = "drop",
    lock_ttl_s: float | None = None,
    lock_wait_s: float | None = None,
    refresh: bool = True,
    product: TileProduct | None = None,
) -> TileOutcome:
    """Plan, compute, write and publish one tile, or skip it when the published item
    already has the same inputs. Raises on failure (after removing what it wrote, unless
    the live item points at it); :meth:`TileOutcome.failure` describes such a tile.

    Nothing published is replaced by a different product: the item id derives from the
    product (:func:`plan_tile`). A re-making of the same product is safe for readers:

    * Same inputs as the live item, not ``force``: skipped, nothing written.
    * No live item (a first run, or a re-run after a crash): the files go to the
      deterministic folder (:meth:`TilePlan.deterministic_url`), over any half-written
      files of the crashed run.
    * A live item (``force``, or new inputs, e.g. a new scene): the files go to a folder
      that is not, and does not contain or lie in, the live item's (the deterministic one
      of the new inputs, or that plus a random suffix when the live item is there); the
      item is published last; it is read back, and only once it is live with this run's
      inputs hash and folder are the previous item's files removed.

    Two runs of one tile (one item) at once, in any processes or machines: a per-item lock
    on the object store (:mod:`cloudfree.locks`) lets one in; the other waits (at most
    ``lock_wait_s``), then checks again, so with the same inputs it is skipped. Each run
    leaves one consistent item: every asset href exists and lies in that item's folder.

    ``refresh`` is :func:`publish_tile`'s. ``api_token`` goes with every request to
    ``api_url`` (the writer API);
    ``read_failure_policy`` is :func:`compute_tile`'s, and the scenes it dropped are in
    :attr:`TileOutcome.dropped`. ``product``: the steps of another product than the plain
    mosaic (:class:`TileProduct`)."""
    from cloudfree.locks import TileLock, lock_url

    product = product or TileProduct()
    plan = product.plan(items, tile, window, params)
    live = published_item(api_url, output_collection, plan.item_id, token=api_token)
    if not force and live is not None and _has_inputs(live, plan):
        return _skipped(plan, live)
    with TileLock(lock_url(output_root, plan.item_id), fs=fs, ttl_s=lock_ttl_s,
                  wait_s=lock_wait_s) as lock:
        # A concurrent run of this tile may have published while this one waited.
        live = published_item(api_url, output_collection, plan.item_id, token=api_token)
        if not force and live is not None and _has_inputs(live, plan):
            return _skipped(plan, live)
        previous = item_prefix(live) if live is not None else None
        plan = dataclasses.replace(plan, prefix=_new_prefix(plan, output_root, previous))
        folder = plan.base_url(output_root)
        try:
            result = product.compute(plan, gdal_env=gdal_env,
                                     read_failure_policy=read_failure_policy)
            written = product.write(result, plan, base_url=folder, fs=fs)
            properties, links = product.item_extras(plan, result)
            lock.check()  # never publish once another run may hold the tile
            outcome = publish_tile(plan, result, written, api_url=api_url,
                                   source_api_url=source_api_url,
                                   source_collection=source_collection,
                                   output_collection=output_collection,
                                   output_root=output_root, fs=fs, token=api_token,
                                   refresh=refresh, extra_properties=properties,
                                   extra_links=links)
        except BaseException:
            _discard_unless_live(fs, folder, api_url, output_collection, plan.item_id,
                                 api_token)
            raise
        now = published_item(api_url, output_collection, plan.item_id, token=api_token)
        if now is None or item_prefix(now) != folder.rstrip("/") or \
                now["properties"].get("cloudfree:inputs_hash") != plan.inputs_hash:
            # Not this run's item (it was replaced, its lock taken over): this run's files
            # are referenced by nothing; the live item is left as it is.
            log.warning("tile %s: item %s is not this run's after publishing (its files are "
                        "in %s); removing this run's files %s", tile.tile_id, plan.item_id,
                        item_prefix(now) if now else "nothing", folder)
            _discard_unless_live(fs, folder, api_url, output_collection, plan.item_id,
                                 api_token)
            if now is None:
                from cloudfree.errors import PublishError

                raise PublishError(f"item {output_collection}/{plan.item_id}",
                                   "the API did not return it after it was published; "
                                   "re-run the tile")
            return _skipped(plan, now)
        if previous is not None and _ours_to_remove(previous, plan, output_root, folder):
            from cloudfree.gc import remove_prefix

            remove_prefix(fs, previous)
    return dataclasses.replace(outcome, dropped=list(result.attrs.get("dropped_sources", [])))


def _has_inputs(item: Mapping[str, Any], plan: TilePlan) -> bool:
    """The live item is this plan's product, complete: same inputs hash and no scene
    dropped as unreadable (an item that had to drop one is redone by the next run, which
    reads that scene again)."""
    props = item["properties"]
    return bool(props.get("cloudfree:inputs_hash") == plan.inputs_hash
                and not props.get("cloudfree:dropped_sources"))


def _skipped(plan: TilePlan, item: Mapping[str, Any]) -> TileOutcome:
    return TileOutcome(plan.tile.tile_id, plan.item_id, "skipped",
                       {k: a["href"] for k, a in item["assets"].items()}, len(plan.sources),
                       dropped=list(item["properties"].get("cloudfree:dropped_sources", [])))


def _new_prefix(plan: TilePlan, output_root: str, previous: str | None) -> str | None:
    """``None`` (the deterministic folder) unless it overlaps the live item's folder; then
    that folder with a random suffix, checked not to overlap it either."""
    deterministic = plan.deterministic_url(output_root)
    if previous is None or not prefixes_overlap(deterministic, previous):
        return None
    while True:
        fresh = f"{deterministic}-{secrets.token_hex(4)}"
        if not prefixes_overlap(fresh, previous):
            return fresh


def _ours_to_remove(previous: str, plan: TilePlan, output_root: str, folder: str) -> bool:
    """Remove the previous item's folder only where this layout put it (under the item's
    own folder) and never over the new one."""
    return within(previous, plan.item_url(output_root)) and \
        previous.rstrip("/") != plan.item_url(output_root) and \
        not prefixes_overlap(previous, folder)


def _discard_unless_live(fs: Any, folder: str, api_url: str, collection: str, item: str,
                         token: str | None) -> None:
    """Remove a run's files after it failed, unless the live item points at them (the
    publish went through before the error) or that cannot be told (the API is down):
    then they stay, for a re-run or ``cloudfree gc``. Never raises."""
    from cloudfree.gc import remove_prefix

    try:
        live = published_item(api_url, collection, item, token=token)
        held = item_prefix(live) if live is not None else None
        if held is None or not prefixes_overlap(held, folder):
            remove_prefix(fs, folder)
    except Exception as exc:  # the original error matters more
        log.warning("tile files %s kept (%s: %s); 'cloudfree gc' removes them once no "
                    "item points at them", folder, type(exc).__name__, exc)


__all__ = ("Compose", "MosaicParams", "TileOutcome", "TilePlan", "TileProduct", "chunk_px",
           "compute_tile", "halo_px", "items_for_tile", "mask_definition", "mask_parameters",
           "mask_reach_px", "mosaic_tile", "plan_tile", "product_definition", "publish_tile",
           "resolve_mask", "source_needs", "source_profile", "write_tile")
