"""cloudfree: cloud-free Sentinel-2 mosaics from any STAC API, published as COGs to STAC.

The entry points, in the order one tile flows through them: the area and dates
(:func:`parse_bbox`, :func:`parse_date_window`, :func:`grid_tiles`), the scenes
(:func:`search_scenes`), the time cube (:func:`build_cube`), the clear mask
(:func:`scl_clear_mask`), a method of the registry (:func:`get_method`, :func:`composite`),
and one tile end to end (:func:`mosaic_tile`, or its steps :func:`plan_tile`,
:func:`compute_tile`, :func:`write_tile`, :func:`publish_tile`).

They load on first use (PEP 562), so ``import cloudfree`` imports neither dask, xarray nor
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name -> the module that defines it (what ``__getattr__`` imports).
_EXPORTS: dict[str, str] = {
    # errors
    "CloudFreeError": "cloudfree.errors",
    "CloudFreeWarning": "cloudfree.errors",
    # settings, read once at the edge
    "Settings": "cloudfree.settings",
    # area, dates and the tiling grid
    "AOI": "cloudfree.grid",
    "DateWindow": "cloudfree.grid",
    "Tile": "cloudfree.grid",
    "aoi_tile": "cloudfree.grid",
    "grid_tiles": "cloudfree.grid",
    "parse_bbox": "cloudfree.grid",
    "parse_date_window": "cloudfree.grid",
    "parse_geojson": "cloudfree.grid",
    # the stages
    "search_scenes": "cloudfree.search",
    "build_cube": "cloudfree.cube",
    "scl_clear_mask": "cloudfree.masking",
    "composite": "cloudfree.methods",
    "composite_array": "cloudfree.methods",
    "get_method": "cloudfree.methods",
    "list_methods": "cloudfree.methods",
    "write_cog": "cloudfree.cog",
    "build_item": "cloudfree.publish",
    "publish_item": "cloudfree.publish",
    # one tile: plan -> compute -> write -> publish
    "MosaicParams": "cloudfree.tile",
    "TileOutcome": "cloudfree.tile",
    "mosaic_tile": "cloudfree.tile",
    "plan_tile": "cloudfree.tile",
    "compute_tile": "cloudfree.tile",
    "write_tile": "cloudfree.tile",
    "publish_tile": "cloudfree.tile",
    # evaluation and the Dask cluster
    "evaluate_cases": "cloudfree.evaluation.harness",
    "evaluate_masks": "cloudfree.evaluation.masks",
    # cloud detection, before removal
    "detect": "cloudfree.detection",
    "list_detectors": "cloudfree.detection",
    "make_cluster": "cloudfree.cluster",
}

__all__ = [
    "__version__",
    "CloudFreeError",
    "CloudFreeWarning",
    "Settings",
    "AOI",
    "DateWindow",
    "Tile",
    "aoi_tile",
    "grid_tiles",
    "parse_bbox",
    "parse_date_window",
    "parse_geojson",
    "search_scenes",
    "build_cube",
    "scl_clear_mask",
    "composite",
    "composite_array",
    "get_method",
    "list_methods",
    "write_cog",
    "build_item",
    "publish_item",
    "MosaicParams",
    "TileOutcome",
    "mosaic_tile",
    "plan_tile",
    "compute_tile",
    "write_tile",
    "publish_tile",
    "evaluate_cases",
    "evaluate_masks",
    "detect",
    "list_detectors",
    "make_cluster",
]

# __all__, _EXPORTS and these imports name the same things (tests/unit/test_public_api.py).
if TYPE_CHECKING:  # for type checkers
    from cloudfree.cluster import make_cluster
    from cloudfree.cog import write_cog
    from cloudfree.cube import build_cube
    from cloudfree.detection import detect, list_detectors
    from cloudfree.errors import CloudFreeError, CloudFreeWarning
    from cloudfree.evaluation.harness import evaluate_cases
    from cloudfree.evaluation.masks import evaluate_masks
    from cloudfree.grid import (
        AOI,
        DateWindow,
        Tile,
        aoi_tile,
        grid_tiles,
        parse_bbox,
        parse_date_window,
        parse_geojson,
    )
    from cloudfree.masking import scl_clear_mask
    from cloudfree.methods import composite, composite_array, get_method, list_methods
    from cloudfree.publish import build_item, publish_item
    from cloudfree.search import search_scenes
    from cloudfree.settings import Settings
    from cloudfree.tile import (
        MosaicParams,
        TileOutcome,
        compute_tile,
        mosaic_tile,
        plan_tile,
        publish_tile,
        write_tile,
    )
else:  # hidden from type checkers, which would otherwise type every unknown name as Any

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'cloudfree' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_EXPORTS})
