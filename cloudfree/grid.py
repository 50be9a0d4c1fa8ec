"""Areas of interest, date windows, and the tiling grid that cuts a region into tiles."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from cloudfree.errors import (
    BudgetExceededError,
    InvalidAOIError,
    InvalidDateWindowError,
    InvalidParameterError,
)

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


def _feature_geometry(feature: Any, original: object, where: str) -> dict[str, Any]:
    """A Feature's geometry, refused when it is missing or null (a GeoJSON feature may have
    ``"geometry": null``, which covers nothing)."""
    geometry = feature.get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geometry, dict):
        raise InvalidAOIError(original, f"{where} has no geometry (\"geometry\": "
                              f"{json.dumps(geometry)}); give a Feature whose geometry is a "
                              "Polygon or MultiPolygon")
    return geometry


def _polygons_of(geometry: dict[str, Any], original: object) -> list[Any]:
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Polygon":
        return [coords]
    if gtype == "MultiPolygon" and isinstance(coords, list):
        return list(coords)
    raise InvalidAOIError(original, f"a {gtype!s} geometry; only Polygon and MultiPolygon "
                          "geometries are supported")


def _check_valid(geometry: dict[str, Any], original: object) -> None:
    """Refuse a self-intersecting (bowtie) or otherwise invalid polygon: its area, and so the
    tiles and pixels it selects, is undefined."""
    # shapely: a dependency to declare in pyproject (issue 13); it ships no type information
    import shapely
    import shapely.geometry

    try:
        shape = shapely.geometry.shape(geometry)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError,
            shapely.errors.ShapelyError) as exc:
        raise InvalidAOIError(original, f"malformed coordinates ({exc})") from None
    if not shapely.is_valid(shape):
        why = shapely.is_valid_reason(shape)
        raise InvalidAOIError(original, f"the polygon is not valid ({why}): a ring crosses "
                              "itself or another ring, as a bowtie does; give rings that do not "
                              "self-intersect (e.g. repair it with shapely.make_valid or QGIS "
                              "'Fix geometries')")


def parse_geojson(source: str | Path | dict[str, Any]) -> AOI:
    """Parse a GeoJSON geometry, Feature or FeatureCollection (a dict, a JSON string or a
    file path) into an AOI whose bbox covers every polygon.

    Refused (:class:`~cloudfree.errors.InvalidAOIError`, naming the input): a missing file,
    invalid JSON, a feature with a null geometry, a type other than Polygon/MultiPolygon,
    malformed coordinates, and an invalid polygon (self-intersecting, e.g. a bowtie)."""
    original = source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        if not path.exists():
            raise InvalidAOIError(str(source), "no such GeoJSON file")
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidAOIError(str(source), f"cannot read the file ({exc})") from None
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as exc:
            raise InvalidAOIError(original, f"not valid JSON ({exc})") from None
    if not isinstance(source, dict):
        raise InvalidAOIError(original, "GeoJSON must be an object (a geometry, Feature or "
                              "FeatureCollection)")
    geometry: dict[str, Any]
    if source.get("type") == "FeatureCollection":
        features = source.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidAOIError(original, "the FeatureCollection has no features")
        polys: list[Any] = []
        for n, feature in enumerate(features):
            polys.extend(_polygons_of(_feature_geometry(feature, original, f"feature {n}"),
                                      original))
        geometry = {"type": "MultiPolygon", "coordinates": polys}
    elif source.get("type") == "Feature":
        geometry = _feature_geometry(source, original, "the Feature")
    else:
        geometry = source
    _polygons_of(geometry, original)  # the type is one we take
    try:
        points = list(_geometry_coords(geometry))
    except (TypeError, KeyError, IndexError, ValueError):
        raise InvalidAOIError(original, "malformed coordinates") from None
    if len(points) < 4:
        raise InvalidAOIError(original, "a polygon needs at least 4 positions")
    xs, ys = zip(*points, strict=True)
    bbox = _check_bbox((min(xs), min(ys), max(xs), max(ys)), original)
    _check_valid(geometry, original)
    return AOI(bbox=bbox, geometry=geometry)


def parse_aoi(bbox: str | Sequence[float] | None = None,
              geojson: str | Path | dict[str, Any] | None = None) -> AOI:
    """The area of interest of a run: ``geojson`` when given, else ``bbox``; neither is an
    error that says what to pass."""
    if geojson is not None:
        return parse_geojson(geojson)
    if bbox is None or (isinstance(bbox, str) and not bbox.strip()):
        raise InvalidAOIError(None, "no area of interest given; pass --bbox or --geojson")
    return parse_bbox(bbox if isinstance(bbox, str) else list(bbox))


def _instant(text: str, window: str) -> dt.date:
    """The calendar day of ``YYYY-MM-DD`` or a full RFC 3339 datetime, every part checked
    (``2024-01-01T99:99`` is refused, not read as 2024-01-01)."""
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError as exc:
            raise InvalidDateWindowError(window, f"{text!r} is not an ISO date ({exc})") from None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidDateWindowError(window, f"{text!r} is not an ISO date or RFC 3339 "
                                     f"datetime ({exc})") from None
    return stamp.date()


def parse_date_window(text: str) -> DateWindow:
    """Parse ``YYYY-MM-DD/YYYY-MM-DD`` (also ``..``-free RFC 3339 datetimes, every part
    checked) into days."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise InvalidDateWindowError(text, "expected two dates separated by '/'")
    start_s, end_s = (s.strip() for s in text.split("/"))
    start, end = _instant(start_s, text), _instant(end_s, text)
    if end < start:
        raise InvalidDateWindowError(text, "the end is before the start")
    return DateWindow(start=start, end=end)


