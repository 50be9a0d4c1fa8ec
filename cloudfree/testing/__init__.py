"""Builders the tests share, whatever their kind (unit, integration, deploy): small seeded
cubes, STAC items backed by local GeoTIFFs, tiny generators and their cards, training
options, and the environment that points ``Settings()`` at a given stack.

Importable without the local stack or the demo world (nothing here imports them), and
without torch until a model is built.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from numpy.typing import NDArray
from rasterio.transform import from_origin

from cloudfree.grid import Tile, transform_bbox

if TYPE_CHECKING:
    from cloudfree.models.generator import Generator
    from cloudfree.models.weights import ModelCard

#: Training options that train in seconds on a CPU (``TrainOptions(**TINY_TRAINING)``).
TINY_TRAINING: dict[str, int] = dict(batch=2, size=32, frames=4, base_channels=4, depth=1,
                                     heads=2, n_landscapes=1, world_px=48, checkpoint_every=2)


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
                # as Earth Search and C1 state it: DN * 1e-4 - 0.1 (baseline >= 04.00)
                "raster:bands": [{"nodata": 0, "data_type": str(frame.dtype)} | (
                    {} if name == "scl" else {"scale": 0.0001, "offset": -0.1})],
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
                "platform": "sentinel-2b",
                "constellation": "sentinel-2",
                "s2:processing_baseline": "05.10",
                "eo:cloud_cover": None if cloud_cover is None else cloud_cover[t],
            },
            "assets": assets,
            "links": [],
        })
    return items


def reflectance_cube(
    values: NDArray[np.floating[Any]],
    days: NDArray[Any],
    *,
    bands: Sequence[str] | None = None,
    clear: NDArray[np.bool_] | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """A (time, band, y, x) reflectance series as the mosaics see it: uint16 digital numbers
    (``round((r + 0.1) / 1e-4)``, 0 where NaN) and the (time, y, x) clear mask (default:
    where every band is finite), on integer pixel coordinates and the dates ``days`` (days
    since 1970-01-01)."""
    finite = np.isfinite(values)
    dn = np.where(finite, np.round((values + 0.1) / 1e-4), 0).astype(np.uint16)
    time = pd.to_datetime(days, unit="D")
    height, width = dn.shape[-2:]
    coords: dict[str, Any] = {"time": time}
    if bands is not None:
        coords["band"] = list(bands)
    coords |= {"y": np.arange(height), "x": np.arange(width)}
    cube = xr.DataArray(dn, dims=("time", "band", "y", "x"), coords=coords)
    mask = xr.DataArray(finite.all(axis=1) if clear is None else clear, dims=("time", "y", "x"),
                        coords={k: coords[k] for k in ("time", "y", "x")})
    return cube, mask


def tiny_generator(
    bands: Sequence[str] | None = None,
    *,
    seed: int = 0,
    base_channels: int = 4,
    depth: int = 1,
    heads: int = 2,
    head_std: float | None = None,
    head_bias_std: float | None = None,
) -> Generator:
    """A small seeded :class:`~cloudfree.models.generator.Generator` in eval mode, on
    ``bands`` (default the model bands). Its head starts at zero (output = the temporal
    prior); ``head_std`` / ``head_bias_std`` draw random head weights / biases (after the
    model, from the same seed) so that the spatial network counts too."""
    import torch

    from cloudfree.models.generator import Generator
    from cloudfree.models.weights import MODEL_BANDS

    torch.manual_seed(seed)
    model = Generator(bands=MODEL_BANDS if bands is None else bands,
                      base_channels=base_channels, depth=depth, heads=heads)
    with torch.no_grad():
        if head_std is not None:
            model.head.weight.normal_(0.0, head_std)
        if head_bias_std is not None:
            bias = model.head.bias
            assert bias is not None  # the head is a convolution with a bias
            bias.normal_(0.0, head_bias_std)
    return model.eval()


def model_card(name: str = "tiny", version: str = "0", *, training_data: str = "test",
               **fields: Any) -> ModelCard:
    """A card for a test model on the model bands with the default normalisation."""
    from cloudfree.models.weights import MODEL_BANDS, ModelCard, default_normalisation

    return ModelCard(name=name, version=version, bands=MODEL_BANDS,
                     normalisation=default_normalisation(), training_data=training_data,
                     **fields)


def settings_env(settings: Any) -> dict[str, str]:
    """Environment variables that make ``Settings()`` equal ``settings`` (ports, state
    directory, collections), for code that builds its own settings, like the flows."""
    env = {
        "CLOUDFREE_STATE_DIR": str(settings.state_dir),
        "CLOUDFREE_HOST": settings.host,
        "CLOUDFREE_PG_PORT": str(settings.pg_port),
        "CLOUDFREE_STAC_PORT": str(settings.stac_port),
        "CLOUDFREE_STAC_WRITE_PORT": str(settings.stac_write_port),
        "CLOUDFREE_S3_PORT": str(settings.s3_port),
        "CLOUDFREE_SEAWEED_PORT_BASE": str(settings.seaweed_port_base),
        "CLOUDFREE_PREFECT_PORT": str(settings.prefect_port),
        "CLOUDFREE_BUCKET": settings.bucket,
        "CLOUDFREE_SOURCE_COLLECTION": settings.source_collection,
        "CLOUDFREE_OUTPUT_COLLECTION": settings.output_collection,
        "CLOUDFREE_OUT_DIR": str(settings.out_dir),
    }
    for name in ("stac_api_url", "stac_write_url", "s3_endpoint_url", "prefect_api_url"):
        value = getattr(settings, name)
        if value:
            env[f"CLOUDFREE_{name.upper()}"] = value
    return env


@contextmanager
def settings_environment(settings: Any) -> Iterator[dict[str, str]]:
    """:func:`settings_env` set in ``os.environ`` for the block (for the CLI and the flows,
    which build their own settings); the previous environment is restored after."""
    env = settings_env(settings)
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def shared_data_dir() -> Path | None:
    """The real Sentinel-2 evaluation cases (``../shared/data`` beside the checkout, or
    ``$CLOUDFREE_SHARED_DATA``), or None when they are not on this machine."""
    candidates = [os.environ.get("CLOUDFREE_SHARED_DATA"),
                  Path(__file__).resolve().parents[3] / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
