"""Real published STAC items, backed by local GeoTIFFs of known digital numbers.

A real item (``shared_data_dir() / "stac-items" / <catalog> / <id>.json``, exactly as its
catalog published it) keeps every field; only the hrefs of the assets a test reads are
rewritten to local GeoTIFFs written at the asset's own grid (``proj:shape``,
``proj:transform``, EPSG from ``proj:epsg`` / ``proj:code`` on the asset or the item),
uint16 with nodata 0. A full Sentinel-2 raster (10980 x 10980 at 10 m) is written tiled
(512 px blocks) with GDAL's ``SPARSE_OK``: only the blocks around the area a test reads
are stored; every other block reads as 0, nodata.

The digital numbers encode a reflectance the caller gives, under an encoding the caller
gives (``DN = round((reflectance - offset) / scale)``): this module knows nothing of how
cloudfree decodes a catalog, so a test can state the catalog's encoding independently.

Geometry is done with numpy and pyproj only (no shapely, which is no dependency).
Importable without the local stack.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.transform import Affine
from rasterio.windows import Window

from cloudfree.grid import Bbox, Tile, transform_bbox
from cloudfree.sentinel2 import BANDS, DEFAULT_BANDS

FloatArray = NDArray[np.float64]
#: ``reflectance(band, x, y, epsg)``: the reflectance at pixel centres ``x, y`` (metres in
#: ``epsg``, the asset's CRS); NaN where the asset has no data.
ReflectanceFn = Callable[[str, FloatArray, FloatArray, int], FloatArray]
#: ``valid(x, y, epsg)``: where the asset has data (SCL is written there, 0 elsewhere).
ValidFn = Callable[[FloatArray, FloatArray, int], NDArray[np.bool_]]

#: The default margin written around the area a test reads: 300 px at 10 m.
MARGIN_M = 3000.0
BLOCK = 512


def stac_items_dir() -> Path | None:
    """``shared_data_dir() / "stac-items"``, or None when the real data is not here."""
    from cloudfree.testing import shared_data_dir

    shared = shared_data_dir()
    if shared is None or not (shared / "stac-items").is_dir():
        return None
    return shared / "stac-items"


def real_item_path(catalog: str, item_id: str) -> Path | None:
    root = stac_items_dir()
    path = None if root is None else root / catalog / f"{item_id}.json"
    return path if path is not None and path.is_file() else None


def load_real_item(catalog: str, item_id: str, *, skip: bool = True) -> dict[str, Any]:
    """The published item, as a fresh dict. Absent: skip the calling test (``skip``) or
    raise FileNotFoundError."""
    path = real_item_path(catalog, item_id)
    if path is None:
        reason = f"real STAC item {catalog}/{item_id}.json is not on this machine"
        if skip:
            import pytest

            pytest.skip(reason)
        raise FileNotFoundError(reason)
    item: dict[str, Any] = json.loads(path.read_text())
    return item


def real_item_ids(catalog: str) -> list[str]:
    """The ids of a catalog's stored items (empty when the data is absent)."""
    root = stac_items_dir()
    if root is None or not (root / catalog).is_dir():
        return []
    return sorted(p.stem for p in (root / catalog).glob("*.json"))


# --------------------------------------------------------------------------- assets


def asset_keys(item: Mapping[str, Any], bands: Sequence[str] = DEFAULT_BANDS) -> dict[str, str]:
    """cloudfree band name (and ``"scl"``) -> the item's own asset key: Earth Search v1 and
    Collection 1 key by common name (``red``, ``scl``), Earth Search v0 and Planetary
    Computer by ESA band id (``B04``, ``SCL``). Not cloudfree's matching: the two
    conventions of the stored catalogs, written out."""
    assets = item["assets"]
    keys: dict[str, str] = {}
    for band in bands:
        s2_id = BANDS[band].s2_name
        key = band if band in assets else s2_id if s2_id in assets else None
        if key is None:
            raise KeyError(f"item {item['id']} has neither asset {band!r} nor {s2_id!r}")
        keys[band] = key
    scl = "scl" if "scl" in assets else "SCL" if "SCL" in assets else None
    if scl is None:
        raise KeyError(f"item {item['id']} has no scl/SCL asset")
    keys["scl"] = scl
    return keys


