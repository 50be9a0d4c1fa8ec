"""Budgets a run's plan must stay within (the flows refuse a plan over them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudfree.errors import BudgetExceededError
from cloudfree.plan._plan import Plan

__all__ = ["Budgets", "budget_problems", "budget_table", "check_budgets"]


@dataclass(frozen=True)
class Budgets:
    """Limits a run must stay within (Settings ``max_tiles``, ``max_scenes_per_tile``,
    ``max_tile_memory_gib``; env ``CLOUDFREE_MAX_*``)."""

    max_tiles: int = 10000
    max_scenes_per_tile: int = 500
    max_tile_memory_gib: float = 64.0

    @classmethod
    def from_settings(cls, settings: Any) -> Budgets:
        return cls(max_tiles=int(settings.max_tiles),
                   max_scenes_per_tile=int(settings.max_scenes_per_tile),
                   max_tile_memory_gib=float(settings.max_tile_memory_gib))


def budget_problems(plan: Plan, budgets: Budgets) -> list[BudgetExceededError]:
    """One error per exceeded budget (empty when the plan fits)."""
    largest = max(plan.tiles, key=lambda t: t.memory_gib, default=None)
    busiest = max(plan.tiles, key=lambda t: len(t.scenes), default=None)
    checks: list[tuple[str, float, float, str]] = [
        ("max_tiles", len(plan.tiles), budgets.max_tiles,
         f"the plan has {len(plan.tiles)} tiles; use a smaller area or a larger --tile-size"),
        ("max_scenes_per_tile", plan.max_scenes_per_tile, budgets.max_scenes_per_tile,
         f"tile {busiest.tile.tile_id if busiest else '-'} has {plan.max_scenes_per_tile} "
         "scenes; shorten the window or lower --max-cloud"),
        ("max_tile_memory_gib", round(plan.max_tile_memory_gib, 2), budgets.max_tile_memory_gib,
         f"tile {largest.tile.tile_id if largest else '-'} needs an estimated "
         f"{plan.max_tile_memory_gib:.1f} GiB; use a smaller --tile-size, fewer --bands or a "
         "shorter window"),
    ]
    return [BudgetExceededError(name, figure, limit, detail)
            for name, figure, limit, detail in checks if figure > limit]


def check_budgets(plan: Plan, budgets: Budgets) -> None:
    """Raise :class:`~cloudfree.errors.BudgetExceededError` for the first exceeded budget."""
    problems = budget_problems(plan, budgets)
    if problems:
        raise problems[0]


def budget_table(plan: Plan, budgets: Budgets) -> dict[str, dict[str, Any]]:
    """Each budget: its limit, the plan's figure and whether it fits (``plan --json``)."""
    figures = {"max_tiles": len(plan.tiles), "max_scenes_per_tile": plan.max_scenes_per_tile,
               "max_tile_memory_gib": round(plan.max_tile_memory_gib, 3)}
    limits = {"max_tiles": budgets.max_tiles,
              "max_scenes_per_tile": budgets.max_scenes_per_tile,
              "max_tile_memory_gib": budgets.max_tile_memory_gib}
    return {name: {"limit": limits[name], "figure": figure, "ok": figure <= limits[name],
                   "env": f"CLOUDFREE_{name.upper()}"} for name, figure in figures.items()}
