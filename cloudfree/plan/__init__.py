"""The dry run: what a mosaic run would read and cost, from the STAC items alone.

:func:`build_plan` reads no pixel. From the items (searched, or loaded from files by
:func:`load_items`) and the parameters it decides the tiles (each read grown by the tile
halo, :func:`cloudfree.tile.halo_px`), the scenes of each tile, how every scene is decoded
(:func:`cloudfree.catalogs.decode_item`: the asset key, scale and offset of each band, and
why), and estimates each tile's memory and compute time. ``cloudfree plan`` prints it; the
mosaic flows build the same plan first, log its :meth:`Plan.summary` and refuse to start
when it exceeds the budgets of :class:`Budgets` (:func:`check_budgets`). The grid's own
budgets come earlier, before the search (:func:`area_tiles`): the tile count, from the
area's projected bounds before a single tile is made, and the pixels of one tile; an area
of interest larger than ``max_pixels_per_tile`` is cut into grid tiles instead of one.

Without an area of interest the items are grouped by overlapping footprint (connected
components of intersecting bboxes, :func:`footprint_groups`); each group is cut into grid
tiles (:func:`cloudfree.grid.grid_tiles`) in the UTM zone of its centre.
"""

from __future__ import annotations

from cloudfree.plan._budgets import (
    Budgets,
    budget_problems,
    budget_table,
    check_budgets,
    pixels_problem,
)
from cloudfree.plan._items import footprint_groups, item_bbox, load_items
from cloudfree.plan._plan import (
    DEFAULT_TILE_SIZE_PX,
    MEMORY_COUNTS,
    THROUGHPUT_BANDS,
    THROUGHPUT_MACHINE,
    THROUGHPUT_PIXEL_DATES_PER_S,
    TIME_COUNTS,
    Plan,
    PlanGroup,
    PlannedScene,
    PlannedTile,
    area_tiles,
    build_plan,
)

__all__ = [
    "DEFAULT_TILE_SIZE_PX",
    "MEMORY_COUNTS",
    "THROUGHPUT_BANDS",
    "THROUGHPUT_MACHINE",
    "THROUGHPUT_PIXEL_DATES_PER_S",
    "TIME_COUNTS",
    "Budgets",
    "Plan",
    "PlanGroup",
    "PlannedScene",
    "PlannedTile",
    "area_tiles",
    "budget_problems",
    "budget_table",
    "build_plan",
    "check_budgets",
    "footprint_groups",
    "item_bbox",
    "load_items",
    "pixels_problem",
]
