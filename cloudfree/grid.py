"""Areas of interest, date windows, and the tiling grid that cuts a region into tiles."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyproj import Transformer

from cloudfree.errors import InvalidAOIError, InvalidDateWindowError, InvalidParameterError

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class AOI:
    """An area of interest in EPSG:4326, as a bbox and optionally a GeoJSON geometry."""

    bbox: Bbox
    geometry: dict[str, Any] | None = None


@dataclass(frozen=True)
class DateWindow:
    """A closed window of calendar days."""

    start: dt.date
    end: dt.date

    @property
    def stac(self) -> str:
        """The window as a STAC API datetime interval, whole days inclusive."""
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    @property
    def compact(self) -> str:
        return f"{self.start:%Y%m%d}-{self.end:%Y%m%d}"


@dataclass(frozen=True)
class Tile:
    """One output tile: a pixel-aligned box in a projected CRS."""

    tile_id: str
    epsg: int
    bounds: Bbox  # minx, miny, maxx, maxy in metres
    resolution_m: float

    @property
    def shape(self) -> tuple[int, int]:
        minx, miny, maxx, maxy = self.bounds
        return (
            round((maxy - miny) / self.resolution_m),
            round((maxx - minx) / self.resolution_m),
        )

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine in rasterio order (a, b, c, d, e, f)."""
        minx, _, _, maxy = self.bounds
        return (self.resolution_m, 0.0, minx, 0.0, -self.resolution_m, maxy)

    def bbox_latlon(self) -> Bbox:
        return transform_bbox(self.bounds, self.epsg, 4326)

    def grown(self, halo_px: int) -> Tile:
        """The same grid, its bounds grown by ``halo_px`` pixels on every side (same id):
        what a tile reads and computes on, before it crops back to its own bounds."""
        if halo_px < 0:
            raise InvalidParameterError("halo_px", halo_px, "give a halo of 0 or more pixels")
        pad = halo_px * self.resolution_m
        minx, miny, maxx, maxy = self.bounds
        return Tile(tile_id=self.tile_id, epsg=self.epsg, resolution_m=self.resolution_m,
                    bounds=(minx - pad, miny - pad, maxx + pad, maxy + pad))


def _check_bbox(bbox: Bbox, original: object) -> Bbox:
    minx, miny, maxx, maxy = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise InvalidAOIError(original, "coordinates must be finite numbers")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InvalidAOIError(original, "longitudes must lie in [-180, 180]")
    if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidAOIError(original, "latitudes must lie in [-90, 90]")
    if minx >= maxx or miny >= maxy:
        raise InvalidAOIError(original, "min must be below max on both axes (minx,miny,maxx,maxy)")
    return bbox


def parse_bbox(text: str | Bbox | list[float]) -> AOI:
    """Parse ``"minx,miny,maxx,maxy"`` (degrees) or a 4-sequence into an AOI."""
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InvalidAOIError(text, "every coordinate must be a number") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 4:
        raise InvalidAOIError(text, f"a bbox has 4 numbers, got {len(values)}")
    bbox: Bbox = (values[0], values[1], values[2], values[3])
    return AOI(bbox=_check_bbox(bbox, text))


def _geometry_coords(geometry: dict[str, Any]) -> Iterator[tuple[float, float]]:
    gtype = geometry.get("type")
    # GeoJSON coordinates nest to a depth that depends on the type; malformed input fails
    # below with TypeError/KeyError/IndexError, which the caller reports.
    coords: Any = geometry.get("coordinates")
    rings: Any
    if gtype == "Polygon":
        rings = coords
    elif gtype == "MultiPolygon":
        rings = [ring for polygon in coords for ring in polygon]
    else:
        raise InvalidAOIError(gtype, "only Polygon and MultiPolygon geometries are supported")
    for ring in rings:
        for point in ring:
            yield float(point[0]), float(point[1])