def check_target_date(target_date: str | None, window: DateWindow) -> None:
    """Refuse a target date that is not an ISO date or lies outside the window: a targeted
    method shows the target date from the window's scenes, so it must lie within them."""
    if target_date is None:
        return
    try:
        day = dt.date.fromisoformat(target_date)
    except (TypeError, ValueError):
        raise InvalidParameterError("target_date", target_date,
                                    "give an ISO date, YYYY-MM-DD") from None
    if not window.start <= day <= window.end:
        raise InvalidParameterError(
            "target_date", target_date,
            f"it lies outside the window {window.start}/{window.end}; give a --target-date "
            "inside the --datetime window, or widen the window to include it")


def check_epsg(epsg: int | None) -> int | None:
    """Refuse an output CRS the grid cannot use: an EPSG code pyproj does not know, or a CRS
    that is not projected in metres (the grid steps in metres)."""
    if epsg is None:
        return None
    fix = ("give the EPSG code of a projected CRS in metres, e.g. 32633 (WGS 84 / UTM 33N) "
           "or 3035, or leave --epsg out for the UTM zone of the area")
    try:
        crs = CRS.from_epsg(int(epsg))
    except (CRSError, TypeError, ValueError):
        raise InvalidParameterError("epsg", epsg, f"no such EPSG code; {fix}") from None
    unit = crs.axis_info[0].unit_name if crs.axis_info else None
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise InvalidParameterError("epsg", epsg, f"{crs.name} is not projected in metres "
                                    f"(units: {unit}); {fix}")
    return int(epsg)


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


def _projected(aoi: AOI, epsg: int | None) -> tuple[int, Bbox]:
    """The output CRS (checked, default the UTM zone of the AOI's centre) and the AOI's
    bounds in it, refused when the AOI does not project there (far outside the CRS's area)."""
    minx, miny, maxx, maxy = aoi.bbox
    crs = check_epsg(epsg) or utm_epsg((minx + maxx) / 2, (miny + maxy) / 2)
    try:
        bounds = transform_bbox(aoi.bbox, 4326, crs)
    except Exception as exc:  # pyproj raises ProjError and others, depending on the CRS
        raise InvalidParameterError("epsg", crs, f"the area {list(aoi.bbox)} does not project "
                                    f"to it ({exc}); give a CRS that covers the area") from None
    if not all(math.isfinite(v) for v in bounds) or bounds[0] >= bounds[2] \
            or bounds[1] >= bounds[3]:
        raise InvalidParameterError("epsg", crs, f"the area {list(aoi.bbox)} does not project "
                                    "to finite bounds in it; give a CRS that covers the area, "
                                    "or leave --epsg out for its UTM zone")
    return crs, bounds