def _epsg_of(fields: Mapping[str, Any]) -> int | None:
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def asset_epsg(item: Mapping[str, Any], key: str) -> int:
    """The asset's EPSG: ``proj:epsg`` or ``proj:code`` on the asset, else on the item."""
    epsg = _epsg_of(item["assets"][key]) or _epsg_of(item["properties"])
    if epsg is None:
        raise KeyError(f"item {item['id']} asset {key!r}: no proj:epsg / proj:code")
    return epsg


def asset_grid(item: Mapping[str, Any], key: str) -> tuple[int, Affine, tuple[int, int]]:
    """(EPSG, affine transform, (height, width)) of an asset, from its projection fields."""
    asset = item["assets"][key]
    t = [float(v) for v in asset["proj:transform"][:6]]
    height, width = (int(v) for v in asset["proj:shape"])
    return asset_epsg(item, key), Affine(*t), (height, width)


def raster_bounds(item: Mapping[str, Any], key: str) -> Bbox:
    _, t, (height, width) = asset_grid(item, key)
    x0, y0 = t.c, t.f
    x1, y1 = t.c + t.a * width, t.f + t.e * height
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


# --------------------------------------------------------------------------- geometry


def footprint_xy(item: Mapping[str, Any], epsg: int, *, step_deg: float = 0.01) -> FloatArray:
    """The exterior ring of the item's geometry (a Polygon, or a MultiPolygon's largest
    part by vertex count), densified every ``step_deg`` and projected to ``epsg``:
    an (N, 2) array of metres."""
    geometry = item["geometry"]
    rings = ([geometry["coordinates"][0]] if geometry["type"] == "Polygon"
             else [part[0] for part in geometry["coordinates"]])
    ring = np.asarray(max(rings, key=len), dtype=np.float64)
    dense = [ring[:1]]
    for a, b in zip(ring[:-1], ring[1:], strict=True):
        n = max(1, math.ceil(float(np.abs(b - a).max()) / step_deg))
        f = np.arange(1, n + 1)[:, None] / n
        dense.append(a + f * (b - a))
    lonlat = np.concatenate(dense)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def _inside(ring: FloatArray, px: FloatArray, py: FloatArray) -> NDArray[np.bool_]:
    """Even-odd rule: which points lie inside the closed ring."""
    inside = np.zeros(px.shape, dtype=bool)
    x0, y0 = ring[:-1, 0], ring[:-1, 1]
    x1, y1 = ring[1:, 0], ring[1:, 1]
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < xint)
    return inside


def _distance_to_ring(ring: FloatArray, px: FloatArray, py: FloatArray) -> FloatArray:
    a, b = ring[:-1], ring[1:]
    d = b - a
    length2 = np.maximum((d ** 2).sum(axis=1), 1e-12)
    p = np.stack([px.ravel(), py.ravel()], axis=1)[:, None, :]
    t = np.clip(((p - a) * d).sum(axis=2) / length2, 0.0, 1.0)
    nearest = a + t[..., None] * d
    dist: FloatArray = np.sqrt(((p - nearest) ** 2).sum(axis=2)).min(axis=1)
    return dist.reshape(px.shape)


