"""Budgets a run's plan must stay within (the flows refuse a plan over them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudfree.errors import BudgetExceededError

if TYPE_CHECKING:  # _plan imports Budgets: the plan's grid is budgeted before it is made
    from cloudfree.plan._plan import Plan

__all__ = ["Budgets", "budget_problems", "budget_table", "check_budgets", "pixels_problem"]


@dataclass(frozen=True)
class Budgets:
    """Limits a run must stay within (Settings ``max_tiles``, ``max_scenes_per_tile``,
    ``max_tile_memory_gib``, ``max_pixels_per_tile``; env ``CLOUDFREE_MAX_*``).

    ``max_tiles`` and ``max_pixels_per_tile`` are checked on the grid alone, before the
    search (the tile count from the area's projected bounds, before any tile is made);
    ``max_scenes_per_tile`` and ``max_tile_memory_gib`` (the memory one worker needs for
    one tile) on the plan, after the search and before any tile starts."""

    max_tiles: int = 10000
    max_scenes_per_tile: int = 500
    max_tile_memory_gib: float = 64.0
    max_pixels_per_tile: int = 16384 * 16384

    @classmethod
    def from_settings(cls, settings: Any) -> Budgets:
        return cls(max_tiles=int(settings.max_tiles),
                   max_scenes_per_tile=int(settings.max_scenes_per_tile),
                   max_tile_memory_gib=float(settings.max_tile_memory_gib),
                   max_pixels_per_tile=int(settings.max_pixels_per_tile))


def pixels_problem(shape: tuple[int, int], budgets: Budgets, *, what: str
                   ) -> BudgetExceededError | None:
    """The ``max_pixels_per_tile`` refusal of a tile of ``shape`` (rows, cols), or None."""
    pixels = shape[0] * shape[1]
    if pixels <= budgets.max_pixels_per_tile:
        return None
    side = math.isqrt(budgets.max_pixels_per_tile)
    return BudgetExceededError(
        "max_pixels_per_tile", pixels, budgets.max_pixels_per_tile,
        f"{what} is {shape[0]} x {shape[1]} px; use a --tile-size of at most {side} px "
        "(a regional run cuts the area into grid tiles of that size)")


def budget_problems(plan: Plan, budgets: Budgets) -> list[BudgetExceededError]:
    """One error per exceeded budget (empty when the plan fits)."""
    largest = max(plan.tiles, key=lambda t: t.memory_gib, default=None)
    busiest = max(plan.tiles, key=lambda t: len(t.scenes), default=None)
    widest = max(plan.tiles, key=lambda t: t.tile.shape[0] * t.tile.shape[1], default=None)
    problems: list[BudgetExceededError] = []
    if widest is not None:
        wide = pixels_problem(widest.tile.shape, budgets, what=f"tile {widest.tile.tile_id}")
        problems += [wide] if wide else []
    checks: list[tuple[str, float, float, str]] = [
        ("max_tiles", len(plan.tiles), budgets.max_tiles,
         f"the plan has {len(plan.tiles)} tiles; split the run into "
         f"{math.ceil(len(plan.tiles) / max(budgets.max_tiles, 1))} or more smaller areas, "
         "or use a larger --tile-size"),
        ("max_scenes_per_tile", plan.max_scenes_per_tile, budgets.max_scenes_per_tile,
         f"tile {busiest.tile.tile_id if busiest else '-'} has {plan.max_scenes_per_tile} "
         "scenes; shorten the window or lower --max-cloud"),
        ("max_tile_memory_gib", round(plan.max_tile_memory_gib, 2), budgets.max_tile_memory_gib,
         f"tile {largest.tile.tile_id if largest else '-'} needs an estimated "
         f"{plan.max_tile_memory_gib:.1f} GiB on one worker; use a smaller --tile-size, "
         "fewer --bands or a shorter window (or split the window into several runs)"),
    ]
    return [*(BudgetExceededError(name, figure, limit, detail)
              for name, figure, limit, detail in checks if figure > limit), *problems]


def check_budgets(plan: Plan, budgets: Budgets) -> None:
    """Raise :class:`~cloudfree.errors.BudgetExceededError` for the first exceeded budget."""
    problems = budget_problems(plan, budgets)
    if problems:
        raise problems[0]


def budget_table(plan: Plan, budgets: Budgets) -> dict[str, dict[str, Any]]:
    """Each budget: its limit, the plan's figure and whether it fits (``plan --json``)."""
    figures = {"max_tiles": len(plan.tiles), "max_scenes_per_tile": plan.max_scenes_per_tile,
               "max_tile_memory_gib": round(plan.max_tile_memory_gib, 3),
               "max_pixels_per_tile": max((t.tile.shape[0] * t.tile.shape[1]
                                           for t in plan.tiles), default=0)}
    limits = {"max_tiles": budgets.max_tiles,
              "max_scenes_per_tile": budgets.max_scenes_per_tile,
              "max_tile_memory_gib": budgets.max_tile_memory_gib,
              "max_pixels_per_tile": budgets.max_pixels_per_tile}
    return {name: {"limit": limits[name], "figure": figure, "ok": figure <= limits[name],
                   "env": f"CLOUDFREE_{name.upper()}"} for name, figure in figures.items()}
