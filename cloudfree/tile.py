"""One tile, in four steps: plan → compute → write → publish.

``plan_tile`` decides, from the source items and the parameters alone, what the tile will
be: its sources, its item id and its inputs hash (a re-run with the same inputs is
skipped). ``compute_tile`` builds the cube (:mod:`cloudfree.cube`), masks it
(:mod:`cloudfree.masking`) and runs the method (:mod:`cloudfree.methods`). ``write_tile``
encodes the COGs and the thumbnail (:mod:`cloudfree.cog`). ``publish_tile`` builds the
complete item (:mod:`cloudfree.publish`) and publishes it, in the order of DESIGN.md:
every COG first, the static JSON next, the API item last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
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
    scl_clear_mask,
)
from cloudfree.methods import FILL_CLASSES, get_method
from cloudfree.publish import (
    WrittenAsset,
    build_item,
    inputs_hash,
    item_id,
    publish_item,
    published_item,
)
from cloudfree.quicklook import rgb_uint8, thumbnail
from cloudfree.sentinel2 import DEFAULT_BANDS, NODATA, OFFSET, SCALE

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


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

    def __post_init__(self) -> None:
        get_method(self.method, "mosaic")
        if self.target_date is not None:
            try:
                dt.date.fromisoformat(self.target_date)
            except ValueError:
                raise InvalidParameterError("target_date", self.target_date,
                                            "give an ISO date, YYYY-MM-DD") from None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def method_options(self) -> dict[str, Any]:
        """The method's own options: the weights, for a learned method."""
        return {"model_name": self.model} if get_method(self.method).learned else {}


@dataclass
class TileOutcome:
    tile_id: str
    item_id: str
    status: Literal["published", "skipped"]
    hrefs: dict[str, str] = field(default_factory=dict)
    n_sources: int = 0


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

    def base_url(self, output_root: str) -> str:
        """Where the tile's files go: ``{root}/{tile_id}/{item_id}/{inputs_hash[:12]}``, so a
        re-run with other inputs never overwrites what a published item points at."""
        return f"{output_root.rstrip('/')}/{self.tile.tile_id}/{self.item_id}/{self.inputs_hash[:12]}"


def mask_reach_px(params: MosaicParams) -> int:
    """How far the clear mask at a pixel looks at the SCL around it: the opening (erosion
    then dilation, ``2 * opening``) plus the dilation, in whole pixels."""
    return math.ceil((2 * params.opening_m + params.dilation_m) / params.resolution_m)


def halo_px(params: MosaicParams) -> int:
    """The tile halo: the mask's reach plus the method's declared neighbourhood (the
    registry's ``halo_px``). A tile reads and computes on its bounds grown by this much,
    then crops, so two adjacent tiles agree at their shared edge."""
    return mask_reach_px(params) + get_method(params.method).halo_px


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


def plan_tile(items: Sequence[Mapping[str, Any]], tile: Tile, window: DateWindow,
              params: MosaicParams) -> TilePlan:
    """The tile's sources, item id and inputs hash (pure: reads nothing)."""
    sources = items_for_tile(items, tile, halo=halo_px(params))
    if params.target_date is None and get_method(params.method).targeted:
        middle = window.start + (window.end - window.start) / 2
        params = dataclasses.replace(params, target_date=middle.isoformat())
    label = methods.label(params.method, params.method_options())
    hashed = {**params.as_dict(), "method_label": label, "tile": tile.tile_id,
              "bounds": list(tile.bounds), "window": window.compact,
              **methods.hashed_parameters(params.method)}
    return TilePlan(tile=tile, window=window, params=params, sources=sources, label=label,
                    item_id=item_id(tile.tile_id, window, label),
                    inputs_hash=inputs_hash(sources, hashed))


# --------------------------------------------------------------------------- 2. compute


