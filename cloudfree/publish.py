"""Publishing: STAC items and the output collection, through the Transactions API,
with a static JSON copy of each item beside its COGs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudfree import __version__
from cloudfree._stac_api import get_json, upsert_collection, upsert_item
from cloudfree.grid import DateWindow, Tile
from cloudfree.sentinel2 import NODATA, OFFSET, SCALE, eo_band

EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
}
SOFTWARE = f"cloudfree {__version__}"


@dataclass(frozen=True)
class WrittenAsset:
    """A file already written to storage, ready to be described in an item."""

    key: str
    href: str
    size: int
    sha256: str
    media_type: str
    roles: tuple[str, ...]
    title: str
    band: str | None = None  # reflectance band name, when the asset holds one
    kind: str = "reflectance"  # reflectance | clear_count | source_date | fill | thumbnail


def item_id(tile_id: str, window: DateWindow, method: str, version: str = __version__) -> str:
    """Deterministic id from tile, window and method/software version."""
    return f"cloudfree-{tile_id}-{window.compact}-{method}-v{version}"


def inputs_hash(source_items: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any]) -> str:
    """Hash of everything that determines a mosaic: the source items (ids, their
    ``updated``/``datetime`` and, for prepared items, how each band was decoded), the
    parameters and the software version."""
    sources = sorted(
        (it["id"], it["properties"].get("updated", ""), it["properties"].get("datetime", ""),
         json.dumps([[b.get("band"), b.get("scale"), b.get("offset")] for b in
                     (it["properties"].get("cloudfree:decoding") or {}).get("bands", [])]))
        for it in source_items
    )
    payload = json.dumps(
        {"sources": sources, "parameters": parameters, "software": SOFTWARE},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _geometry(bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    minx, miny, maxx, maxy = bbox
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_item(
    *,
    item_id: str,
    collection_id: str,
    tile: Tile,
    window: DateWindow,
    assets: Sequence[WrittenAsset],
    source_items: Sequence[Mapping[str, Any]],
    source_api_url: str,
    source_collection: str,
    method: str,
    parameters: Mapping[str, Any],
    digest: str,
    nodata_pct: float,
    fill_pct: Mapping[str, float] | None = None,
    software: Mapping[str, str] | None = None,
    static_href: str | None = None,
    processed_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Build the complete STAC item of one mosaic tile (pure).

    ``nodata_pct``: the share of pixels with no clear observation; ``fill_pct``: the share
    of each fill class (``cloudfree:fill_pct``); ``software``: what the method adds to
    ``processing:software`` (the generator's weights)."""
    processed_at = processed_at or dt.datetime.now(dt.UTC)
    start = dt.datetime.combine(window.start, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(window.end, dt.time(23, 59, 59), tzinfo=dt.UTC)
    height, width = tile.shape
    transform = list(tile.transform)
    api = source_api_url.rstrip("/")
    dates = sorted({it["properties"]["datetime"][:10] for it in source_items})
    item_assets: dict[str, Any] = {}
    for asset in assets:
        entry: dict[str, Any] = {
            "href": asset.href,
            "type": asset.media_type,
            "title": asset.title,
            "roles": list(asset.roles),
            "file:size": asset.size,
            # multihash: 0x12 = sha2-256, 0x20 = 32 bytes
            "file:checksum": "1220" + asset.sha256,
        }
        if asset.kind == "reflectance":
            entry["eo:bands"] = [eo_band(asset.band or asset.key)]
            entry["raster:bands"] = [
                {
                    "nodata": NODATA,
                    "data_type": "uint16",
                    "scale": SCALE,
                    "offset": OFFSET,
                    "spatial_resolution": tile.resolution_m,
                    "unit": "reflectance",
                }
            ]
        else:
            entry.update(_provenance_asset(asset.kind, tile.resolution_m))
        if asset.kind != "thumbnail":
            entry["proj:shape"] = [height, width]
            entry["proj:transform"] = list(transform)
        item_assets[asset.key] = entry
    links = [
        {
            "rel": "derived_from",
            "href": f"{api}/collections/{source_collection}/items/{it['id']}",
            "type": "application/geo+json",
            "title": it["id"],
        }
        for it in source_items
    ]
    if static_href:
        links.append({"rel": "alternate", "href": static_href, "type": "application/geo+json",
                      "title": "static copy"})
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": sorted(EXTENSIONS.values()),
        "id": item_id,
        "collection": collection_id,
        "geometry": _geometry(tile.bbox_latlon()),
        "bbox": list(tile.bbox_latlon()),
        "properties": {
            # The middle of the window: a non-null datetime keeps stackstac and
            # odc-stac users working; the window itself is start/end_datetime.
            "datetime": _iso(start + (end - start) / 2),
            "start_datetime": _iso(start),
            "end_datetime": _iso(end),
            "created": _iso(processed_at),
            "updated": _iso(processed_at),
            "proj:code": f"EPSG:{tile.epsg}",
            "proj:bbox": list(tile.bounds),
            "proj:shape": [height, width],
            "proj:transform": transform,
            "gsd": tile.resolution_m,
            "processing:level": "L3",
            "processing:facility": "cloudfree",
            "processing:software": {"cloudfree": __version__, **(software or {})},
            "processing:datetime": _iso(processed_at),
            "processing:lineage": (
                f"{method} of {len(source_items)} Sentinel-2 L2A scenes "
                f"({len(dates)} dates, {dates[0] if dates else '-'} to "
                f"{dates[-1] if dates else '-'}) from {api}/collections/{source_collection}, "
                "cloud-masked with the SCL band."
            ),
            "processing:expression": {"format": "cloudfree", "expression": dict(parameters)},
            "cloudfree:tile_id": tile.tile_id,
            "cloudfree:method": method,
            "cloudfree:inputs_hash": digest,
            "cloudfree:source_dates": dates,
            "cloudfree:nodata_pct": round(float(nodata_pct), 3),
            **({"cloudfree:fill_pct": dict(fill_pct)} if fill_pct is not None else {}),
        },
        "links": links,
        "assets": item_assets,
    }


