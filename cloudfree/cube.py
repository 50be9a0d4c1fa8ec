"""Time cubes: stackstac stacks of STAC items as uint16 (time, band, y, x) with nodata, every
observation re-encoded to one reflectance scale before anything composites it.

Catalogs encode reflectance differently (:mod:`cloudfree.catalogs` decides each item's
``reflectance = DN * scale + offset``, band by band). The cube brings every item's digital
numbers to cloudfree's one encoding, :data:`cloudfree.sentinel2.SCALE` and ``OFFSET``
(1e-4 and -0.1: the L2A encoding since processing baseline 04.00), so a median over a window
that straddles 2022-01-25 compares like with like. For the usual case (scale 1e-4) this is an
integer shift of the DNs (+1000 for an item without offset), exact; another scale is
rescaled in float64 and rounded. SCL is never rescaled, and is always resampled with
``nearest`` (its values are classes), whatever ``resampling`` the reflectance bands use.

A read that fails (after GDAL's own retries) raises
:class:`~cloudfree.errors.SourceReadError` naming the scene, the asset and the href
(:class:`SourceReader`), never silent nodata; :func:`cloudfree.tile.compute_tile` applies
the read failure policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from stackstac.rio_reader import AutoParallelRioReader

from cloudfree.errors import InvalidParameterError, SourceReadError
from cloudfree.grid import Tile
from cloudfree.sentinel2 import NODATA, OFFSET, SCALE

__all__ = ["NODATA", "SourceReader", "build_cube", "merge_same_day", "reencode"]

#: Class bands: never rescaled, always resampled with nearest.
CLASS_BANDS = frozenset({"scl"})


def _prepared(items: Sequence[Mapping[str, Any]], bands: Sequence[str]) -> list[dict[str, Any]]:
    """``items`` decoded and re-keyed by :func:`cloudfree.catalogs.prepare_items` (items
    already prepared pass through)."""
    from cloudfree import catalogs

    reflectance = [b for b in bands if b not in CLASS_BANDS]
    return catalogs.prepare_items([dict(it) for it in items], reflectance,
                                  scl=any(b in CLASS_BANDS for b in bands))


_URL_QUERY = re.compile(r"(\w+://[^\s?'\"]+)\?[^\s'\"]*")
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "SESSION")


def _deepest(exc: BaseException) -> BaseException:
    """The root of an exception's ``__cause__`` chain: stackstac wraps rasterio's error
    ("Read failed. See previous exception") around GDAL's, which says what failed."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _secrets(env: Any) -> list[str]:
    """The credential values a GDAL environment holds (session keys, tokens), to scrub from
    error text: an S3 error document may echo the access key."""
    options: dict[str, Any] = {}
    for layer in ("_always", "_open", "_open_vrt", "_read"):
        options.update(getattr(env, layer, None) or {})
    found = [str(v) for k, v in options.items()
             if any(w in k.upper() for w in _SECRET_WORDS) and isinstance(v, str) and v]
    session = options.get("session")
    found += [str(v) for v in getattr(session, "credentials", {}).values() if v]
    return found


