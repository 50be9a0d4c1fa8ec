"""What the page shows, built from the output collection's items (pure): products, event
pairs, and for each item and layer the tile server's query (assets, rescale, colormap).

The rendering rules live here, not in the JavaScript, so that they read the items'
``raster:bands`` (scale, offset, nodata) and ``classification:classes`` in one typed place:
the page only joins the queries into tile URLs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from cloudfree.sentinel2 import BANDS

#: Reflectance shown from black to white: Sentinel-2 L2A land is mostly below 0.25 in the
#: visible bands and below 0.5 in the near infrared.
VISIBLE_MAX = 0.25
NIR_MAX = 0.5
#: The uncertainty layer's white-to-red range: a 90 % half-width of 0.05 reflectance is
#: already a poor fill (the corrected methods' held-out RMSE is 0.01-0.03).
UNCERTAINTY_MAX = 0.05
#: Scale and offset of reflectance assets without ``raster:bands`` (cloudfree's own).
DEFAULT_SCALE, DEFAULT_OFFSET = 0.0001, -0.1

Group = Literal["reflectance", "provenance", "change"]


@dataclass(frozen=True)
class Layer:
    """One way of drawing an item: the assets it needs and how they become colours."""

    id: str
    title: str
    group: Group
    needs: tuple[str, ...]
    colormap: str | None = None  # a rio-tiler colormap name, for one-band layers
    #: the physical range drawn from the colormap's first to last colour (change layers)
    value_range: tuple[float, float] | None = None
    description: str = ""


#: Every layer the page offers, in its order; an item offers those whose assets it has.
LAYERS: tuple[Layer, ...] = (
    Layer("truecolor", "True colour", "reflectance", ("red", "green", "blue"),
          description=f"red, green, blue; reflectance 0-{VISIBLE_MAX}"),
    Layer("falsecolor", "False colour (NIR, red, green)", "reflectance", ("nir", "red", "green"),
          description=f"near infrared 0-{NIR_MAX}, red and green 0-{VISIBLE_MAX}: "
                      "vegetation is red"),
    Layer("source_date", "Source date", "provenance", ("source_date",), colormap="viridis",
          description="date of the observation each pixel comes from"),
    Layer("fill", "Fill method", "provenance", ("fill",),
          description="observed, composited, interpolated or generated"),
    Layer("clear_count", "Clear observations", "provenance", ("clear_count",),
          colormap="ylgnbu", description="clear observations of each pixel in the window"),
    Layer("uncertainty", "Uncertainty (red band)", "provenance", ("uncertainty",),
          colormap="reds", value_range=(0.0, UNCERTAINTY_MAX),
          description="90 % interval half-width of the red reflectance; 0 where observed"),
    # Sign conventions of cloudfree.event: dNBR = pre - post (burnt is positive); dNDWI
    # and dNDVI = post - pre (flooded is positive, lost vegetation negative).
    Layer("dnbr", "dNBR (burn severity)", "change", ("dnbr",), colormap="rdylgn_r",
          value_range=(-0.8, 0.8), description="NBR before minus after: burnt is red"),
    Layer("dnbr_severity", "Burn severity classes", "change", ("dnbr_severity",),
          description="USGS classes of dNBR"),
    Layer("dndwi", "dNDWI (flooding)", "change", ("dndwi",), colormap="rdbu",
          value_range=(-0.6, 0.6), description="NDWI after minus before: new water is blue"),
    Layer("dndvi", "dNDVI", "change", ("dndvi",), colormap="rdylgn",
          value_range=(-0.6, 0.6), description="NDVI after minus before: lost vegetation is red"),
    Layer("change_valid", "Change validity", "change", ("change_valid",),
          description="grey where either side is generated or without data"),
)
LAYER_IDS = tuple(layer.id for layer in LAYERS)
#: The provenance and change assets a pixel click reports, in this order.
POINT_ASSETS = ("source_date", "fill", "clear_count", "uncertainty",
                "dnbr", "dnbr_severity", "dndwi", "dndvi", "change_valid")
#: Classified assets: drawn with their classification:classes' colour hints.
CLASSIFIED = ("fill", "dnbr_severity")
#: change_valid's colours: transparent where valid (1), grey where not (0).
CHANGE_VALID_COLORMAP = {0: (128, 128, 128, 200), 1: (0, 0, 0, 0)}
#: The value change_valid is read with as nodata, none of its classes: a 0 must show.
CHANGE_VALID_NODATA = 255

Query = dict[str, str | list[str]]


def _band(asset: Mapping[str, Any], index: int = 0) -> Mapping[str, Any]:
    bands = asset.get("raster:bands") or asset.get("bands") or [{}]
    return bands[min(index, len(bands) - 1)] if isinstance(bands, list) else {}


def _scale_offset(asset: Mapping[str, Any], index: int = 0, *,
                  default: tuple[float, float] = (1.0, 0.0)) -> tuple[float, float]:
    band = _band(asset, index)
    scale = band.get("scale", default[0])
    offset = band.get("offset", default[1])
    return float(scale if scale is not None else default[0]), float(offset or 0.0)


def _stored(value: float, scale: float, offset: float) -> float:
    """The stored value (digital number) that decodes to ``value``."""
    return round((value - offset) / scale, 6)


def _rescale(low: float, high: float) -> str:
    return f"{low:g},{high:g}"


def _days(iso: str) -> int:
    """Days since 1970-01-01 of an ISO date or datetime (source_date's unit)."""
    return (dt.date.fromisoformat(iso[:10]) - dt.date(1970, 1, 1)).days


def _reflectance_query(assets: Mapping[str, Any], keys: Sequence[str],
                       maxima: Sequence[float]) -> Query:
    rescale = []
    for key, top in zip(keys, maxima, strict=True):
        scale, offset = _scale_offset(assets[key], default=(DEFAULT_SCALE, DEFAULT_OFFSET))
        rescale.append(_rescale(_stored(0.0, scale, offset), _stored(top, scale, offset)))
    return {"assets": list(keys), "rescale": rescale}


def _band_index(asset: Mapping[str, Any], name: str) -> int:
    """1-based index of the band called ``name`` in a multi-band asset (else 1)."""
    for i, band in enumerate(asset.get("eo:bands") or asset.get("bands") or []):
        if isinstance(band, Mapping) and name in (band.get("name"), band.get("common_name")):
            return i + 1
    return 1


def classes_colormap(asset: Mapping[str, Any]) -> dict[int, tuple[int, int, int, int]]:
    """A classified asset's colours from ``classification:classes`` (``color_hint``), the
    nodata class and the band's nodata value transparent."""
    nodata = _band(asset).get("nodata")
    colours: dict[int, tuple[int, int, int, int]] = {}
    for entry in asset.get("classification:classes", []):
        hint = str(entry.get("color_hint") or "808080")
        rgb = tuple(int(hint[i:i + 2], 16) for i in (0, 2, 4))
        nodata_class = entry.get("nodata") or entry.get("name") == "nodata"
        alpha = 0 if nodata_class or entry.get("value") == nodata else 255
        colours[int(entry["value"])] = (rgb[0], rgb[1], rgb[2], alpha)
    return colours


def layer_query(layer: Layer, item: Mapping[str, Any]) -> Query | None:
    """The tile server's query parameters that draw ``layer`` of ``item`` (None when the
    item lacks one of its assets)."""
    assets = item.get("assets", {})
    if any(key not in assets for key in layer.needs):
        return None
    props = item.get("properties", {})
    if layer.id == "truecolor":
        return _reflectance_query(assets, layer.needs, [VISIBLE_MAX] * 3)
    if layer.id == "falsecolor":
        return _reflectance_query(assets, layer.needs, [NIR_MAX, VISIBLE_MAX, VISIBLE_MAX])
    key = layer.needs[0]
    if layer.id == "source_date":
        start, end = _window(props)
        return {"assets": [key], "rescale": [_rescale(_days(start), _days(end))],
                "colormap_name": str(layer.colormap)}
    if layer.id in CLASSIFIED:
        colormap = {str(k): list(v) for k, v in classes_colormap(assets[key]).items()}
        return {"assets": [key], "colormap": json.dumps(colormap, separators=(",", ":"))}
    if layer.id == "clear_count":
        return {"assets": [key], "rescale": [_rescale(0, max_clear_count(item))],
                "colormap_name": str(layer.colormap)}
    if layer.id == "change_valid":
        colormap = {str(k): list(v) for k, v in CHANGE_VALID_COLORMAP.items()}
        return {"assets": [key], "nodata": str(CHANGE_VALID_NODATA),
                "colormap": json.dumps(colormap, separators=(",", ":"))}
    assert layer.value_range is not None, layer.id
    index = _band_index(assets[key], "red") if layer.id == "uncertainty" else 1
    scale, offset = _scale_offset(assets[key], index - 1)
    low, high = (_stored(v, scale, offset) for v in layer.value_range)
    selector = f"{key}|bidx={index}" if layer.id == "uncertainty" else key
    return {"assets": [selector], "rescale": [_rescale(low, high)],
            "colormap_name": str(layer.colormap)}


def max_clear_count(item: Mapping[str, Any]) -> int:
    """The most clear observations a pixel of the item can have: one per source date."""
    return max(1, len(item.get("properties", {}).get("cloudfree:source_dates", [])))


def _window(props: Mapping[str, Any]) -> tuple[str, str]:
    start = props.get("start_datetime") or props.get("datetime") or "1970-01-01"
    end = props.get("end_datetime") or props.get("datetime") or start
    return str(start)[:10], str(end)[:10]


def point_spec(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """How the page decodes a pixel click: the assets it asks the point endpoint for, in
    order, each with its bands' scale, offset and nodata, and its classes."""
    spec = []
    for key in POINT_ASSETS:
        asset = item.get("assets", {}).get(key)
        if asset is None:
            continue
        raw = asset.get("raster:bands") or asset.get("bands") or [{}]
        names = [b.get("name") for b in asset.get("eo:bands", [])] or [None] * len(raw)
        spec.append({
            "asset": key,
            "bands": [{"name": name, "scale": _scale_offset(asset, i)[0],
                       "offset": _scale_offset(asset, i)[1], "nodata": band.get("nodata"),
                       "unit": band.get("unit")}
                      for i, (band, name) in enumerate(zip(raw, names, strict=False))],
            "classes": {str(c["value"]): c["name"]
                        for c in asset.get("classification:classes", [])},
        })
    return spec


def product_key(item: Mapping[str, Any]) -> str:
    """The product an item is one tile of: what its run decided, without the tile. An item
    id ends in a digest of its product definition, which holds the tile itself, so the
    tiles of one run are grouped by what they share instead: window, method, version,
    target date, event side, reflectance bands and resolution."""
    props = item.get("properties", {})
    start, end = _window(props)
    software = props.get("processing:software")
    version = software.get("cloudfree", "?") if isinstance(software, Mapping) else "?"
    parts = [start.replace("-", ""), end.replace("-", ""),
             str(props.get("cloudfree:method", "?")), f"v{version}"]
    if props.get("cloudfree:target_date"):
        parts.append(f"t{str(props['cloudfree:target_date']).replace('-', '')}")
    event, role = _event(props)
    if event and role:
        parts.append(f"{role}{event['date'].replace('-', '')}")
    bands = sorted(key for key in item.get("assets", {}) if key in BANDS)
    grid = json.dumps([bands, props.get("gsd")])
    parts.append(hashlib.sha256(grid.encode()).hexdigest()[:6])
    return "-".join(parts)


def group_products(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Items by :func:`product_key`, one item per tile in each product: where two runs
    made the same product key for a tile (other mask settings, say), the newer item stays
    in the product and the older one goes to a product of its own (key suffix ``~2``...)."""
    ordered = sorted(items, key=lambda it: str(it.get("properties", {}).get("updated") or ""),
                     reverse=True)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    tiles: dict[str, set[str]] = {}
    for item in ordered:
        base = product_key(item)
        tile = str(item.get("properties", {}).get("cloudfree:tile_id") or item["id"])
        n = 1
        while tile in tiles.get(key := base if n == 1 else f"{base}~{n}", set()):
            n += 1
        groups.setdefault(key, []).append(item)
        tiles.setdefault(key, set()).add(tile)
    return groups


def _event(props: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    event = props.get("cloudfree:event")
    role = props.get("cloudfree:event_role")
    if not isinstance(event, Mapping) or not event.get("date") or role not in ("pre", "post"):
        return None, None
    return {"date": str(event["date"])[:10], "name": event.get("name")}, str(role)


def _related_ids(item: Mapping[str, Any]) -> set[str]:
    """The ids an item's ``related`` links point at (an API item URL or a static JSON)."""
    ids = set()
    for link in item.get("links", []):
        if link.get("rel") == "related" and link.get("href"):
            name = posixpath.basename(urlparse(str(link["href"])).path)
            ids.add(name.removesuffix(".json"))
    return ids


def _union(boxes: Sequence[Sequence[float]]) -> list[float]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


#: A colormap by name: value (0-255) -> RGBA.
Colormaps = Callable[[str], Mapping[int, Sequence[int]]]


def _rio_tiler_colormap(name: str) -> Mapping[int, Sequence[int]]:
    from rio_tiler.colormap import cmap

    colours = cmap.get(name)
    assert isinstance(colours, dict), name  # a named colormap is a 256-entry dict
    return {int(k): tuple(int(c) for c in v) for k, v in colours.items()}


def _gradient(colormap: str, lookup: Colormaps) -> str:
    colours = lookup(colormap)
    stops = [colours[round(i * 255 / 8)] for i in range(9)]
    parts = [f"rgb({int(c[0])},{int(c[1])},{int(c[2])}) {i * 12.5:g}%"
             for i, c in enumerate(stops)]
    return f"linear-gradient(to right, {', '.join(parts)})"


def _legend(layer: Layer, items: Sequence[Mapping[str, Any]], lookup: Colormaps
            ) -> dict[str, Any]:
    legend: dict[str, Any] = {"title": layer.title, "description": layer.description}
    first = items[0]
    if layer.colormap:
        legend["gradient"] = _gradient(layer.colormap, lookup)
    if layer.id == "source_date":
        legend["min"], legend["max"] = _window(first.get("properties", {}))
    elif layer.id == "clear_count":
        legend["min"], legend["max"] = "0", str(max(max_clear_count(it) for it in items))
    elif layer.value_range is not None:
        legend["min"], legend["max"] = (f"{v:+g}" if layer.group == "change" else f"{v:g}"
                                        for v in layer.value_range)
    elif layer.id in CLASSIFIED:
        asset = next(it["assets"][layer.id] for it in items if layer.id in it.get("assets", {}))
        nodata = _band(asset).get("nodata")
        legend["classes"] = [
            {"name": str(c["name"]).replace("_", " "),
             "color": "#" + str(c.get("color_hint") or "808080")}
            for c in asset.get("classification:classes", [])
            if c.get("name") != "nodata" and c.get("value") != nodata]
    elif layer.id == "change_valid":
        legend["classes"] = [{"name": "not comparable: either side not observed",
                              "color": "#808080"}]
    return legend


def _run_label(props: Mapping[str, Any]) -> str:
    """Method and window (and target date): what a product is, event side aside."""
    start, end = _window(props)
    label = f"{props.get('cloudfree:method', '?')}, {start} to {end}"
    if props.get("cloudfree:target_date"):
        label += f", at {props['cloudfree:target_date']}"
    return label


def _product_label(key: str, props: Mapping[str, Any]) -> str:
    label = _run_label(props)
    event, role = _event(props)
    if event and role:
        name = f" {event['name']}" if event.get("name") else ""
        label = f"{'before' if role == 'pre' else 'after'} {event['date']}{name}: {label}"
    if "~" in key:
        label += f" (older run {key.rsplit('~', 1)[1]})"
    return label


def build_catalog(collection: str, items: Sequence[Mapping[str, Any]], *,
                  truncated: bool = False, colormaps: Colormaps | None = None,
                  ) -> dict[str, Any]:
    """The page's whole model of ``collection`` (pure): its products (the items of one run,
    tile by tile, each with its layers' queries and point spec), its event pairs, and the
    layers' legends. ``colormaps`` looks a colormap up by name (default: rio-tiler's)."""
    lookup = colormaps or _rio_tiler_colormap
    groups = group_products(items)
    products = []
    role_of: dict[str, tuple[str, str | None, dict[str, Any] | None]] = {}
    for key, members in groups.items():
        props = members[0].get("properties", {})
        event, role = _event(props)
        start, end = _window(props)
        offered = [layer for layer in LAYERS
                   if any(layer_query(layer, it) is not None for it in members)]
        products.append({
            "key": key,
            "label": _product_label(key, props),
            "run": _run_label(props),
            "method": props.get("cloudfree:method"),
            "start": start, "end": end, "event": event, "role": role,
            "updated": props.get("updated") or props.get("created"),
            "bbox": _union([it["bbox"] for it in members]),
            "layers": [layer.id for layer in offered],
            "legends": {layer.id: _legend(layer, members, lookup) for layer in offered},
            "items": [{
                "id": it["id"],
                "tile": it.get("properties", {}).get("cloudfree:tile_id"),
                "bbox": list(it["bbox"]),
                "geometry": it.get("geometry"),
                "layers": {layer.id: q for layer in offered
                           if (q := layer_query(layer, it)) is not None},
                "point": point_spec(it),
            } for it in members],
        })
        for it in members:
            role_of[str(it["id"])] = (key, role, event)
    products.sort(key=lambda p: (str(p["updated"] or ""), p["key"]), reverse=True)
    return {
        "collection": collection,
        "count": len(items),
        "truncated": truncated,
        "bbox": _union([p["bbox"] for p in products]) if products else None,
        "layers": [{"id": layer.id, "title": layer.title, "group": layer.group}
                   for layer in LAYERS],
        "products": products,
        "pairs": event_pairs(items, role_of),
    }


def event_pairs(items: Sequence[Mapping[str, Any]],
                role_of: Mapping[str, tuple[str, str | None, dict[str, Any] | None]],
                ) -> list[dict[str, Any]]:
    """Before/after pairs of products: a post item and the pre item it links to with rel
    ``related`` that shares its ``cloudfree:event``; one pair per two products."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        post_key, role, event = role_of[str(item["id"])]
        if role != "post" or event is None:
            continue
        for other in sorted(_related_ids(item)):
            if other not in role_of:
                continue
            pre_key, other_role, other_event = role_of[other]
            if other_role != "pre" or other_event != event:
                continue
            pair = pairs.setdefault((pre_key, post_key), {
                "key": f"{pre_key}+{post_key}",
                "event": event,
                "label": f"event {event['date']}" + (f" {event['name']}"
                                                     if event.get("name") else ""),
                "pre": pre_key, "post": post_key, "tiles": 0,
            })
            pair["tiles"] += 1
    return sorted(pairs.values(), key=lambda p: (p["event"]["date"], p["key"]), reverse=True)
