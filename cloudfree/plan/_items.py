"""Items for a plan: loaded from files, their footprints, and groups of overlapping ones."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cloudfree.errors import InvalidParameterError
from cloudfree.grid import Bbox, DateWindow, bbox_intersects

__all__ = ["bbox_or_none", "cloud_cover", "footprint_groups", "in_window", "item_bbox",
           "load_items", "union"]


def _items_of(path: Path, data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, dict) and isinstance(data.get("features"), list):
        return [f for f in data["features"] if isinstance(f, dict)]
    raise InvalidParameterError("--items file", str(path), "it is neither a STAC Item nor an "
                                "ItemCollection/FeatureCollection of items")


def load_items(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """STAC items from files, each an Item or an ItemCollection (FeatureCollection).

    Raises:
        InvalidParameterError: a file cannot be read, is not JSON, or holds no items.
    """
    items: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc.__class__.__name__
            raise InvalidParameterError("--items file", str(path),
                                        f"cannot read it ({reason})") from None
        except json.JSONDecodeError as exc:
            raise InvalidParameterError("--items file", str(path),
                                        f"not JSON ({exc.msg}, line {exc.lineno})") from None
        items.extend(_items_of(path, data))
    return items


def _coords(value: Any) -> Iterable[tuple[float, float]]:
    if isinstance(value, list) and value and isinstance(value[0], int | float):
        yield float(value[0]), float(value[1])
    elif isinstance(value, list):
        for part in value:
            yield from _coords(part)


def item_bbox(item: Mapping[str, Any]) -> Bbox:
    """The item's bbox (from its geometry when it has none), checked."""
    ident = str(item.get("id", "<no id>"))
    bbox = item.get("bbox")
    if not (isinstance(bbox, list | tuple) and len(bbox) in (4, 6)):
        points = list(_coords((item.get("geometry") or {}).get("coordinates")))
        if not points:
            raise InvalidParameterError("item", ident, "it has neither a bbox nor a geometry; "
                                        "give STAC items with a footprint")
        xs, ys = zip(*points, strict=True)
        bbox = [min(xs), min(ys), max(xs), max(ys)]
    values = [float(v) for v in bbox]
    if len(values) == 6:  # minx, miny, minz, maxx, maxy, maxz
        values = [values[0], values[1], values[3], values[4]]
    box: Bbox = (values[0], values[1], values[2], values[3])
    if box[0] > box[2]:
        raise InvalidParameterError("item", ident, f"its bbox {list(box)} crosses the "
                                    "antimeridian, which cloudfree's grid does not; plan the "
                                    "two sides separately with --bbox")
    return box


def bbox_or_none(item: Mapping[str, Any]) -> Bbox | None:
    try:
        return item_bbox(item)
    except InvalidParameterError:
        return None


def cloud_cover(item: Mapping[str, Any]) -> float | None:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return None if value is None else float(value)


def in_window(item: Mapping[str, Any], window: DateWindow) -> bool:
    value = str((item.get("properties") or {}).get("datetime") or "")[:10]
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return True  # no readable date: the decoding names the item if it matters
    return window.start <= day <= window.end


def footprint_groups(boxes: Sequence[Bbox]) -> list[list[int]]:
    """Connected components of intersecting bboxes (indices, in input order)."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for n, i in enumerate(order):
        for j in order[n + 1:]:
            if boxes[j][0] >= boxes[i][2]:
                break
            if bbox_intersects(boxes[i], boxes[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def union(boxes: Iterable[Bbox]) -> Bbox:
    xs0, ys0, xs1, ys1 = zip(*boxes, strict=True)
    return (min(xs0), min(ys0), max(xs1), max(ys1))
