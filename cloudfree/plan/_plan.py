"""The plan: its tiles, scenes and estimates (:func:`build_plan`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudfree.catalogs import DECODING_PROPERTY, PROFILES, BandDecoding, decode_item
from cloudfree.catalogs.decoding import caveats
from cloudfree.cluster.sizing import BASE_MEMORY_GIB, CUBE_COPIES
from cloudfree.errors import InvalidParameterError
from cloudfree.grid import (
    AOI,
    Bbox,
    DateWindow,
    Tile,
    aoi_shape,
    aoi_tile,
    bbox_intersects,
    check_epsg,
    check_target_date,
    grid_tiles,
    utm_epsg,
)
from cloudfree.methods import get_method
from cloudfree.plan._budgets import Budgets, pixels_problem
from cloudfree.plan._items import (
    bbox_or_none,
    cloud_cover,
    footprint_groups,
    in_window,
    item_bbox,
    union,
)
from cloudfree.tile import MosaicParams, halo_px, items_for_tile, resolve_mask

__all__ = ["DEFAULT_TILE_SIZE_PX", "THROUGHPUT_PIXEL_DATES_PER_S", "Plan", "PlanGroup",
           "PlannedScene", "PlannedTile", "area_tiles", "build_plan"]

#: Grid tile size when items are planned without an area of interest.
DEFAULT_TILE_SIZE_PX = 2048

#: Compute throughput of each mosaic method, in pixel-dates per second with
#: :data:`THROUGHPUT_BANDS` bands, measured by ``python bench/plan_throughput.py --methods
#: median,bap,geomedian,interpolate,interpolate_corrected`` (and ``--methods generator
#: --repeat 1``): a 256 px, 12-date synthetic cube (cloudfree.testing.make_cube, ~30 % masked)
#: through the methods registry in one dask chunk, the best of 2-5 runs after a warm-up;
#: the figure is the middle of three such measurements (they spread by up to 20 %, the
#: machine being shared), the generator's a single one. These are THIS CPU's figures, the
#: development machine's: 2 cores of an Intel Xeon, no GPU, torch 2.13 on the CPU. Other
#: machines differ; the estimate says where it comes from. The learned ``generator`` ran on
#: the CPU: its estimate is a CPU estimate (a GPU runs it far faster).
THROUGHPUT_PIXEL_DATES_PER_S: dict[str, float] = {
    "median": 3.7e6,
    "bap": 3.2e6,
    "geomedian": 6.0e5,
    "interpolate": 5.6e6,
    "interpolate_corrected": 5.8e5,
    "generator": 1.1e4,
}
#: Bands of the cube the throughput was measured on (the estimate scales by bands / this).
THROUGHPUT_BANDS = 6
THROUGHPUT_MACHINE = "2-core Intel Xeon, CPU only (bench/plan_throughput.py)"

MEMORY_COUNTS = (
    f"the uint16 cube of the grown tile (rows x cols x dates x (bands + SCL) x 2 bytes), "
    f"times {CUBE_COPIES} working copies (cloudfree.cluster.sizing.CUBE_COPIES: the cube, its "
    f"clear mask, the float stack a method reduces), plus {BASE_MEMORY_GIB} GiB "
    "(BASE_MEMORY_GIB: Python, Prefect, GDAL's cache, Dask); dates are the distinct UTC days of "
    "the tile's scenes (the cube merges same-day scenes); not counted: a learned method's model"
)
TIME_COUNTS = (
    "compute only (the method over the grown tile), from the measured throughput of "
    f"{THROUGHPUT_MACHINE}, scaled by bands / {THROUGHPUT_BANDS}; not counted: reading the "
    "scenes over the network, masking, writing COGs; tiles summed as if run one after another"
)


@dataclass(frozen=True)
class PlannedScene:
    """One source scene: where it comes from and how each band asset decodes."""

    id: str
    collection: str | None
    datetime: str
    profile: str
    profile_why: str
    baseline: str | None
    epsg: int | None
    bands: tuple[BandDecoding, ...]
    caveats: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "collection": self.collection, "datetime": self.datetime,
            "profile": self.profile, "profile_why": self.profile_why,
            "baseline": self.baseline, "epsg": self.epsg,
            "bands": {b.band: {"asset_key": b.asset_key, "scale": b.scale, "offset": b.offset,
                               "source": b.source} for b in self.bands},
            "caveats": list(self.caveats),
        }


@dataclass(frozen=True)
class PlannedTile:
    """One tile: its grid box, the grown box it reads, its scenes and its estimates."""

    tile: Tile
    group: int
    halo_px: int
    grown_shape: tuple[int, int]
    scenes: tuple[str, ...]
    n_dates: int
    n_bands: int
    memory_gib: float
    seconds: float | None
    #: The cloud detector the tile runs (``auto`` resolved for its sources).
    mask: str = "scl"

    @property
    def pixels(self) -> int:
        """Grown tile pixels x dates x bands: the reflectance values the method reads."""
        return self.grown_shape[0] * self.grown_shape[1] * self.n_dates * self.n_bands

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.tile.tile_id, "group": self.group, "epsg": self.tile.epsg,
            "bounds": list(self.tile.bounds), "resolution_m": self.tile.resolution_m,
            "shape": list(self.tile.shape), "halo_px": self.halo_px, "mask": self.mask,
            "grown_shape": list(self.grown_shape), "scenes": list(self.scenes),
            "n_dates": self.n_dates, "pixels": self.pixels,
            "memory_gib": round(self.memory_gib, 3),
            "seconds": None if self.seconds is None else round(self.seconds, 2),
        }


@dataclass(frozen=True)
class PlanGroup:
    """Items of overlapping footprint (or all of them, with an area of interest)."""

    index: int
    bbox: Bbox
    epsg: int
    scenes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "bbox": [round(v, 6) for v in self.bbox],
                "epsg": self.epsg, "scenes": list(self.scenes)}


@dataclass(frozen=True)
class Plan:
    """Everything a mosaic run would do, before it reads a pixel."""

    origin: str  # "search" or "items"
    window: str | None
    params: MosaicParams
    tile_size_px: int | None  # None: one tile covering the area of interest
    epsg: int | None  # as requested (None: UTM of each group's centre)
    source: str | None
    assume: str | None
    api_url: str | None
    aoi: AOI | None
    groups: tuple[PlanGroup, ...]
    tiles: tuple[PlannedTile, ...]
    scenes: tuple[PlannedScene, ...]
    notes: tuple[str, ...] = ()

    @property
    def halo_px(self) -> int:
        """The largest tile halo (the parameters' when no tile is planned)."""
        return max((t.halo_px for t in self.tiles), default=halo_px(self.params))

    @property
    def masks(self) -> dict[str, int]:
        """How many tiles run each cloud detector."""
        out: dict[str, int] = {}
        for t in self.tiles:
            out[t.mask] = out.get(t.mask, 0) + 1
        return out

    @property
    def throughput(self) -> float | None:
        return THROUGHPUT_PIXEL_DATES_PER_S.get(self.params.method)

    @property
    def max_scenes_per_tile(self) -> int:
        return max((len(t.scenes) for t in self.tiles), default=0)

    @property
    def max_tile_memory_gib(self) -> float:
        return max((t.memory_gib for t in self.tiles), default=0.0)

    @property
    def total_seconds(self) -> float | None:
        if self.throughput is None:
            return None
        return sum(t.seconds or 0.0 for t in self.tiles)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (``cloudfree plan --json``)."""
        learned = get_method(self.params.method).learned
        seconds = self.total_seconds
        return {
            "origin": self.origin, "api_url": self.api_url, "window": self.window,
            "aoi": None if self.aoi is None else list(self.aoi.bbox),
            "method": self.params.method, "bands": list(self.params.bands),
            "resolution_m": self.params.resolution_m, "tile_size_px": self.tile_size_px,
            "epsg": self.epsg, "source": self.source, "assume_decoding": self.assume,
            "halo_px": self.halo_px, "mask": self.params.mask, "masks": self.masks,
            "totals": {
                "groups": len(self.groups), "tiles": len(self.tiles),
                "scenes": len(self.scenes), "pixels": sum(t.pixels for t in self.tiles),
                "max_scenes_per_tile": self.max_scenes_per_tile,
                "max_tile_memory_gib": round(self.max_tile_memory_gib, 3),
                "seconds": None if seconds is None else round(seconds, 1),
            },
            "estimates": {
                "memory_counts": MEMORY_COUNTS, "time_counts": TIME_COUNTS,
                "throughput_pixel_dates_per_s": self.throughput,
                "throughput_bands": THROUGHPUT_BANDS, "measured_on": THROUGHPUT_MACHINE,
                "device": "cpu", "learned_method_on_cpu": learned,
            },
            "notes": list(self.notes),
            "groups": [g.as_dict() for g in self.groups],
            "tiles": [t.as_dict() for t in self.tiles],
            "scenes": [s.as_dict() for s in self.scenes],
        }

    def summary(self) -> str:
        """One paragraph: what the run covers and costs (the flows log it)."""
        p = self.params
        size = (f"grid tiles of {self.tile_size_px} px" if self.tile_size_px
                else "tile over the area of interest")
        largest = max(self.tiles, key=lambda t: t.memory_gib, default=None)
        text = (f"Plan: {len(self.scenes)} scenes ({self.origin}) in {len(self.groups)} "
                f"group(s), {len(self.tiles)} {size} at {p.resolution_m:g} m; method "
                f"{p.method}, bands {','.join(p.bands)}; cloud mask {p.mask}"
                + (f" ({', '.join(f'{n} on {k} tiles' for n, k in self.masks.items())})"
                   if p.mask == "auto" and self.tiles else "")
                + f"; each tile read grown by a {self.halo_px} px halo.")
        if largest is not None:
            text += (f" Largest tile {largest.tile.tile_id}: {largest.grown_shape[0]}x"
                     f"{largest.grown_shape[1]} px read, {len(largest.scenes)} scenes, "
                     f"{largest.n_dates} dates, est. {largest.memory_gib:.1f} GiB;"
                     f" at most {self.max_scenes_per_tile} scenes per tile.")
        seconds = self.total_seconds
        if seconds is None:
            text += f" No throughput measured for {p.method}: no time estimate."
        else:
            cpu = " (a learned method, on the CPU)" if get_method(p.method).learned else ""
            text += (f" Est. compute {_duration(seconds)}{cpu} at this CPU's measured "
                     f"{self.throughput:,.0f} pixel-dates/s; network reads not counted.")
        return text

    def render(self, *, max_tiles: int = 40) -> str:
        """The plan as text: the summary, the tiles, the scenes and their decoding."""
        lines = [self.summary(), "", f"Memory counts {MEMORY_COUNTS}.", ""]
        lines.append(f"{'tile':<40} {'epsg':>6} {'shape':>11} {'read':>11} {'scenes':>6} "
                     f"{'dates':>5} {'mask':>13} {'GiB':>6} {'seconds':>8}")
        for t in self.tiles[:max_tiles]:
            shape, grown = t.tile.shape, t.grown_shape
            secs = "-" if t.seconds is None else f"{t.seconds:.1f}"
            lines.append(f"{t.tile.tile_id:<40} {t.tile.epsg:>6} {shape[0]:>5}x{shape[1]:<5} "
                         f"{grown[0]:>5}x{grown[1]:<5} {len(t.scenes):>6} {t.n_dates:>5} "
                         f"{t.mask:>13} {t.memory_gib:>6.2f} {secs:>8}")
        if len(self.tiles) > max_tiles:
            lines.append(f"... and {len(self.tiles) - max_tiles} more tiles (--json lists all)")
        lines += ["", "Scenes (band: asset key, scale, offset, why):"]
        for s in self.scenes:
            lines.append(f"{s.id}  {s.collection}  {s.datetime[:10]}  profile {s.profile} "
                         f"({s.profile_why}); baseline {s.baseline or '-'}")
            for b in s.bands:
                lines.append(f"    {b.band:<9} {b.asset_key:<12} {b.scale:<8g} {b.offset:<6g} "
                             f"{b.source}")
            lines += [f"    caveat: {c}" for c in s.caveats]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def area_tiles(aoi: AOI, *, resolution_m: float, tile_size_px: int | None,
               epsg: int | None = None, budgets: Budgets | None = None
               ) -> tuple[list[Tile], int | None]:
    """The tiles of a run over ``aoi``, and the grid tile size they have (None: one tile over
    the AOI), budgeted before any tile is made and before any search.

    The rule: with ``tile_size_px`` (a regional run), grid tiles of that size, refused when
    one tile has more than ``max_pixels_per_tile`` pixels or the grid, counted from the
    AOI's projected bounds, more than ``max_tiles`` tiles. Without (an AOI run), one tile
    over the AOI while its pixels are at most ``max_pixels_per_tile``; a larger AOI is cut
    into grid tiles of :data:`DEFAULT_TILE_SIZE_PX` px, under the same ``max_tiles``.

    Raises:
        BudgetExceededError: the budget, the figure, how to split the run and the env var
            that raises it.
        InvalidParameterError: a bad ``epsg``, ``resolution_m`` or ``tile_size_px``.
    """
    budgets = budgets or Budgets()
    check_epsg(epsg)
    if tile_size_px is None:
        shape = aoi_shape(aoi, resolution_m=resolution_m, epsg=epsg)
        if shape[0] * shape[1] <= budgets.max_pixels_per_tile:
            return [aoi_tile(aoi, resolution_m=resolution_m, epsg=epsg)], None
        tile_size_px = DEFAULT_TILE_SIZE_PX
    else:
        if tile_size_px <= 0:
            raise InvalidParameterError("tile_size_px", tile_size_px,
                                        "give a positive tile size")
        problem = pixels_problem((tile_size_px, tile_size_px), budgets,
                                 what=f"a {tile_size_px} px grid tile")
        if problem:
            raise problem
    return grid_tiles(aoi, resolution_m=resolution_m, tile_size_px=tile_size_px, epsg=epsg,
                      max_tiles=budgets.max_tiles), tile_size_px


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _scene(item: Mapping[str, Any], bands: Sequence[str], *, source: str | None,
           api_url: str | None, assume: str | None) -> PlannedScene:
    props = item.get("properties") or {}
    record = props.get(DECODING_PROPERTY)
    if isinstance(record, Mapping):  # prepared by catalogs.prepare_items: as recorded
        decoded = tuple(BandDecoding(str(b["band"]), str(b["asset_key"]), float(b["scale"]),
                                     float(b["offset"]), str(b["source"]))
                        for b in record["bands"])
        return PlannedScene(str(item["id"]), item.get("collection"), str(record["datetime"]),
                            str(record["profile"]), str(record["profile_why"]),
                            record.get("baseline"), record.get("epsg"), decoded)
    scene = decode_item(item, bands, source=source, api_url=api_url, assume=assume)
    notes = list(caveats(item, scene))
    if scene.profile == "generic":
        notes.append(f"catalog profile guessed ({scene.profile_why}); pass --source "
                     f"({', '.join(PROFILES)}) to name it")
    return PlannedScene(scene.item_id, item.get("collection"), scene.datetime, scene.profile,
                        scene.profile_why, scene.baseline, scene.epsg, scene.bands,
                        tuple(notes))


def _cloud_ok(cover: float | None, max_cloud_pct: float | None) -> bool:
    return max_cloud_pct is None or cover is None or cover <= max_cloud_pct


def _estimate(tile: Tile, scenes: list[dict[str, Any]], group: int,
              params: MosaicParams) -> PlannedTile:
    halo = halo_px(params)  # params.mask resolved (build_plan)
    rows, cols = tile.grown(halo).shape
    days = {str((s.get("properties") or {}).get("datetime") or "")[:10] for s in scenes}
    n_bands = len(params.bands)
    cube = rows * cols * len(days) * (n_bands + 1) * 2
    memory = BASE_MEMORY_GIB + CUBE_COPIES * cube / 2**30
    rate = THROUGHPUT_PIXEL_DATES_PER_S.get(params.method)
    seconds = (None if rate is None
               else rows * cols * len(days) * (n_bands / THROUGHPUT_BANDS) / rate)
    return PlannedTile(tile=tile, group=group, halo_px=halo, grown_shape=(rows, cols),
                       scenes=tuple(str(s["id"]) for s in scenes), n_dates=len(days),
                       n_bands=n_bands, memory_gib=memory, seconds=seconds, mask=params.mask)


def build_plan(
    items: Iterable[Mapping[str, Any]],
    *,
    params: MosaicParams | None = None,
    aoi: AOI | None = None,
    window: DateWindow | None = None,
    max_cloud_pct: float | None = None,
    tile_size_px: int | None = None,
    epsg: int | None = None,
    source: str | None = None,
    assume: str | None = None,
    api_url: str | None = None,
    origin: str = "items",
    budgets: Budgets | None = None,
) -> Plan:
    """The plan of a mosaic run over ``items`` (reads no pixel).

    Args:
        items: STAC item dicts (raw, or prepared by :func:`cloudfree.catalogs.prepare_items`,
            whose recorded decoding is used).
        params: the mosaic parameters (bands, method, resolution, mask dilation...).
        aoi: the area of interest; None groups the items by overlapping footprint.
        window: keep only items acquired in it (searched items already are).
        max_cloud_pct: keep only items with ``eo:cloud_cover`` at most this (or none).
        tile_size_px: grid tile size; None with an AOI: one tile over it (the aoi flow);
            None without: :data:`DEFAULT_TILE_SIZE_PX`.
        epsg: output CRS (default: the UTM zone of the AOI's or group's centre).
        source, assume, api_url: as :func:`cloudfree.catalogs.decode_item`.
        origin: ``"search"`` or ``"items"``, for the record.
        budgets: the grid's budgets (:func:`area_tiles`: ``max_tiles`` counted before any
            tile is made, ``max_pixels_per_tile``; default :class:`Budgets`' defaults); the
            plan's own figures are checked by :func:`check_budgets`.

    With an AOI and no ``tile_size_px``, the AOI is one tile unless it is larger than
    ``max_pixels_per_tile``: then it is cut into grid tiles (:func:`area_tiles`).

    Raises:
        UnsupportedItemError, UnknownAssetError, UndecodableItemError, InvalidParameterError,
        BudgetExceededError (the grid's budgets), MissingDetectorInputError (a detector
        that cannot run on a tile's sources, :func:`cloudfree.tile.resolve_mask`).
    """
    params = params or MosaicParams()
    budgets = budgets or Budgets()
    check_epsg(epsg)
    if window is not None:
        check_target_date(params.target_date, window)
    if aoi is not None:  # the grid is budgeted before any item is looked at
        area_tiles(aoi, resolution_m=params.resolution_m, tile_size_px=tile_size_px,
                   epsg=epsg, budgets=budgets)
    given: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for raw in items:
        item = dict(raw)
        if "id" not in item:
            raise InvalidParameterError("item", sorted(item)[:6], "a STAC item needs an 'id'")
        ident = str(item["id"])
        if ident in given:
            if given[ident] != item:
                notes.append(f"item {ident!r} given twice with different content: the first "
                             "is planned")
            continue
        given[ident] = item
    n_given = len(given)
    kept = [it for it in given.values() if (window is None or in_window(it, window))
            and _cloud_ok(cloud_cover(it), max_cloud_pct)]
    if aoi is not None:  # an item across the antimeridian matches no tile: left out
        kept = [it for it in kept if bbox_intersects(bbox_or_none(it) or (0, 0, 0, 0),
                                                     aoi.bbox)]
    if not kept:
        where = " ".join(filter(None, (f"in {window.stac}" if window else "",
                                        f"over {list(aoi.bbox)}" if aoi else "")))
        raise InvalidParameterError("items", f"{n_given} items", f"none of them lies {where}; "
                                    "widen the window or the area of interest")
    if len(kept) < n_given:
        notes.append(f"{n_given - len(kept)} of {n_given} items lie outside the window or the "
                     "area of interest (or above --max-cloud) and are left out")
    decoded = {str(it["id"]): _scene(it, params.bands, source=source, api_url=api_url,
                                     assume=assume) for it in kept}
    if aoi is not None:
        members = [list(range(len(kept)))]
        areas = [aoi]
    else:
        boxes = [item_bbox(it) for it in kept]
        members = footprint_groups(boxes)
        areas = [AOI(bbox=union(boxes[i] for i in group)) for group in members]
    groups: list[PlanGroup] = []
    tiles: dict[str, PlannedTile] = {}
    for index, (group, area) in enumerate(zip(members, areas, strict=True)):
        minx, miny, maxx, maxy = area.bbox
        crs = epsg or utm_epsg((minx + maxx) / 2, (miny + maxy) / 2)
        groups.append(PlanGroup(index, area.bbox, crs, tuple(str(kept[i]["id"]) for i in group)))
        if aoi is not None:
            candidates, size = area_tiles(area, resolution_m=params.resolution_m, epsg=crs,
                                          tile_size_px=tile_size_px, budgets=budgets)
            tile_size_px = size  # an AOI over max_pixels_per_tile is cut into grid tiles
        else:
            candidates = grid_tiles(area, resolution_m=params.resolution_m, epsg=crs,
                                    tile_size_px=tile_size_px or DEFAULT_TILE_SIZE_PX,
                                    max_tiles=budgets.max_tiles)
        for tile in candidates:
            if not items_for_tile(kept, tile) or tile.tile_id in tiles:
                continue  # no scene over the tile itself, or listed already
            # The detector (auto: per tile) and what its halo reads; a detector that cannot
            # run on the tile is MissingDetectorInputError here, before any pixel is read.
            mask, scenes = resolve_mask(kept, tile, params)
            tiles[tile.tile_id] = _estimate(tile, scenes, index,
                                            dataclasses.replace(params, mask=mask))
    used = {s for t in tiles.values() for s in t.scenes}
    return Plan(
        origin=origin, window=None if window is None else window.stac, params=params,
        tile_size_px=tile_size_px if aoi is not None else tile_size_px or DEFAULT_TILE_SIZE_PX,
        epsg=epsg, source=source, assume=assume, api_url=api_url,
        aoi=aoi, groups=tuple(groups), tiles=tuple(tiles.values()),
        scenes=tuple(s for ident, s in decoded.items() if ident in used), notes=tuple(notes))