def parse_geojson(source: str | Path | dict[str, Any]) -> AOI:
    """Parse a GeoJSON geometry, Feature or FeatureCollection (a dict, a JSON string or a
    file path) into an AOI whose bbox covers every polygon."""
    original = source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        if not path.exists():
            raise InvalidAOIError(str(source), "no such GeoJSON file")
        source = path.read_text()
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as exc:
            raise InvalidAOIError(original, f"not valid JSON ({exc})") from None
    assert isinstance(source, dict)
    if source.get("type") == "FeatureCollection":
        geoms = [f["geometry"] for f in source.get("features", [])]
        if not geoms:
            raise InvalidAOIError(original, "the FeatureCollection has no features")
        polys: list[Any] = []
        for g in geoms:
            polys.extend([g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"])
        geometry = {"type": "MultiPolygon", "coordinates": polys}
    elif source.get("type") == "Feature":
        geometry = source["geometry"]
    else:
        geometry = source
    try:
        points = list(_geometry_coords(geometry))
    except (TypeError, KeyError, IndexError, ValueError):
        raise InvalidAOIError(original, "malformed coordinates") from None
    if len(points) < 4:
        raise InvalidAOIError(original, "a polygon needs at least 4 positions")
    xs, ys = zip(*points, strict=True)
    bbox = _check_bbox((min(xs), min(ys), max(xs), max(ys)), original)
    return AOI(bbox=bbox, geometry=geometry)


def parse_date_window(text: str) -> DateWindow:
    """Parse ``YYYY-MM-DD/YYYY-MM-DD`` (also ``..``-free RFC 3339 datetimes) into days."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise InvalidDateWindowError(text, "expected two dates separated by '/'")
    start_s, end_s = (s.strip() for s in text.split("/"))
    try:
        start = dt.date.fromisoformat(start_s[:10])
        end = dt.date.fromisoformat(end_s[:10])
    except ValueError as exc:
        raise InvalidDateWindowError(text, f"not an ISO date ({exc})") from None
    if end < start:
        raise InvalidDateWindowError(text, "the end is before the start")
    return DateWindow(start=start, end=end)


def utm_epsg(lon: float, lat: float) -> int:
    """The WGS 84 / UTM zone EPSG code holding a point."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def transform_bbox(bbox: Bbox, src_epsg: int, dst_epsg: int, *, densify: int = 21) -> Bbox:
    """Transform a bbox, densifying its edges so curved edges stay covered."""
    if src_epsg == dst_epsg:
        return bbox
    transformer = Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)
    return transformer.transform_bounds(*bbox, densify_pts=densify)


def snap_bounds(bounds: Bbox, step_m: float) -> Bbox:
    """Grow bounds outward to multiples of ``step_m``."""
    minx, miny, maxx, maxy = bounds
    return (
        math.floor(minx / step_m) * step_m,
        math.floor(miny / step_m) * step_m,
        math.ceil(maxx / step_m) * step_m,
        math.ceil(maxy / step_m) * step_m,
    )


def aoi_tile(aoi: AOI, *, resolution_m: float, epsg: int | None = None) -> Tile:
    """One pixel-aligned tile covering the whole AOI (disaster-response mosaics)."""
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    minx, miny, maxx, maxy = aoi.bbox
    epsg = epsg or utm_epsg((minx + maxx) / 2, (miny + maxy) / 2)
    bounds = snap_bounds(transform_bbox(aoi.bbox, 4326, epsg), resolution_m)
    key = ",".join(f"{v:.0f}" for v in bounds)
    return Tile(tile_id=f"aoi-{epsg}-{_short_hash(key)}", epsg=epsg, bounds=bounds,
                resolution_m=resolution_m)


def grid_tiles(
    aoi: AOI, *, resolution_m: float, tile_size_px: int, epsg: int | None = None
) -> list[Tile]:
    """Cut an AOI into grid tiles of ``tile_size_px`` pixels on a fixed projected grid.

    The grid origin is the CRS origin, so the same tile always gets the same id and
    bounds, whatever region asked for it. Tiles that only touch the AOI's bbox on an
    edge are not returned.
    """
    if tile_size_px <= 0:
        raise InvalidParameterError("tile_size_px", tile_size_px, "give a positive tile size")
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    minx, miny, maxx, maxy = aoi.bbox
    epsg = epsg or utm_epsg((minx + maxx) / 2, (miny + maxy) / 2)
    step = tile_size_px * resolution_m
    pminx, pminy, pmaxx, pmaxy = transform_bbox(aoi.bbox, 4326, epsg)
    ix0, iy0 = math.floor(pminx / step), math.floor(pminy / step)
    ix1, iy1 = math.ceil(pmaxx / step), math.ceil(pmaxy / step)
    tiles = []
    for iy in range(iy1 - 1, iy0 - 1, -1):
        for ix in range(ix0, ix1):
            bounds = (ix * step, iy * step, (ix + 1) * step, (iy + 1) * step)
            tile_id = f"{epsg}-{resolution_m:g}m-{tile_size_px}px-x{ix}-y{iy}"
            tiles.append(Tile(tile_id=tile_id, epsg=epsg, bounds=bounds, resolution_m=resolution_m))
    return tiles


def bbox_intersects(a: Bbox, b: Bbox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:10]
