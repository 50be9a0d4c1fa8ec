"""COG stage: encode arrays as validated Cloud Optimized GeoTIFFs and put them on storage."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate

from cloudfree.errors import InvalidCOGError, InvalidParameterError

# GDAL settings while encoding, one comment per option.
COG_GDAL_ENV: dict[str, str | int] = {
    # Compress blocks and build overviews on all cores.
    "GDAL_NUM_THREADS": "ALL_CPUS",
    # Keep whole arrays in the block cache while writing (MB).
    "GDAL_CACHEMAX": 512,
}

Compression = Literal["deflate", "zstd"]
Resampling = Literal["nearest", "average", "mode", "bilinear", "cubic"]
Predictor = Literal["auto", "none", "horizontal", "floating_point"]


def cog_creation_options(
    *,
    dtype: np.dtype[Any],
    compress: Compression = "deflate",
    blocksize: int = 512,
    overview_resampling: Resampling = "average",
    predictor: Predictor = "auto",
) -> dict[str, str]:
    """GDAL COG driver creation options, one comment per option."""
    if predictor == "auto":
        # Differencing helps smooth data; categorical rasters (nearest) compress better raw.
        if overview_resampling in ("nearest", "mode"):
            predictor = "none"
        else:
            predictor = "floating_point" if np.issubdtype(dtype, np.floating) else "horizontal"
    return {
        # Lossless codec of the tiles.
        "COMPRESS": compress.upper(),
        # Differencing before compression: STANDARD (horizontal, integers), FLOATING_POINT.
        "PREDICTOR": {"none": "NO", "horizontal": "STANDARD", "floating_point": "FLOATING_POINT"}[
            predictor
        ],
        # Square internal tiles; also the size the overviews stop at.
        "BLOCKSIZE": str(blocksize),
        # Internal overviews, halving until they fit in one tile.
        "OVERVIEWS": "IGNORE_EXISTING",
        "OVERVIEW_RESAMPLING": overview_resampling.upper(),
        # Large rasters switch to BigTIFF by themselves.
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }


def _per_band(name: str, value: Any, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = (
        tuple(value)
        if isinstance(value, Sequence) and not isinstance(value, str)
        else (value,) * count
    )
    if len(values) != count:
        raise InvalidParameterError(name, value, f"give one value or one per band ({count})")
    return tuple(float(v) for v in values)


def _cast(array: NDArray[Any], dtype: np.dtype[Any], nodata: float | None) -> NDArray[Any]:
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer) and np.issubdtype(array.dtype, np.floating):
        info = np.iinfo(dtype)
        out: NDArray[Any] = np.rint(np.clip(np.nan_to_num(array, nan=info.min), info.min, info.max))
        if nodata is not None:
            out[np.isnan(array)] = nodata
        return out.astype(dtype)
    return array.astype(dtype)


def write_cog(
    array: NDArray[Any],
    *,
    transform: Affine | Sequence[float],
    crs: str | int | CRS,
    nodata: float | None,
    dtype: str | np.dtype[Any] | None = None,
    scale: float | Sequence[float] | None = None,
    offset: float | Sequence[float] | None = None,
    band_names: Sequence[str] | None = None,
    compress: Compression = "deflate",
    blocksize: int = 512,
    overview_resampling: Resampling = "average",
    predictor: Predictor = "auto",
    colormap: Mapping[int, Sequence[int]] | None = None,
    band_tags: Sequence[Mapping[str, str]] | None = None,
) -> bytes:
    """Encode an (H, W) or (C, H, W) array as a validated Cloud Optimized GeoTIFF in memory.

    A raster larger than one block in either dimension always gets internal overviews
    (halving until the largest side fits in a block), so a GIS zoomed out reads a few
    blocks, not the whole file; a smaller one needs none.

    Args:
        array: the pixels; floats cast to an integer ``dtype`` are rounded and clipped,
            NaN becomes ``nodata``.
        transform: affine geotransform (an ``Affine`` or its 6 or 9 coefficients).
        crs: e.g. ``"EPSG:32633"`` or ``32633``.
        nodata: nodata value written to the file, or ``None``.
        dtype: output data type; default the array's.
        scale: GDAL scale per band (one value for all bands), e.g. 0.0001.
        offset: GDAL offset per band, e.g. -0.1 (physical = DN * scale + offset).
        band_names: band descriptions.
        compress: tile codec.
        blocksize: internal tile size in pixels (a multiple of 16).
        overview_resampling: ``average`` for reflectance, ``nearest``/``mode`` for classes.
        predictor: ``auto`` uses differencing except for categorical rasters.
        colormap: a colour table for a one-band ``uint8``/``uint16`` class raster: value ->
            ``(r, g, b)`` or ``(r, g, b, a)``, stored in the TIFF (palette interpretation),
            so QGIS and ArcGIS show the classes in their colours.
        band_tags: per-band metadata items, stored inside the TIFF (GDAL_METADATA tag):
            e.g. the CF ``flag_values``/``flag_meanings`` naming a class raster's classes.
            GDAL keeps category names and attribute tables only in ``.aux.xml`` sidecars,
            which are not written.

    Returns:
        The bytes of the file.

    Raises:
        InvalidCOGError: when rio-cogeo finds the result is not a valid COG.
        InvalidParameterError: on a bad shape, block size or per-band list.
    """
    pixels = np.asarray(array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise InvalidParameterError("array", pixels.shape, "give an (H, W) or (C, H, W) array")
    if blocksize % 16 or blocksize <= 0:
        raise InvalidParameterError("blocksize", blocksize, "give a positive multiple of 16")
    out_dtype = np.dtype(dtype or pixels.dtype)
    pixels = _cast(pixels, out_dtype, nodata)
    count = pixels.shape[0]
    scales = _per_band("scale", scale, count)
    offsets = _per_band("offset", offset, count)
    if band_names is not None and len(band_names) != count:
        raise InvalidParameterError("band_names", band_names, f"give one name per band ({count})")
    if band_tags is not None and len(band_tags) != count:
        raise InvalidParameterError("band_tags", band_tags, f"give one mapping per band ({count})")
    if colormap is not None and (count != 1 or out_dtype.name not in ("uint8", "uint16")):
        raise InvalidParameterError(
            "colormap", f"{count} band(s) of {out_dtype.name}",
            "a colour table needs one band of uint8 or uint16")
    if not isinstance(transform, Affine):
        transform = Affine(*list(transform)[:6])
    profile = {
        "driver": "COG",
        "width": pixels.shape[2],
        "height": pixels.shape[1],
        "count": count,
        "dtype": out_dtype.name,
        "crs": CRS.from_user_input(f"EPSG:{crs}" if isinstance(crs, int) else crs),
        "transform": transform,
        "nodata": nodata,
        **cog_creation_options(
            dtype=out_dtype,
            compress=compress,
            blocksize=blocksize,
            overview_resampling=overview_resampling,
            predictor=predictor,
        ),
    }
    with rasterio.Env(**COG_GDAL_ENV), MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(pixels)
            if scales is not None:
                dst.scales = scales
            if offsets is not None:
                dst.offsets = offsets
            for index, name in enumerate(band_names or (), start=1):
                dst.set_band_description(index, name)
            for index, tags in enumerate(band_tags or (), start=1):
                dst.update_tags(index, **tags)
            if colormap is not None:
                dst.write_colormap(1, {int(k): tuple(int(c) for c in v)
                                       for k, v in colormap.items()})
        data: bytes = memfile.read()
        is_valid, errors, _warnings = cog_validate(memfile.name, quiet=True)
        with memfile.open() as src:
            overviews = src.overviews(1)
    errors = list(errors)
    if max(pixels.shape[1:]) > blocksize and not overviews:
        errors.append(f"no overviews on a {pixels.shape[2]}x{pixels.shape[1]} raster larger "
                      f"than one {blocksize} px block")
    if not is_valid or errors:
        raise InvalidCOGError(f"COG of shape {pixels.shape}", errors)
    return data


def put(data: bytes, url: str, *, fs: Any = None) -> str:
    """Write ``data`` to ``s3://bucket/key`` through the s3fs filesystem ``fs``, or to a
    local path (``file://`` or plain). Local writes are atomic. Returns ``url``."""
    if url.startswith("s3://"):
        if fs is None:
            raise InvalidParameterError(
                "fs",
                fs,
                f"give an s3fs filesystem to write {url} (cloudfree.storage.s3_filesystem)",
            )
        fs.pipe(url.removeprefix("s3://"), data)
        return url
    if "://" in url and not url.startswith("file://"):
        raise InvalidParameterError("url", url, "give an s3:// URL, a file:// URL or a local path")
    path = Path(url.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return url