def _fill_classes() -> list[dict[str, Any]]:
    from cloudfree.methods import FILL_CLASSES

    return [{"value": code, "name": name, "description": text}
            for code, (name, text) in sorted(FILL_CLASSES.items())]


def _provenance_asset(kind: str, resolution_m: float | None) -> dict[str, Any]:
    """Description, raster:bands and classes of the per-pixel provenance assets."""
    res = {} if resolution_m is None else {"spatial_resolution": resolution_m}
    if kind == "clear_count":
        return {
            "description": "Number of clear (cloud-, shadow- and nodata-free) observations "
                           "per pixel in the compositing window.",
            "raster:bands": [{"data_type": "uint16", "unit": "count", **res}],
        }
    if kind == "source_date":
        return {
            "description": "Date of the observation a pixel comes from, in days since "
                           "1970-01-01; for blends (median, geomedian) the weighted mean "
                           "date of the observations blended. 0 = no observation.",
            "raster:bands": [{"data_type": "uint16", "nodata": 0, "unit": "days since 1970-01-01",
                              **res}],
        }
    if kind == "fill":
        return {
            "description": "How each pixel was filled.",
            "raster:bands": [{"data_type": "uint8", "nodata": 0, **res}],
            "classification:classes": _fill_classes(),
        }
    return {}


def build_collection(collection_id: str, *, bands: Sequence[str]) -> dict[str, Any]:
    """The output collection, with item_assets and summaries (pure)."""
    item_assets: dict[str, Any] = {
        band: {
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            "title": f"{band} surface reflectance",
            "eo:bands": [eo_band(band)],
            "raster:bands": [
                {"nodata": NODATA, "data_type": "uint16", "scale": SCALE, "offset": OFFSET}
            ],
        }
        for band in bands
    }
    titles = {"clear_count": "clear-observation count", "source_date": "source date",
              "fill": "fill method"}
    for kind, title in titles.items():
        item_assets[kind] = {
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "metadata"],
            "title": title,
            **_provenance_asset(kind, None),
        }
    item_assets["thumbnail"] = {"type": "image/png", "roles": ["thumbnail"], "title": "RGB"}
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": sorted(EXTENSIONS.values()),
        "id": collection_id,
        "title": "cloudfree mosaics",
        "description": (
            "Cloud-free Sentinel-2 L2A mosaics made by cloudfree: one item per tile and "
            "compositing window, reflectance COGs (scale 0.0001, offset -0.1, nodata 0) "
            "plus per-pixel provenance."
        ),
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2015-06-23T00:00:00Z", None]]},
        },
        "summaries": {
            "processing:level": ["L3"],
            "gsd": [10],
            "eo:bands": [eo_band(b) for b in bands],
        },
        "item_assets": item_assets,
        "links": [],
    }


def ensure_collection(api_url: str, collection_id: str, *, bands: Sequence[str]) -> None:
    """Create the output collection when the API lacks it (existing ones are kept)."""
    if get_json(f"{api_url.rstrip('/')}/collections/{collection_id}") is None:
        upsert_collection(api_url, build_collection(collection_id, bands=bands))


def published_item(api_url: str, collection_id: str, item_id: str) -> dict[str, Any] | None:
    return get_json(f"{api_url.rstrip('/')}/collections/{collection_id}/items/{item_id}")


def publish_item(api_url: str, item: Mapping[str, Any]) -> None:
    """Upsert the item: the last step, after every file it points at exists."""
    upsert_item(api_url, dict(item))
