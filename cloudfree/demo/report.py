"""What the demo shows a user: a quicklook of a cloudy input beside the mosaic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cloudfree.cube import build_cube
from cloudfree.grid import Tile
from cloudfree.quicklook import rgb_uint8, side_by_side


def region_of(output_items: Sequence[dict[str, Any]], *, resolution_m: float) -> Tile:
    """The tile covering every output item (all in one CRS), at ``resolution_m``."""
    codes = {it["properties"]["proj:code"] for it in output_items}
    if len(codes) != 1:
        raise ValueError(f"output items span several CRSs: {sorted(codes)}")
    epsg = int(codes.pop().split(":")[1])
    boxes = np.array([it["properties"]["proj:bbox"] for it in output_items])
    bounds = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    return Tile(
        tile_id="region",
        epsg=epsg,
        bounds=(float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3])),
        resolution_m=resolution_m,
    )


def pick_cloudy_date(source_items: Sequence[dict[str, Any]], *, target_pct: float = 40.0) -> str:
    """The date whose scenes' mean cloud cover is closest to ``target_pct``."""
    by_date: dict[str, list[float]] = {}
    for it in source_items:
        by_date.setdefault(it["properties"]["datetime"][:10], []).append(
            float(it["properties"].get("eo:cloud_cover") or 0.0)
        )
    return min(by_date, key=lambda d: abs(np.mean(by_date[d]) - target_pct))


def _rgb(
    items: Sequence[dict[str, Any]], region: Tile, gdal_env: dict[str, Any] | None
) -> NDArray[np.uint8]:
    cube = build_cube(
        list(items), ["red", "green", "blue"], tile=region, gdal_env=gdal_env, resampling="bilinear"
    )
    frame = cube.max("time").values if cube.sizes["time"] > 1 else cube.values[0]
    return rgb_uint8(frame[0], frame[1], frame[2])


def frame_date(output_items: Sequence[dict[str, Any]]) -> str | None:
    """The acquisition date a single-date mosaic shows (``interpolate_corrected``,
    ``generator``: ``frame_date`` in ``processing:expression``), else None."""
    for item in output_items:
        expression = item["properties"].get("processing:expression") or {}
        date = (expression.get("expression") or {}).get("frame_date")
        if date:
            return str(date)[:10]
    return None


def quicklook(
    source_items: Sequence[dict[str, Any]],
    output_items: Sequence[dict[str, Any]],
    *,
    gdal_env: dict[str, Any] | None = None,
    resolution_m: float = 20.0,
) -> Image.Image:
    """A PIL image: an input date beside the mosaic, on the same grid, both read back
    from storage through STAC. The input is the date the mosaic shows when it shows one
    (:func:`frame_date`), else the cloudiest-but-not-overcast date."""
    region = region_of(output_items, resolution_m=resolution_m)
    date = frame_date(output_items) or pick_cloudy_date(source_items)
    scene_items = [it for it in source_items if it["properties"]["datetime"][:10] == date]
    cover = np.mean([it["properties"].get("eo:cloud_cover") or 0 for it in scene_items])
    return side_by_side(
        [
            (f"input {date} ({cover:.0f}% cloud)", _rgb(scene_items, region, gdal_env)),
            ("cloudfree mosaic", _rgb(output_items, region, gdal_env)),
        ]
    )