def interior_point(rings: Sequence[FloatArray], boxes: Sequence[Bbox] = (), *,
                   inset_m: float, n: int = 60,
                   candidates: tuple[FloatArray, FloatArray] | None = None) -> tuple[float, float]:
    """A point inside every ring and every box, as far from their edges as a search over
    ``candidates`` (x, y arrays; default a grid of ``n`` x ``n`` over the rings' extent)
    finds; it must be at least ``inset_m`` inside, else ValueError."""
    if candidates is None:
        xs = np.concatenate([r[:, 0] for r in rings])
        ys = np.concatenate([r[:, 1] for r in rings])
        gx, gy = np.meshgrid(np.linspace(xs.min(), xs.max(), n),
                             np.linspace(ys.min(), ys.max(), n))
    else:
        gx, gy = (np.asarray(c, dtype=np.float64) for c in candidates)
    clearance = np.full(gx.shape, np.inf)
    for ring in rings:
        inside = _inside(ring, gx, gy)
        clearance = np.where(inside, np.minimum(clearance, _distance_to_ring(ring, gx, gy)), -1.0)
    for minx, miny, maxx, maxy in boxes:
        edge = np.minimum.reduce([gx - minx, maxx - gx, gy - miny, maxy - gy])
        clearance = np.minimum(clearance, edge)
    best = int(np.argmax(clearance))
    if clearance.flat[best] < inset_m:
        raise ValueError(f"no point lies {inset_m:g} m inside every footprint "
                         f"(best {clearance.flat[best]:.0f} m)")
    return float(gx.flat[best]), float(gy.flat[best])


def tile_around(x: float, y: float, epsg: int, *, size_px: int = 48,
                resolution_m: float = 10.0, tile_id: str = "real", snap_m: float = 20.0) -> Tile:
    """A ``size_px`` square tile centred near (x, y), its corner on the ``snap_m`` grid
    (Sentinel-2 grids sit on multiples of 20 m, so 10 m and 20 m pixels line up)."""
    half = size_px * resolution_m / 2
    minx = math.floor((x - half) / snap_m) * snap_m
    maxy = math.floor((y + half) / snap_m) * snap_m
    side = size_px * resolution_m
    return Tile(tile_id=tile_id, epsg=epsg, resolution_m=resolution_m,
                bounds=(minx, maxy - side, minx + side, maxy))


def lonlat(x: FloatArray, y: FloatArray, epsg: int) -> tuple[FloatArray, FloatArray]:
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


# --------------------------------------------------------------------------- writing