def read_error_text(exc: BaseException, env: Any = None, *, href: str = "",
                    limit: int = 300) -> str:
    """A short, safe text of a read failure: GDAL's message, URL query strings (signatures)
    cut, ``href``'s too, credential values of ``env`` masked, at most ``limit`` characters."""
    root = _deepest(exc)
    text = str(root) or type(root).__name__
    if "?" in href:
        text = text.replace(href, href.split("?", 1)[0] + "?<query removed>")
    text = _URL_QUERY.sub(r"\1?<query removed>", text)
    for secret in _secrets(env):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SourceReader(AutoParallelRioReader):  # type: ignore[misc]  # stackstac is untyped here
    """stackstac's reader that knows which scene and asset it reads: a read that fails
    raises :class:`~cloudfree.errors.SourceReadError` naming them, instead of a bare
    ``RuntimeError`` deep in a dask compute. ``sources`` maps hrefs to ``(item id, asset
    key)``; stackstac builds one reader per href (see :func:`_stack`).

    No retries of its own: transient HTTP faults (429, 5xx, timeouts, resets) are retried
    by GDAL (``GDAL_HTTP_MAX_RETRY``, :data:`cloudfree.storage.DEFAULT_GDAL_ENV`), and a
    second layer would multiply its worst case (a stalled read times out once per try).
    What fails after those is a :class:`SourceReadError`, for the tile's policy."""

    def __init__(self, *, sources: Mapping[str, tuple[str, str]] | None = None,
                 source: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source or (sources or {}).get(kwargs["url"], ("unknown", "unknown"))

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            data: np.ndarray = super().read(window, **kwargs)
            return data
        except Exception as exc:
            text = read_error_text(exc, self.gdal_env, href=self.url)
        # Raised outside the handler: no __context__ (GDAL's error objects do not unpickle,
        # and their text may hold a signed URL); the reason is in the message.
        raise SourceReadError(self.source[0], self.source[1], self.url, text)

    def __getstate__(self) -> Any:
        return {**super().__getstate__(), "source": self.source}


def _sources(items: Sequence[Mapping[str, Any]], bands: Sequence[str]
             ) -> dict[str, tuple[str, str]]:
    """href -> (item id, the catalog's asset key) of every asset the stack reads."""
    table: dict[str, tuple[str, str]] = {}
    for item in items:
        decoding = (item.get("properties") or {}).get("cloudfree:decoding") or {}
        keys = {b.get("band"): b.get("asset_key") for b in decoding.get("bands", [])}
        for band in bands:
            asset = (item.get("assets") or {}).get(band)
            if asset and asset.get("href"):
                table[str(asset["href"])] = (str(item["id"]), str(keys.get(band) or band))
    return table


def _stack(items: list[dict[str, Any]], bands: Sequence[str], tile: Tile, chunksize: int,
           resampling: str, env: Any) -> xr.DataArray:
    stacked: xr.DataArray = stackstac.stack(
        items,
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
        # A failed read must fail the task (and be retried), never become silent nodata;
        # it fails naming its scene and asset (SourceReader).
        errors_as_nodata=(),
        reader=partial(SourceReader, sources=_sources(items, bands)),
    )
    return stacked


def build_cube(
    items: Sequence[Mapping[str, Any]],
    bands: Sequence[str],
    *,
    tile: Tile,
    chunksize: int = 1024,
    resampling: Literal["nearest", "bilinear"] = "nearest",
    gdal_env: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Stack ``bands`` of ``items`` onto ``tile``'s grid, lazily.

    The result holds uint16 digital numbers in cloudfree's encoding (``DN * SCALE +
    OFFSET``, see the module docstring) with 0 as nodata, has centre coordinates, one time
    step per solar day (scenes of the same day from adjacent tiles are mosaicked
    first-valid), and is chunked with time whole and space in ``chunksize`` pixels. Items
    in any projection are reprojected onto the tile's grid.

    Args:
        items: STAC items as dicts, as a catalog returns them or already prepared by
            :func:`cloudfree.catalogs.prepare_items` (which decides each one's decoding and
            asset keys; raw items are prepared here with the catalog's own profile).
        bands: cloudfree band names, e.g. ``["red", "green", "blue", "scl"]``.
        tile: the output grid: EPSG, bounds and resolution.
        chunksize: spatial chunk size in pixels.
        resampling: for reflectance assets whose grid differs from the tile's (SCL: nearest).
        gdal_env: GDAL options for the reads (S3 endpoint, credentials...).
    """
    if not items:
        raise InvalidParameterError("items", [], "give at least one STAC item to stack")
    if chunksize <= 0:
        raise InvalidParameterError("chunksize", chunksize, "give a positive chunk size")
    prepared = _prepared(items, bands)
    env = stackstac.rio_env.LayeredEnv(
        always=dict(gdal_env or {}),
        open={"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": True},
        read={"VSI_CACHE": False},
    )
    values = [b for b in bands if b not in CLASS_BANDS]
    classes = [b for b in bands if b in CLASS_BANDS]
    parts = []
    if values:
        parts.append(reencode(_stack(prepared, values, tile, chunksize, resampling, env),
                              prepared))
    if classes:
        parts.append(_stack(prepared, classes, tile, chunksize, "nearest", env))
    cube = parts[0] if len(parts) == 1 else xr.concat(parts, dim="band")
    cube = cube.sel(band=list(bands))
    cube = merge_same_day(cube)
    cube = cube.chunk({"time": -1, "band": 1, "y": chunksize, "x": chunksize})
    cube.attrs.update(nodata=NODATA, epsg=tile.epsg, tile_id=tile.tile_id,
                      scale=SCALE, offset=OFFSET)
    return cube


def _reencode_block(block: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """One (t, b, y, x) block of stored DNs -> cloudfree's encoding, given (t, b) decodings."""
    out = np.empty(block.shape, np.uint16)
    for t, b in np.ndindex(block.shape[:2]):
        dn = block[t, b]
        s, o = float(scale[t, b]), float(offset[t, b])
        shift = (o - OFFSET) / SCALE
        if s == SCALE and abs(shift - round(shift)) < 1e-6:  # exact: an integer shift
            value = dn.astype(np.int32) + int(round(shift))
        else:
            value = np.rint((dn.astype(np.float64) * s + o - OFFSET) / SCALE)
        encoded = np.clip(value, 1, 65535).astype(np.uint16)
        out[t, b] = np.where(dn == NODATA, np.uint16(NODATA), encoded)
    return out


def reencode(cube: xr.DataArray, items: Sequence[Mapping[str, Any]]) -> xr.DataArray:
    """A (time, band, y, x) cube of stored DNs, each time step decoded with its item's
    decoding (``cloudfree:decoding``, matched by the ``id`` coordinate), re-encoded to
    ``SCALE``/``OFFSET``. Values below ``OFFSET`` clip to DN 1; nodata stays 0."""
    from cloudfree.catalogs import decoding_table

    tables = {it["id"]: decoding_table(it) for it in items}
    ids = [str(i) for i in np.atleast_1d(cube["id"].values)]
    names = [str(b) for b in cube["band"].values]
    scale = np.array([[tables[i][b][0] for b in names] for i in ids], np.float64)
    offset = np.array([[tables[i][b][1] for b in names] for i in ids], np.float64)
    if np.all(scale == SCALE) and np.all(offset == OFFSET):
        return cube
    import dask.array as da

    data = da.asarray(cube.data)
    t_chunks, b_chunks = data.chunks[:2]
    t_edges, b_edges = np.cumsum((0, *t_chunks)), np.cumsum((0, *b_chunks))

    def block(x: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        if block_info is None:  # dask always passes it
            raise ValueError("reencode's block runs inside dask's map_blocks")
        ti, bi = block_info[None]["chunk-location"][:2]
        rows = slice(t_edges[ti], t_edges[ti + 1])
        cols = slice(b_edges[bi], b_edges[bi + 1])
        return _reencode_block(x, scale[rows, cols], offset[rows, cols])

    out = data.map_blocks(block, dtype=np.uint16, meta=np.empty((0,) * 4, np.uint16))
    return cube.copy(data=out)


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
