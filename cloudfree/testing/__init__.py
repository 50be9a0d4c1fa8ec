"""Small seeded test data: cubes and STAC items backed by local GeoTIFFs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from rasterio.transform import from_origin

from cloudfree.grid import Tile, transform_bbox


def make_cube(
    *,
    n_dates: int = 5,
    bands: Sequence[str] = ("red", "green", "blue"),
    size: int = 32,
    seed: int = 0,
    start: str = "2024-05-01",
) -> xr.DataArray:
    """A (time, band, y, x) uint16 cube of random valid digital numbers (1000..4000)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1000, 4000, size=(n_dates, len(bands), size, size), dtype=np.uint16)
    return xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": pd.date_range(start, periods=n_dates, freq="10D"),
            "band": list(bands),
            "y": 5_000_000 - 10 * (np.arange(size) + 0.5),
            "x": 500_000 + 10 * (np.arange(size) + 0.5),
        },
    )


def make_tile(*, size: int = 32, epsg: int = 32633,
              origin: tuple[float, float] = (500_000.0, 5_000_000.0),
              resolution_m: float = 10.0) -> Tile:
    """A tile whose top-left corner is ``origin``."""
    x0, y0 = origin
    return Tile(tile_id="test", epsg=epsg, resolution_m=resolution_m,
                bounds=(x0, y0 - size * resolution_m, x0 + size * resolution_m, y0))


def make_items(
    directory: Path,
    arrays: dict[str, np.ndarray],
    *,
    tile: Tile,
    start: dt.date = dt.date(2024, 5, 1),
    step_days: int = 10,
    cloud_cover: Sequence[float] | None = None,
    collection: str = "sentinel-2-l2a",
) -> list[dict[str, Any]]:
    """Write one GeoTIFF per (date, asset) from ``arrays[asset]`` of shape (T, H, W) and
    return STAC item dicts pointing at them, one per date, on ``tile``'s grid."""
    directory.mkdir(parents=True, exist_ok=True)
    n_dates = next(iter(arrays.values())).shape[0]
    items = []
    bbox = list(transform_bbox(tile.bounds, tile.epsg, 4326))
    for t in range(n_dates):
        day = start + dt.timedelta(days=step_days * t)
        item_id = f"TEST_{day:%Y%m%d}"
        assets = {}
        for name, stack in arrays.items():
            frame = stack[t]
            h, w = frame.shape
            # assets may have their own resolution (e.g. 20 m SCL)
            res = (tile.bounds[2] - tile.bounds[0]) / w
            transform = from_origin(tile.bounds[0], tile.bounds[3], res, res)
            path = directory / f"{item_id}_{name}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1,
                               dtype=frame.dtype, crs=f"EPSG:{tile.epsg}", transform=transform,
                               nodata=0) as dst:
                dst.write(frame, 1)
            assets[name] = {
                "href": str(path),
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "proj:epsg": tile.epsg,
                "proj:shape": [h, w],
                "proj:transform": list(transform)[:6],
            }
        items.append({
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": item_id,
            "collection": collection,
            "bbox": bbox,
            "geometry": {"type": "Polygon", "coordinates": [[
                [bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]},
            "properties": {
                "datetime": f"{day.isoformat()}T10:00:00Z",
                "proj:epsg": tile.epsg,
                "eo:cloud_cover": None if cloud_cover is None else cloud_cover[t],
            },
            "assets": assets,
            "links": [],
        })
    return items


def settings_env(settings: Any) -> dict[str, str]:
    """Environment variables that make ``Settings()`` equal ``settings`` (ports, state
    directory, collections), for code that builds its own settings, like the flows."""
    env = {
        "CLOUDFREE_STATE_DIR": str(settings.state_dir),
        "CLOUDFREE_HOST": settings.host,
        "CLOUDFREE_PG_PORT": str(settings.pg_port),
        "CLOUDFREE_STAC_PORT": str(settings.stac_port),
        "CLOUDFREE_S3_PORT": str(settings.s3_port),
        "CLOUDFREE_SEAWEED_PORT_BASE": str(settings.seaweed_port_base),
        "CLOUDFREE_PREFECT_PORT": str(settings.prefect_port),
        "CLOUDFREE_BUCKET": settings.bucket,
        "CLOUDFREE_SOURCE_COLLECTION": settings.source_collection,
        "CLOUDFREE_OUTPUT_COLLECTION": settings.output_collection,
        "CLOUDFREE_OUT_DIR": str(settings.out_dir),
    }
    for name in ("stac_api_url", "s3_endpoint_url", "prefect_api_url"):
        value = getattr(settings, name)
        if value:
            env[f"CLOUDFREE_{name.upper()}"] = value
    return env


def shared_data_dir() -> Path | None:
    """The real Sentinel-2 evaluation cases (``../shared/data`` beside the checkout, or
    ``$CLOUDFREE_SHARED_DATA``), or None when they are not on this machine."""
    import os

    candidates = [os.environ.get("CLOUDFREE_SHARED_DATA"),
                  Path(__file__).resolve().parents[3] / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
