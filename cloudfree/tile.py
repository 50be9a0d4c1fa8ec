"""One tile end to end: cube → clear mask → composite → COGs → STAC item.

The stages are pure; this module wires them to storage and the STAC API, in the
publish order of DESIGN.md: every COG first, the static JSON next, the API item last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from cloudfree import cog
from cloudfree.cube import build_cube
from cloudfree.errors import InvalidParameterError
from cloudfree.grid import DateWindow, Tile, bbox_intersects
from cloudfree.masking import (
    DEFAULT_DILATE_CLASSES,
    DEFAULT_DILATION_M,
    DEFAULT_INVALID_CLASSES,
    scl_clear_mask,
)
from cloudfree.methods._composite import FILL_CLASSES, METHODS, composite
from cloudfree.methods._corrected import (
    HELD_OUT_MASKS,
    correction_parameters,
    interpolate_corrected_composite,
    record_choice,
)
from cloudfree.methods.correction import SIGMAS_PX
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
#: Every way a tile can be made: the non-learned composites, linear interpolation fitted to
#: the target date's own clear pixels, and the generator network (fitted the same way).
MOSAIC_METHODS: tuple[str, ...] = (*METHODS, "interpolate_corrected", "generator")
#: Methods that aim at a target date (default: the middle of the window).
TARGETED_METHODS: tuple[str, ...] = ("bap", "interpolate", "interpolate_corrected", "generator")
#: Methods that show one real date, its gaps filled and fitted to it by the residual
#: correction (:mod:`cloudfree.methods._corrected`).
CORRECTED_METHODS: tuple[str, ...] = ("interpolate_corrected", "generator")


@dataclass(frozen=True)
class MosaicParams:
    """Everything that, with the source items, determines a mosaic."""

    bands: tuple[str, ...] = DEFAULT_BANDS
    method: str = "median"
    #: For the targeted methods (bap, interpolate, interpolate_corrected, generator): the
    #: date the mosaic should show (default: the middle of the window). Ignored by median
    #: and geomedian.
    target_date: str | None = None
    #: The shipped generator weights to use (method "generator" only).
    model: str = "default"
    resolution_m: float = 10.0
    invalid_classes: tuple[int, ...] = DEFAULT_INVALID_CLASSES
    dilate_classes: tuple[int, ...] = DEFAULT_DILATE_CLASSES
    dilation_m: float = DEFAULT_DILATION_M
    opening_m: float = 0.0
    chunksize: int = 1024
    compress: Literal["deflate", "zstd"] = "deflate"

    def __post_init__(self) -> None:
        if self.method not in MOSAIC_METHODS:
            raise InvalidParameterError("method", self.method,
                                        f"choose one of {', '.join(MOSAIC_METHODS)}")
        if self.target_date is not None:
            try:
                dt.date.fromisoformat(self.target_date)
            except ValueError:
                raise InvalidParameterError("target_date", self.target_date,
                                            "give an ISO date, YYYY-MM-DD") from None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class TileOutcome:
    tile_id: str
    item_id: str
    status: Literal["published", "skipped"]
    hrefs: dict[str, str] = field(default_factory=dict)
    n_sources: int = 0


def items_for_tile(items: Sequence[Mapping[str, Any]], tile: Tile) -> list[dict[str, Any]]:
    """The items whose bbox intersects the tile."""
    box = tile.bbox_latlon()
    return [dict(it) for it in items if bbox_intersects(tuple(it["bbox"]), box)]


def compute_tile(
    items: Sequence[Mapping[str, Any]],
    tile: Tile,
    params: MosaicParams,
    *,
    gdal_env: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Build the cube, mask it and composite it; returns computed numpy data (a corrected
    method's choice of candidate and width in ``attrs["parameters"]``)."""
    if not items:
        raise InvalidParameterError("items", [], f"no scene intersects tile {tile.tile_id}")
    cube = build_cube(
        list(items), [*params.bands, "scl"], tile=tile, chunksize=params.chunksize,
        gdal_env=gdal_env,
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
    if params.method == "generator":
        from cloudfree.methods.generator import COMPUTE_CONFIG, generator_composite

        result = generator_composite(reflectance, clear, target_date=params.target_date,
                                     model_name=params.model)
        import dask

        with dask.config.set(COMPUTE_CONFIG):  # so GPU annotations reach the scheduler
            return record_choice(result.compute())
    if params.method == "interpolate_corrected":
        result = interpolate_corrected_composite(reflectance, clear,
                                                 target_date=params.target_date)
        return record_choice(result.compute())
    result = composite(reflectance, clear, method=params.method, target_date=params.target_date)
    return result.compute()


def method_label(params: MosaicParams) -> str:
    """The method as it appears in item ids: the generator's carries its model version,
    so new weights make new items."""
    if params.method != "generator":
        return params.method
    from cloudfree.models.weights import WEIGHTS_DIR, ModelCard

    card_path = WEIGHTS_DIR / f"{params.model}.json"
    if not card_path.is_file():
        raise InvalidParameterError("model", params.model, f"no model card {card_path}")
    card = ModelCard.from_json(card_path.read_text())
    return f"generator-{card.name}-{card.version}"


def _written(key: str, url: str, data: bytes, **kw: Any) -> WrittenAsset:
    return WrittenAsset(
        key=key, href=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **kw
    )


def write_tile_assets(
    result: xr.Dataset, tile: Tile, *, base_url: str, fs: Any, params: MosaicParams
) -> list[WrittenAsset]:
    """Encode and upload one COG per band, the clear count and an RGB thumbnail."""
    crs = f"EPSG:{tile.epsg}"
    written: list[WrittenAsset] = []
    for band in params.bands:
        data = cog.write_cog(
            result["reflectance"].sel(band=band).values,
            transform=tile.transform, crs=crs, nodata=NODATA, scale=SCALE, offset=OFFSET,
            band_names=[band], compress=params.compress,
        )
        url = f"{base_url}/{band}.tif"
        cog.put(data, url, fs=fs)
        written.append(_written(band, url, data, media_type=COG_MEDIA_TYPE,
                                roles=("data", "reflectance"),
                                title=f"{band} surface reflectance", band=band))
    provenance = {  # variable: (nodata, overview resampling, title)
        "clear_count": (None, "nearest", "clear-observation count"),
        "source_date": (0, "nearest", "source date (days since 1970-01-01)"),
        "fill": (0, "nearest", "fill method"),
    }
    for name, (nodata, resampling, title) in provenance.items():
        data = cog.write_cog(result[name].values, transform=tile.transform, crs=crs,
                             nodata=nodata, band_names=[name], compress=params.compress,
                             overview_resampling=resampling)
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
    """Make, write and publish one tile, or skip it when the published item already
    has the same inputs.

    Files go under ``{output_root}/{tile_id}/{item_id}/{inputs_hash[:12]}/`` so a
    re-run with other inputs never overwrites what a published item points at.
    """
    sources = items_for_tile(items, tile)
    if params.target_date is None and params.method in TARGETED_METHODS:
        middle = window.start + (window.end - window.start) / 2
        params = dataclasses.replace(params, target_date=middle.isoformat())
    label = method_label(params)
    iid = item_id(tile.tile_id, window, label)
    hashed = {**params.as_dict(), "method_label": label, "tile": tile.tile_id,
              "bounds": list(tile.bounds), "window": window.compact}
    if params.method in CORRECTED_METHODS:  # the correction decides pixels too
        hashed["correction"] = correction_parameters([], sigmas=SIGMAS_PX, seed=0,
                                                     masks=HELD_OUT_MASKS)
    if params.method == "generator":  # and so does the test-time head's training
        from cloudfree.models.head import head_parameters

        hashed["test_time_head"] = head_parameters()
    digest = inputs_hash(sources, hashed)
    if not force:
        existing = published_item(api_url, output_collection, iid)
        if existing and existing["properties"].get("cloudfree:inputs_hash") == digest:
            return TileOutcome(tile.tile_id, iid, "skipped",
                               {k: a["href"] for k, a in existing["assets"].items()},
                               len(sources))
    result = compute_tile(sources, tile, params, gdal_env=gdal_env)
    base_url = f"{output_root.rstrip('/')}/{tile.tile_id}/{iid}/{digest[:12]}"
    written = write_tile_assets(result, tile, base_url=base_url, fs=fs, params=params)
    count = result["clear_count"].values
    static_href = f"{base_url}/{iid}.json"
    item = build_item(
        item_id=iid, collection_id=output_collection, tile=tile, window=window,
        assets=written, source_items=sources, source_api_url=source_api_url,
        source_collection=source_collection, method=label,
        parameters={**params.as_dict(), **result.attrs.get("parameters", {})}, digest=digest,
        nodata_pct=100.0 * float(np.mean(count == 0)), static_href=static_href,
    )
    if params.method == "generator":  # the weights are software too
        item["properties"]["processing:software"]["cloudfree-generator"] = label
    fill = result["fill"].values
    item["properties"]["cloudfree:fill_pct"] = {
        name: round(100.0 * float(np.mean(fill == code)), 3)
        for code, (name, _) in sorted(FILL_CLASSES.items())
    }
    cog.put(json.dumps(item, indent=1).encode(), static_href, fs=fs)
    publish_item(api_url, item)
    return TileOutcome(tile.tile_id, iid, "published", {w.key: w.href for w in written},
                       len(sources))
