"""STAC documents of the demo catalog (pure): the items of its scenes, shaped like Earth
Search's ``sentinel-2-l2a``, and the collection that describes them."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyproj import Transformer

from cloudfree import synthetic as synth
from cloudfree.demo.layout import EPSG, RESOLUTION_M, WORLD_ORIGIN, Acquisition, DemoTile
from cloudfree.sentinel2 import BANDS, NODATA, OFFSET, SCALE, SCL, SCL_CLASSES, eo_band

REFLECTANCE_ASSETS: tuple[str, ...] = synth.BANDS
ASSETS = (*REFLECTANCE_ASSETS, "scl")
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
]
_PERCENTAGES = {  # SCL classes behind the s2:*_percentage properties
    "cloud_shadow": (SCL.CLOUD_SHADOW,),
    "vegetation": (SCL.VEGETATION,),
    "not_vegetated": (SCL.NOT_VEGETATED,),
    "water": (SCL.WATER,),
    "unclassified": (SCL.UNCLASSIFIED,),
    "medium_proba_clouds": (SCL.CLOUD_MEDIUM_PROBABILITY,),
    "high_proba_clouds": (SCL.CLOUD_HIGH_PROBABILITY,),
    "thin_cirrus": (SCL.THIN_CIRRUS,),
    "snow_ice": (SCL.SNOW,),
}


def item_id(tile: DemoTile, acq: Acquisition) -> str:
    """Earth Search style id, e.g. ``S2B_33TWM_20240615_0_L2A``."""
    return f"S2{acq.platform[-1].upper()}_{tile.tile_id}_{acq.date:%Y%m%d}_0_L2A"


def _footprint(tile: DemoTile, swath: synth.SwathEdge | None) -> list[tuple[float, float]]:
    """Valid-data polygon in UTM: the tile clipped by the swath edge (Sutherland-Hodgman)."""
    x0, y0, x1, y1 = tile.bounds
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if swath is None:
        return ring

    def inside(p: tuple[float, float]) -> float:  # > 0 inside the swath
        south_m = WORLD_ORIGIN[1] - p[1]
        edge = WORLD_ORIGIN[0] + swath.x_m - south_m * math.tan(math.radians(swath.angle_deg))
        return (edge - p[0]) if swath.nodata_side == "east" else (p[0] - edge)

    out: list[tuple[float, float]] = []
    for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
        fa, fb = inside(a), inside(b)
        if fa >= 0:
            out.append(a)
        if (fa >= 0) != (fb >= 0):
            t = fa / (fa - fb)
            out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
    return out


def _to_lonlat(ring: Sequence[tuple[float, float]]) -> list[list[float]]:
    """Densified ring in EPSG:4326, closed, counter-clockwise."""
    to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
    points: list[tuple[float, float]] = []
    for a, b in zip(ring, [*ring[1:], ring[0]], strict=True):
        for t in np.linspace(0.0, 1.0, 8, endpoint=False):
            points.append(to_wgs84.transform(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
    coords = [[round(x, 7), round(y, 7)] for x, y in points]
    return [*coords, coords[0]]


def _raster_band(name: str, resolution_m: float) -> dict[str, Any]:
    if name == "scl":
        # uint16 like every other asset (Earth Search stores SCL as uint8).
        return {"nodata": 0, "data_type": "uint16", "spatial_resolution": resolution_m}
    return {
        "nodata": NODATA,
        "data_type": "uint16",
        "bits_per_sample": 15,
        "spatial_resolution": resolution_m,
        "scale": SCALE,
        "offset": OFFSET,
    }


def _asset_template(name: str) -> dict[str, Any]:
    """Asset fields shared by item_assets and the items."""
    resolution = float(BANDS[name].resolution_m) if name in BANDS else 20.0
    if name == "scl":
        return {
            "type": COG_MEDIA_TYPE,
            "title": "Scene classification map (SCL)",
            "roles": ["data"],
            "gsd": resolution,
            "raster:bands": [_raster_band(name, resolution)],
            "classification:classes": [{"value": v, "name": n} for v, n in SCL_CLASSES.items()],
        }
    info = BANDS[name]
    return {
        "type": COG_MEDIA_TYPE,
        "roles": ["data", "reflectance"],
        "gsd": resolution,
        "title": f"{name.capitalize()} ({info.s2_name}) - {resolution:g}m",
        "eo:bands": [eo_band(name)],
        "raster:bands": [_raster_band(name, resolution)],
    }


def build_item(
    tile: DemoTile,
    acq: Acquisition,
    *,
    scl: NDArray[np.uint8],
    hrefs: dict[str, str],
    sizes: dict[str, int],
    params_hash: str,
    collection_id: str,
) -> dict[str, Any]:
    """The STAC item of one scene (pure); ``scl`` is the 20 m SCL it describes."""
    ring = _footprint(tile, acq.swath)
    coords = _to_lonlat(ring)
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    total = scl.size
    valid = int(np.count_nonzero(scl))
    counts = np.bincount(scl.ravel(), minlength=len(SCL))
    pct = {
        k: round(100.0 * float(counts[list(v)].sum()) / max(valid, 1), 4)
        for k, v in _PERCENTAGES.items()
    }
    time_utc = dt.time(9, 30, 20 + 4 * tile.col + tile.row)  # 10:30 local solar time at 15 E
    properties = {
        "datetime": f"{dt.datetime.combine(acq.date, time_utc).isoformat()}Z",
        "platform": acq.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "gsd": 10.0,
        "eo:cloud_cover": round(
            sum(pct[k] for k in ("medium_proba_clouds", "high_proba_clouds", "thin_cirrus")), 4
        ),
        "proj:code": f"EPSG:{EPSG}",
        "proj:epsg": EPSG,
        "proj:bbox": list(tile.bounds),
        "proj:shape": [tile.size_px, tile.size_px],
        "proj:transform": list(tile.transform())[:6],
        "mgrs:utm_zone": 33,
        "mgrs:latitude_band": "T",
        "mgrs:grid_square": tile.tile_id[3:],
        "grid:code": f"MGRS-{tile.tile_id}",
        "s2:mgrs_tile": tile.tile_id,
        "sat:relative_orbit": acq.relative_orbit,
        "sat:orbit_state": "descending",
        "view:sun_azimuth": round(acq.sun_azimuth_deg, 4),
        "view:sun_elevation": round(90.0 - acq.sun_zenith_deg, 4),
        "s2:mean_solar_zenith": round(acq.sun_zenith_deg, 4),
        "s2:mean_solar_azimuth": round(acq.sun_azimuth_deg, 4),
        "s2:processing_baseline": "04.00",
        "s2:product_type": "S2MSI2A",
        "s2:nodata_pixel_percentage": round(100.0 * (total - valid) / total, 4),
        **{f"s2:{k}_percentage": v for k, v in pct.items()},
        "cloudfree:synthetic": True,
        "cloudfree:demo_params_hash": params_hash,
    }
    assets = {}
    for name in ASSETS:
        template = _asset_template(name)
        resolution = template["gsd"]
        n = int(round(tile.size_px * RESOLUTION_M / resolution))
        assets[name] = {
            "href": hrefs[name],
            **template,
            "proj:shape": [n, n],
            "proj:transform": list(tile.transform(resolution))[:6],
            "file:size": sizes[name],
        }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": EXTENSIONS,
        "id": item_id(tile, acq),
        "collection": collection_id,
        "links": [],
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": properties,
        "assets": assets,
    }


def build_collection(
    collection_id: str,
    items: Sequence[dict[str, Any]],
    *,
    parameters: dict[str, Any],
    params_hash: str,
) -> dict[str, Any]:
    """The collection document (pure): extent, summaries and item_assets of ``items``."""
    bboxes = [it["bbox"] for it in items]
    dates = sorted(it["properties"]["datetime"] for it in items)

    def value_range(key: str) -> dict[str, float]:
        values = [it["properties"][key] for it in items]
        return {"minimum": min(values), "maximum": max(values)}

    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": EXTENSIONS,
        "id": collection_id,
        "title": "Sentinel-2 Level-2A (synthetic demo)",
        "description": (
            "SYNTHETIC data: simulated Sentinel-2 L2A scenes generated by cloudfree "
            "(fields, forest, water, settlements, clouds, cloud shadows, cirrus) in the "
            "layout of Earth Search's sentinel-2-l2a collection. Tile ids are MGRS-like but "
            "made up; no pixel comes from a real acquisition."
        ),
        "keywords": ["sentinel-2", "l2a", "synthetic", "demo", "cloudfree"],
        "license": "CC0-1.0",
        "providers": [
            {"name": "cloudfree (synthetic generator)", "roles": ["producer", "processor", "host"]}
        ],
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        min(b[0] for b in bboxes),
                        min(b[1] for b in bboxes),
                        max(b[2] for b in bboxes),
                        max(b[3] for b in bboxes),
                    ]
                ]
            },
            "temporal": {"interval": [[dates[0], dates[-1]]]},
        },
        "summaries": {
            "platform": sorted({it["properties"]["platform"] for it in items}),
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10.0, 20.0],
            "proj:code": [f"EPSG:{EPSG}"],
            "s2:processing_baseline": ["04.00"],
            "eo:bands": [eo_band(name) for name in REFLECTANCE_ASSETS],
            "eo:cloud_cover": value_range("eo:cloud_cover"),
            "view:sun_elevation": value_range("view:sun_elevation"),
        },
        "item_assets": {name: _asset_template(name) for name in ASSETS},
        "cloudfree:demo": {"parameters": parameters, "params_hash": params_hash},
        "links": [],
    }
