"""Time cubes: stackstac stacks of STAC items as uint16 (time, band, y, x) with nodata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import stackstac
import xarray as xr
from rasterio.enums import Resampling

from cloudfree.errors import InvalidParameterError
from cloudfree.grid import Tile
from cloudfree.sentinel2 import NODATA

__all__ = ["NODATA", "build_cube", "merge_same_day"]


def build_cube(
    items: Sequence[dict[str, Any]],
    bands: Sequence[str],
    *,
    tile: Tile,
    chunksize: int = 1024,
    resampling: Literal["nearest", "bilinear"] = "nearest",
    gdal_env: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Stack ``bands`` of ``items`` onto ``tile``'s grid, lazily.

    The result keeps the stored uint16 digital numbers (no rescaling) with 0 as
    nodata, has centre coordinates, one time step per solar day (scenes of the same
    day from adjacent tiles are mosaicked first-valid), and is chunked with time
    whole and space in ``chunksize`` pixels.

    Args:
        items: STAC items as dicts (pystac 1.15 rewrites ``proj:epsg``, which stackstac
            0.5 reads, so the grid is always passed explicitly).
        bands: asset keys, e.g. ``["red", "green", "blue", "scl"]``.
        tile: the output grid: EPSG, bounds and resolution.
        chunksize: spatial chunk size in pixels.
        resampling: for assets whose grid differs from the tile's.
        gdal_env: GDAL options for the reads (S3 endpoint, credentials...).
    """
    if not items:
        raise InvalidParameterError("items", [], "give at least one STAC item to stack")
    if chunksize <= 0:
        raise InvalidParameterError("chunksize", chunksize, "give a positive chunk size")
    missing = sorted({b for b in bands for it in items if b not in it.get("assets", {})})
    if missing:
        raise InvalidParameterError(
            "bands", list(bands), f"assets {missing} are missing from some items; "
            f"choose among {sorted(items[0].get('assets', {}))}"
        )
    env = stackstac.rio_env.LayeredEnv(
        always=dict(gdal_env or {}),
        open={"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": True},
        read={"VSI_CACHE": False},
    )
    cube = stackstac.stack(
        list(items),
        assets=list(bands),
        epsg=tile.epsg,
        resolution=tile.resolution_m,
        bounds=tile.bounds,
        snap_bounds=False,
        chunksize=chunksize,
        dtype=np.dtype("uint16"),
        fill_value=np.uint16(NODATA),  # numpy 2 refuses a Python int for uint16
        rescale=False,
        xy_coords="center",
        resampling=Resampling[resampling],
        properties=False,
        band_coords=False,
        gdal_env=env,
        # A failed read must fail the task (and be retried), never become silent nodata.
        errors_as_nodata=(),
    )
    cube = merge_same_day(cube)
    cube = cube.chunk({"time": -1, "band": 1, "y": chunksize, "x": chunksize})
    cube.attrs.update(nodata=NODATA, epsg=tile.epsg, tile_id=tile.tile_id)
    return cube


def merge_same_day(cube: xr.DataArray) -> xr.DataArray:
    """Collapse scenes of the same UTC day (one datatake over adjacent tiles) into one
    time step: a valid (non-nodata) pixel wins over nodata, the later scene on top."""
    days = cube["time"].dt.floor("D")
    if len(np.unique(days.values)) == cube.sizes["time"]:
        return cube.assign_coords(time=days.values)
    ids = cube["id"].values if "id" in cube.coords else None
    merged: list[xr.DataArray] = []
    for day in np.unique(days.values):
        group = cube.isel(time=np.flatnonzero(days.values == day))
        frame: xr.DataArray = stackstac.mosaic(group, dim="time", nodata=NODATA)
        merged.append(frame.expand_dims(time=[day]))
    out = xr.concat(merged, dim="time")
    if ids is not None:
        out = out.assign_coords(
            id=("time", [",".join(ids[days.values == d]) for d in np.unique(days.values)])
        )
    return out