def compute_tile(
    items: Sequence[Mapping[str, Any]],
    tile: Tile,
    params: MosaicParams,
    *,
    gdal_env: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Build the cube, mask it and run the method on the tile grown by :func:`halo_px`, then
    crop back to the tile; returns computed numpy data (a corrected method's choice of
    candidate and width in ``attrs["parameters"]``).

    Everything a pixel depends on lies within the halo (the mask's opening and dilation,
    the method's neighbourhood), so two adjacent tiles agree at their shared edge; only
    the per-tile choices of the corrected methods (the correction's candidate and width,
    the generator's test-time head) are made on the grown tile's pixels and may differ
    between neighbours."""
    if not items:
        raise InvalidParameterError("items", [], f"no scene intersects tile {tile.tile_id}")
    halo = halo_px(params)
    grown = tile.grown(halo)
    cube = build_cube(
        [dict(item) for item in items], [*params.bands, "scl"], tile=grown,
        chunksize=chunk_px(params, grown), gdal_env=gdal_env,
    )
    clear = scl_clear_mask(
        cube.sel(band="scl"),
        resolution_m=tile.resolution_m,
        invalid_classes=params.invalid_classes,
        dilate_classes=params.dilate_classes,
        dilation_m=params.dilation_m,
        opening_m=params.opening_m,
    )
    reflectance = cube.sel(band=list(params.bands))
    result = methods.mosaic(params.method, reflectance, clear, target_date=params.target_date,
                            **params.method_options())
    if halo:
        result = result.isel(y=slice(halo, -halo), x=slice(halo, -halo))
    computed = methods.compute(params.method, result)
    computed.attrs["halo_px"] = halo
    return computed


# --------------------------------------------------------------------------- 3. write


def _written(key: str, url: str, data: bytes, **kw: Any) -> WrittenAsset:
    return WrittenAsset(
        key=key, href=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **kw
    )


def write_tile(
    result: xr.Dataset, tile: Tile, *, base_url: str, fs: Any, params: MosaicParams
) -> list[WrittenAsset]:
    """Encode and upload one COG per band, the clear count and an RGB thumbnail."""
    crs, transform = f"EPSG:{tile.epsg}", tile.transform
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
                             overview_resampling="nearest")
        url = f"{base_url}/{name}.tif"
        cog.put(data, url, fs=fs)
        written.append(_written(name, url, data, media_type=COG_MEDIA_TYPE,
                                roles=("data", "metadata"), title=title, kind=name))
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
) -> TileOutcome:
    """Build the complete item, write its static copy beside the COGs, then publish it."""
    params = plan.params
    count = result["clear_count"].values
    fill = result["fill"].values
    static_href = f"{plan.base_url(output_root)}/{plan.item_id}.json"
    item = build_item(
        item_id=plan.item_id, collection_id=output_collection, tile=plan.tile,
        window=plan.window, assets=written, source_items=plan.sources,
        source_api_url=source_api_url, source_collection=source_collection, method=plan.label,
        parameters={**params.as_dict(), **result.attrs.get("parameters", {})},
        digest=plan.inputs_hash, nodata_pct=100.0 * float(np.mean(count == 0)),
        fill_pct={name: round(100.0 * float(np.mean(fill == code)), 3)
                  for code, (name, _) in sorted(FILL_CLASSES.items())},
        software=methods.software(params.method, params.method_options()),
        static_href=static_href,
    )
    cog.put(json.dumps(item, indent=1).encode(), static_href, fs=fs)
    publish_item(api_url, item)
    return TileOutcome(plan.tile.tile_id, plan.item_id, "published",
                       {w.key: w.href for w in written}, len(plan.sources))


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
) -> TileOutcome:
    """Plan, compute, write and publish one tile, or skip it when the published item
    already has the same inputs."""
    plan = plan_tile(items, tile, window, params)
    if not force:
        existing = published_item(api_url, output_collection, plan.item_id)
        if existing and existing["properties"].get("cloudfree:inputs_hash") == plan.inputs_hash:
            return TileOutcome(tile.tile_id, plan.item_id, "skipped",
                               {k: a["href"] for k, a in existing["assets"].items()},
                               len(plan.sources))
    result = compute_tile(plan.sources, tile, plan.params, gdal_env=gdal_env)
    written = write_tile(result, tile, base_url=plan.base_url(output_root), fs=fs,
                         params=plan.params)
    return publish_tile(plan, result, written, api_url=api_url, source_api_url=source_api_url,
                        source_collection=source_collection,
                        output_collection=output_collection, output_root=output_root, fs=fs)


__all__ = ("MosaicParams", "TileOutcome", "TilePlan", "chunk_px", "compute_tile", "halo_px",
           "items_for_tile", "mask_reach_px",
           "mosaic_tile", "plan_tile", "publish_tile", "write_tile")