def _window(t: Affine, shape: tuple[int, int], bounds: Bbox) -> Window | None:
    """The pixel window of the asset grid covering ``bounds`` (its own CRS), clipped."""
    minx, miny, maxx, maxy = bounds
    col0 = math.floor((minx - t.c) / t.a)
    col1 = math.ceil((maxx - t.c) / t.a)
    row0 = math.floor((maxy - t.f) / t.e)
    row1 = math.ceil((miny - t.f) / t.e)
    height, width = shape
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, width), min(row1, height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def encode(reflectance: FloatArray, *, scale: float, offset: float) -> NDArray[np.uint16]:
    """``round((reflectance - offset) / scale)`` as uint16, 0 (nodata) where NaN."""
    finite = np.isfinite(reflectance)
    dn = np.rint((np.where(finite, reflectance, 0.0) - offset) / scale)
    if np.any(finite & ((dn < 1) | (dn > 65535))):
        raise ValueError("a reflectance falls outside the uint16 range of the encoding")
    return np.where(finite, dn, 0).astype(np.uint16)


def write_asset(path: Path, item: Mapping[str, Any], key: str, bounds: Bbox, bounds_epsg: int,
                values: Callable[[FloatArray, FloatArray, int], NDArray[Any]]) -> Path:
    """Write asset ``key`` of ``item`` as a sparse tiled uint16 GeoTIFF at its own grid,
    storing only the window covering ``bounds`` (in ``bounds_epsg``); ``values(x, y, epsg)``
    gives its uint16 digital numbers at the window's pixel centres."""
    epsg, t, shape = asset_grid(item, key)
    height, width = shape
    profile: dict[str, Any] = dict(
        driver="GTiff", width=width, height=height, count=1, dtype="uint16",
        crs=f"EPSG:{epsg}", transform=t, nodata=0, tiled=True, blockxsize=BLOCK,
        blockysize=BLOCK, compress="deflate", sparse_ok=True,
    )
    window = _window(t, shape, transform_bbox(bounds, bounds_epsg, epsg))
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        if window is not None:
            cols = window.col_off + np.arange(window.width) + 0.5
            rows = window.row_off + np.arange(window.height) + 0.5
            x = t.c + t.a * cols[None, :] + np.zeros((len(rows), 1))
            y = t.f + t.e * rows[:, None] + np.zeros((1, len(cols)))
            dst.write(np.asarray(values(x, y, epsg), dtype=np.uint16), 1, window=window)
    return path


def write_item_assets(
    item: Mapping[str, Any],
    directory: Path,
    *,
    bounds: Bbox,
    bounds_epsg: int,
    reflectance: ReflectanceFn | Mapping[str, float],
    offset: float | Mapping[str, float],
    scale: float = 1e-4,
    scl: int = 4,
    valid: ValidFn | None = None,
    bands: Sequence[str] = DEFAULT_BANDS,
    margin_m: float = MARGIN_M,
) -> dict[str, Any]:
    """A copy of ``item`` whose band and SCL assets (its own keys) point at local sparse
    GeoTIFFs: ``reflectance`` (a function, or a constant per band) encoded with
    ``scale``/``offset`` (one, or one per band), SCL ``scl`` where ``valid`` (default:
    everywhere written), over ``bounds`` (in ``bounds_epsg``) grown by ``margin_m``.
    Everything else in the item is as published."""
    out = copy.deepcopy(dict(item))
    minx, miny, maxx, maxy = bounds
    grown = (minx - margin_m, miny - margin_m, maxx + margin_m, maxy + margin_m)
    folder = directory / str(item["id"])
    for band, key in asset_keys(item, bands).items():
        if band == "scl":
            def scl_values(x: FloatArray, y: FloatArray, epsg: int) -> NDArray[Any]:
                mask = np.ones(x.shape, bool) if valid is None else valid(x, y, epsg)
                return np.where(mask, scl, 0)
            fn = scl_values
        else:
            off = offset if isinstance(offset, float | int) else offset[band]

            def band_values(x: FloatArray, y: FloatArray, epsg: int, band: str = band,
                            off: float = float(off)) -> NDArray[Any]:
                if isinstance(reflectance, Mapping):
                    refl = np.full(x.shape, float(reflectance[band]))
                else:
                    refl = np.asarray(reflectance(band, x, y, epsg), dtype=np.float64)
                if valid is not None:
                    refl = np.where(valid(x, y, epsg), refl, np.nan)
                return encode(refl, scale=scale, offset=off)
            fn = band_values
        path = write_asset(folder / f"{key}.tif", out, key, grown, bounds_epsg, fn)
        out["assets"][key] = {**out["assets"][key], "href": str(path.resolve())}
    return out


# --------------------------------------------------------------------------- catalogs


def local_collection(collection_id: str, description: str) -> dict[str, Any]:
    """A minimal STAC collection for real items loaded into the local pgstac."""
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": collection_id,
        "description": description, "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                   "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}},
    }


def in_collection(item: Mapping[str, Any], collection_id: str) -> dict[str, Any]:
    """A copy of ``item`` in the local collection ``collection_id`` (nothing else changed:
    its links stay as published)."""
    out = copy.deepcopy(dict(item))
    out["collection"] = collection_id
    return out


__all__ = ("asset_epsg", "asset_grid", "asset_keys", "encode", "footprint_xy", "in_collection",
           "interior_point", "load_real_item", "local_collection", "lonlat", "raster_bounds",
           "real_item_ids", "real_item_path", "stac_items_dir", "tile_around",
           "write_asset", "write_item_assets")