def aoi_shape(aoi: AOI, *, resolution_m: float, epsg: int | None = None) -> tuple[int, int]:
    """Rows and columns of :func:`aoi_tile`'s tile, without making it (a budget check)."""
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    _, bounds = _projected(aoi, epsg)
    minx, miny, maxx, maxy = snap_bounds(bounds, resolution_m)
    return round((maxy - miny) / resolution_m), round((maxx - minx) / resolution_m)


def aoi_tile(aoi: AOI, *, resolution_m: float, epsg: int | None = None) -> Tile:
    """One pixel-aligned tile covering the whole AOI (disaster-response mosaics)."""
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    epsg, projected = _projected(aoi, epsg)
    bounds = snap_bounds(projected, resolution_m)
    key = ",".join(f"{v:.0f}" for v in bounds)
    return Tile(tile_id=f"aoi-{epsg}-{_short_hash(key)}", epsg=epsg, bounds=bounds,
                resolution_m=resolution_m)


def _grid_range(aoi: AOI, resolution_m: float, tile_size_px: int, epsg: int | None
                ) -> tuple[int, float, range, range]:
    if tile_size_px <= 0:
        raise InvalidParameterError("tile_size_px", tile_size_px, "give a positive tile size")
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    crs, (pminx, pminy, pmaxx, pmaxy) = _projected(aoi, epsg)
    step = tile_size_px * resolution_m
    ix0, iy0 = math.floor(pminx / step), math.floor(pminy / step)
    ix1, iy1 = math.ceil(pmaxx / step), math.ceil(pmaxy / step)
    return crs, step, range(ix0, ix1), range(iy1 - 1, iy0 - 1, -1)


def grid_size(aoi: AOI, *, resolution_m: float, tile_size_px: int, epsg: int | None = None
              ) -> tuple[int, int]:
    """Columns and rows of :func:`grid_tiles`' grid over the AOI's projected bounds, from
    the bounds alone: what a budget checks before any tile is made."""
    _, _, xs, ys = _grid_range(aoi, resolution_m, tile_size_px, epsg)
    return len(xs), len(ys)


def grid_tiles(
    aoi: AOI, *, resolution_m: float, tile_size_px: int, epsg: int | None = None,
    max_tiles: int | None = None,
) -> list[Tile]:
    """Cut an AOI into grid tiles of ``tile_size_px`` pixels on a fixed projected grid.

    The grid origin is the CRS origin, so the same tile always gets the same id and
    bounds, whatever region asked for it. Tiles that only touch the AOI's bbox on an
    edge are not returned.

    ``max_tiles``: refuse (:class:`~cloudfree.errors.BudgetExceededError`) a grid of more
    tiles, counted from the projected bounds before a single tile is made, so a continent
    at 512 px is refused at once instead of enumerating 100,000 tiles.
    """
    crs, step, xs, ys = _grid_range(aoi, resolution_m, tile_size_px, epsg)
    if max_tiles is not None and len(xs) * len(ys) > max_tiles:
        raise grid_budget_error(aoi, len(xs), len(ys), max_tiles, tile_size_px=tile_size_px,
                                resolution_m=resolution_m)
    tiles = []
    for iy in ys:
        for ix in xs:
            bounds = (ix * step, iy * step, (ix + 1) * step, (iy + 1) * step)
            tile_id = f"{crs}-{resolution_m:g}m-{tile_size_px}px-x{ix}-y{iy}"
            tiles.append(Tile(tile_id=tile_id, epsg=crs, bounds=bounds, resolution_m=resolution_m))
    return tiles


def grid_budget_error(aoi: AOI, cols: int, rows: int, max_tiles: int, *, tile_size_px: int,
                      resolution_m: float) -> BudgetExceededError:
    """The ``max_tiles`` refusal of a grid, saying how to split the run."""
    n = cols * rows
    parts = math.ceil(n / max_tiles)
    side = math.ceil(math.sqrt(parts))
    larger = tile_size_px * side
    detail = (f"the area {list(aoi.bbox)} in {tile_size_px} px tiles at {resolution_m:g} m is "
              f"a grid of {cols} x {rows} = {n} tiles; split the run into at least {parts} "
              f"smaller areas (e.g. a {side} x {side} split of the bbox), or use a larger "
              f"--tile-size (at least {larger} px makes about {math.ceil(n / side**2)} tiles)")
    return BudgetExceededError("max_tiles", n, max_tiles, detail)


def bbox_intersects(a: Bbox, b: Bbox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:10]
