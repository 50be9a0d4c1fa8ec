"""The demo catalog's scenes: rendered from the synthetic world, encoded as L2A digital
numbers and written as COGs, one per asset."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree import synthetic as synth
from cloudfree.cog import write_cog
from cloudfree.demo.items import build_item
from cloudfree.demo.layout import (
    DEFAULT_SIZE_PX,
    EPSG,
    RESOLUTION_M,
    Acquisition,
    DemoTile,
    demo_plan,
)
from cloudfree.sentinel2 import NODATA, OFFSET, SCALE

#: Stored at 10 m; the SWIR bands and the SCL are stored at 20 m.
BANDS_10M: tuple[str, ...] = synth.BANDS[:4]


def to_dn(reflectance: NDArray[np.float32], valid: NDArray[np.bool_]) -> NDArray[np.uint16]:
    """L2A digital numbers (baseline 04.00): (reflectance + 0.1) / 0.0001, 1..65535; 0 = nodata."""
    dn: NDArray[np.uint16] = np.clip(np.rint((reflectance - OFFSET) / SCALE), 1, 65535).astype(
        np.uint16
    )
    dn[..., ~valid] = NODATA
    return dn


def render_scene(
    tile: DemoTile, acq: Acquisition, land: synth.Landscape
) -> dict[str, NDArray[np.unsignedinteger[Any]]]:
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
    arrays: dict[str, NDArray[np.unsignedinteger[Any]]] = {
        name: to_dn(scene.reflectance[i], scene.valid) for i, name in enumerate(BANDS_10M)
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
    sink: Callable[[bytes, str], object],
    params_hash: str,
    collection_id: str,
) -> dict[str, Any]:
    arrays = render_scene(tile, acq, land)
    hrefs: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for name, array in arrays.items():
        scale = 1 if name in BANDS_10M else 2
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
    sink: Callable[[bytes, str], object],
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
    tiles, acquisitions = demo_plan(n_tiles=n_tiles, n_dates=n_dates, size_px=size_px, seed=seed)
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
