"""Demo source catalog: synthetic Sentinel-2 L2A scenes shaped like Earth Search's
``sentinel-2-l2a``, written as COGs to S3 and loaded into a STAC API.

All tiles are windows of one synthetic world (:mod:`cloudfree.demo.synth`) and each date has
one world cloud field, so adjacent tiles join without seams.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import Transformer

from cloudfree._stac_api import delete_item, get_json, upsert_collection, upsert_items
from cloudfree.cog import put, write_cog
from cloudfree.demo import synth
from cloudfree.errors import InvalidParameterError, StacApiUnreachableError
from cloudfree.masking import SCL_CLASSES
from cloudfree.sentinel2 import BANDS, NODATA, OFFSET, SCALE, eo_band
from cloudfree.storage import check_bucket, s3_filesystem

#: Bump when the generator changes, so existing demo catalogs are rebuilt.
GENERATOR_VERSION = 1
EPSG = 32633
RESOLUTION_M = 10.0
DEFAULT_SIZE_PX = 1024
#: Upper-left corner (UTM 33N) of tile row 0 / column 0, about 46.0 N 15.0 E.
# A multiple of 10240 m, so output grid tiles of 64..1024 px at 10 m align with the scenes.
WORLD_ORIGIN = (501_760.0, 5_099_520.0)
SEASON = (dt.date(2024, 4, 1), dt.date(2024, 10, 31))
COLUMN_LETTERS, ROW_LETTERS = "WXYZ", "MLKJ"  # MGRS-like 100 km squares of zone 33T
PRIMARY_ORBIT, SECONDARY_ORBIT = 79, 122
REFLECTANCE_ASSETS = ("blue", "green", "red", "nir", "swir16", "swir22")
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
    "cloud_shadow": (3,),
    "vegetation": (4,),
    "not_vegetated": (5,),
    "water": (6,),
    "unclassified": (7,),
    "medium_proba_clouds": (8,),
    "high_proba_clouds": (9,),
    "thin_cirrus": (10,),
    "snow_ice": (11,),
}


@dataclass(frozen=True)
class DemoTile:
    """One MGRS-like tile: a window of the synthetic world."""

    tile_id: str  # e.g. "33TWM"
    row: int
    col: int
    size_px: int

    @property
    def origin_px(self) -> tuple[float, float]:
        return (float(self.row * self.size_px), float(self.col * self.size_px))

    def transform(self, resolution_m: float = RESOLUTION_M) -> Affine:
        extent = self.size_px * RESOLUTION_M
        x0, y0 = WORLD_ORIGIN[0] + self.col * extent, WORLD_ORIGIN[1] - self.row * extent
        return Affine(resolution_m, 0.0, x0, 0.0, -resolution_m, y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t, extent = self.transform(), self.size_px * RESOLUTION_M
        return (t.c, t.f - extent, t.c + extent, t.f)


@dataclass(frozen=True)
class Acquisition:
    """One date of the demo: platform, orbit and the weather of its world cloud field."""

    date: dt.date
    platform: str
    relative_orbit: int
    weather: synth.Weather
    swath: synth.SwathEdge | None
    sun_zenith_deg: float  # one sun for the whole world, so tiles join without seams
    sun_azimuth_deg: float


def demo_tiles(n_tiles: int, *, size_px: int) -> list[DemoTile]:
    """Adjacent tiles, west to east in rows of up to four, rows going south."""
    ncols = min(n_tiles, len(COLUMN_LETTERS))
    return [
        DemoTile(
            f"33T{COLUMN_LETTERS[k % ncols]}{ROW_LETTERS[k // ncols]}",
            k // ncols,
            k % ncols,
            size_px,
        )
        for k in range(n_tiles)
    ]


def demo_acquisitions(n_dates: int, *, world_width_m: float, seed: int = 0) -> list[Acquisition]:
    """Dates on the 5-day revisit grid over the season, with seeded weather.

    Two dates are clear; about every fourth comes from the neighbouring orbit, two days
    later, whose swath edge crosses the eastern part of the world.
    """
    rng = np.random.default_rng([seed, 2024])
    latitude = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(*WORLD_ORIGIN)[1]
    span = (SEASON[1] - SEASON[0]).days
    clear = {1, n_dates - 1} if n_dates >= 4 else {n_dates - 1}
    out = []
    for k in range(n_dates):
        offset = 5 * math.floor(k * span / max(n_dates - 1, 1) / 5)
        secondary = k % 4 == 2 and k not in clear
        date = SEASON[0] + dt.timedelta(days=offset + (2 if secondary else 0))
        cover = 0.0 if k in clear else float(np.clip(rng.beta(0.9, 1.6), 0.05, 0.85))
        cirrus = 0.0 if k in clear or rng.random() < 0.5 else float(rng.uniform(0.05, 0.3))
        weather = synth.Weather(
            cloud_cover=cover,
            cloud_height_m=float(rng.uniform(700, 2500)),
            cloud_scale_m=float(rng.uniform(1200, 4000)),
            cirrus_cover=float(rng.uniform(0.2, 0.6)),
            cirrus_opacity=cirrus,
            seed=int(rng.integers(2**31)),
        )
        swath = synth.SwathEdge(x_m=0.8 * world_width_m) if secondary else None
        platform = "sentinel-2a" if (offset // 5) % 2 == 0 else "sentinel-2b"
        orbit = SECONDARY_ORBIT if secondary else PRIMARY_ORBIT
        zenith, azimuth = synth.solar_position(date.timetuple().tm_yday, latitude_deg=latitude)
        out.append(Acquisition(date, platform, orbit, weather, swath, zenith, azimuth))
    return out


def item_id(tile: DemoTile, acq: Acquisition) -> str:
    """Earth Search style id, e.g. ``S2B_33TWM_20240615_0_L2A``."""
    return f"S2{acq.platform[-1].upper()}_{tile.tile_id}_{acq.date:%Y%m%d}_0_L2A"


def to_dn(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """L2A digital numbers (baseline 04.00): (reflectance + 0.1) / 0.0001, 1..65535; 0 = nodata."""
    dn = np.clip(np.rint((reflectance - OFFSET) / SCALE), 1, 65535).astype(np.uint16)
    dn[..., ~valid] = NODATA
    return dn


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

    out = []
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
    points = []
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
    scl: np.ndarray,
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
    counts = np.bincount(scl.ravel(), minlength=12)
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
        "earthsearch:boa_offset_applied": True,
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


def render_scene(tile: DemoTile, acq: Acquisition, land: synth.Landscape) -> dict[str, np.ndarray]:
    """Asset arrays of one scene: 10 m bands, 20 m SWIR and SCL, as stored."""
    scene = synth.synth_scene(
        land,
        day_of_year=acq.date.timetuple().tm_yday,
        weather=acq.weather,
        sun_zenith_deg=acq.sun_zenith_deg,
        sun_azimuth_deg=acq.sun_azimuth_deg,
        swath=acq.swath,
    )
    valid20 = synth.block_mean(scene.valid.astype(np.float32)) == 1.0
    swir = synth.block_mean(scene.reflectance[4:])
    arrays = {
        name: to_dn(scene.reflectance[i], scene.valid) for i, name in enumerate(synth.BANDS[:4])
    }
    arrays |= {"swir16": to_dn(swir[0], valid20), "swir22": to_dn(swir[1], valid20)}
    scl = synth.downsample_scl(scene.scl)
    scl[~valid20] = 0
    arrays["scl"] = scl
    return arrays


def _write_scene(
    tile: DemoTile,
    acq: Acquisition,
    land: synth.Landscape,
    *,
    base_url: str,
    sink: Callable[[bytes, str], None],
    params_hash: str,
    collection_id: str,
) -> dict[str, Any]:
    arrays = render_scene(tile, acq, land)
    hrefs, sizes = {}, {}
    for name, array in arrays.items():
        scale = 1 if name in ("blue", "green", "red", "nir") else 2
        data = write_cog(
            array,
            transform=tile.transform(RESOLUTION_M * scale),
            crs=f"EPSG:{EPSG}",
            nodata=0,
            dtype="uint16",
            scale=None if name == "scl" else SCALE,
            offset=None if name == "scl" else OFFSET,
            band_names=[name],
            overview_resampling="nearest" if name == "scl" else "average",
        )
        href = f"{base_url}/{tile.tile_id}/{acq.date.isoformat()}/{name}.tif"
        sink(data, href)
        hrefs[name], sizes[name] = href, len(data)
    return build_item(
        tile,
        acq,
        scl=arrays["scl"],
        hrefs=hrefs,
        sizes=sizes,
        params_hash=params_hash,
        collection_id=collection_id,
    )


def generate_scenes(
    *,
    base_url: str,
    sink: Callable[[bytes, str], None],
    collection_id: str = "sentinel-2-l2a",
    n_tiles: int = 2,
    n_dates: int = 10,
    size_px: int = DEFAULT_SIZE_PX,
    seed: int = 0,
    params_hash: str = "",
    max_workers: int = 2,
) -> list[dict[str, Any]]:
    """Render, encode and hand every scene's COGs to ``sink(data, href)``; return the items
    in tile, date order. Threads overlap numpy, GDAL and uploads."""
    tiles = demo_tiles(n_tiles, size_px=size_px)
    world_width_m = (max(t.col for t in tiles) + 1) * size_px * RESOLUTION_M
    acquisitions = demo_acquisitions(n_dates, world_width_m=world_width_m, seed=seed)
    river_y_m = 0.55 * size_px * RESOLUTION_M
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        lands = list(
            pool.map(
                lambda t: synth.make_landscape(
                    (size_px, size_px),
                    origin_px=t.origin_px,
                    resolution_m=RESOLUTION_M,
                    seed=seed,
                    river_y_m=river_y_m,
                ),
                tiles,
            )
        )
        futures = [
            pool.submit(
                _write_scene,
                tile,
                acq,
                land,
                base_url=base_url,
                sink=sink,
                params_hash=params_hash,
                collection_id=collection_id,
            )
            for tile, land in zip(tiles, lands, strict=True)
            for acq in acquisitions
        ]
        return [f.result() for f in futures]


def _params(**kwargs: Any) -> tuple[dict[str, Any], str]:
    parameters = {"generator_version": GENERATOR_VERSION, **kwargs}
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
    return parameters, digest


def _existing_items(api_url: str, collection_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"{api_url}/collections/{collection_id}/items?limit=1000"
    while url:
        page = get_json(url) or {}
        found |= {it["id"]: it for it in page.get("features", [])}
        url = next((ln["href"] for ln in page.get("links", []) if ln.get("rel") == "next"), None)
    return found


def build_demo_catalog(
    *,
    stac_api_url: str,
    storage_options: dict,
    bucket: str,
    collection_id: str = "sentinel-2-l2a",
    n_tiles: int = 2,
    n_dates: int = 10,
    size_px: int = DEFAULT_SIZE_PX,
    seed: int = 0,
    max_workers: int = 2,
    force: bool = False,
) -> list[str]:
    """Write the synthetic demo collection: COGs to ``s3://{bucket}/{collection_id}/``,
    then the collection and its items to the STAC API. Returns the item ids.

    Idempotent: when the collection already holds every item generated with the same
    parameters (hash in the collection and the items) and every COG exists, nothing is
    written. ``force`` rebuilds anyway. Items of an older demo layout are deleted.

    Raises:
        StorageUnreachableError: S3 cannot be reached or refuses the credentials.
        StacApiUnreachableError: the STAC API does not answer.
        InvalidParameterError: a size or count out of range.
    """
    if not 1 <= n_tiles <= len(COLUMN_LETTERS) * len(ROW_LETTERS):
        raise InvalidParameterError("n_tiles", n_tiles, "give 1 to 16 tiles")
    if not 1 <= n_dates <= 40:
        raise InvalidParameterError("n_dates", n_dates, "give 1 to 40 dates")
    if size_px < 32 or size_px % 2:
        raise InvalidParameterError("size_px", size_px, "give an even tile size >= 32 px")
    api_url = stac_api_url.rstrip("/")
    fs = s3_filesystem(storage_options)
    check_bucket(fs, bucket, create=True)
    if get_json(f"{api_url}/") is None:
        raise StacApiUnreachableError(api_url, "no STAC API landing page (HTTP 404)")

    parameters, params_hash = _params(
        collection_id=collection_id,
        bucket=bucket,
        n_tiles=n_tiles,
        n_dates=n_dates,
        size_px=size_px,
        seed=seed,
    )
    tiles = demo_tiles(n_tiles, size_px=size_px)
    world_width_m = (max(t.col for t in tiles) + 1) * size_px * RESOLUTION_M
    plan = demo_acquisitions(n_dates, world_width_m=world_width_m, seed=seed)
    ids = [item_id(tile, acq) for tile in tiles for acq in plan]
    collection = get_json(f"{api_url}/collections/{collection_id}")
    existing = _existing_items(api_url, collection_id) if collection else {}
    prefix = f"{bucket}/{collection_id}"
    if not force and collection and _is_current(collection, existing, ids, params_hash):
        stored = set(fs.find(prefix))
        hrefs = {
            a["href"].removeprefix("s3://")
            for it in existing.values()
            for a in it["assets"].values()
        }
        if hrefs <= stored:
            return ids

    base_url = f"s3://{prefix}"
    items = generate_scenes(
        base_url=base_url,
        sink=lambda data, url: put(data, url, fs=fs),
        collection_id=collection_id,
        n_tiles=n_tiles,
        n_dates=n_dates,
        size_px=size_px,
        seed=seed,
        params_hash=params_hash,
        max_workers=max_workers,
    )
    upsert_collection(
        api_url,
        build_collection(collection_id, items, parameters=parameters, params_hash=params_hash),
    )
    upsert_items(api_url, collection_id, items)
    if collection and "cloudfree:demo" in collection:  # only ever prune our own demo
        stale = sorted(set(existing) - set(ids))
        for stale_id in stale:  # items first: no item may point at a deleted file
            delete_item(api_url, collection_id, stale_id)
        kept = {a["href"] for it in items for a in it["assets"].values()}
        orphans = [
            a["href"].removeprefix("s3://")
            for stale_id in stale
            for a in existing[stale_id]["assets"].values()
            if a["href"].startswith(f"s3://{bucket}/") and a["href"] not in kept
        ]
        if orphans:
            fs.rm(orphans)
    return ids


def _is_current(
    collection: dict[str, Any],
    existing: dict[str, dict[str, Any]],
    ids: list[str],
    params_hash: str,
) -> bool:
    """The collection and exactly the planned items carry this parameter hash."""
    if collection.get("cloudfree:demo", {}).get("params_hash") != params_hash:
        return False
    return set(existing) == set(ids) and all(
        existing[i]["properties"].get("cloudfree:demo_params_hash") == params_hash for i in ids
    )


__all__ = [
    "Acquisition",
    "DemoTile",
    "build_collection",
    "build_demo_catalog",
    "build_item",
    "demo_acquisitions",
    "demo_tiles",
    "generate_scenes",
    "item_id",
    "render_scene",
    "to_dn",
]
