"""Publishing: STAC items and the output collection, through the Transactions API,
with a static JSON copy of each item beside its COGs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudfree import __version__
from cloudfree._stac_api import get_json, upsert_collection, upsert_item
from cloudfree.grid import DateWindow, Tile
from cloudfree.sentinel2 import NODATA, OFFSET, SCALE, eo_band

log = logging.getLogger(__name__)

EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
}
#: The collection declares the item-assets extension besides those of its items.
ITEM_ASSETS_EXTENSION = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
SOFTWARE = f"cloudfree {__version__}"

#: Sentinel data is free and open under the Copernicus Sentinel data legal notice, which has
#: no SPDX id: STAC 1.0 says ``proprietary`` with a ``license`` link to the text.
LICENSE_URL = ("https://sentinels.copernicus.eu/documents/247904/690755/"
               "Sentinel_Data_Legal_Notice")
#: The attribution the legal notice asks of products made from Sentinel data.
ATTRIBUTION = "Contains modified Copernicus Sentinel data"
#: The static catalog's root document, at the output root.
STATIC_COLLECTION = "collection.json"
#: The title of the corrected methods' ``uncertainty`` asset.
UNCERTAINTY_TITLE = "90 % interval half-width"
#: The fill classes' colours (RGB), in the COG colour table and as ``color_hint``.
FILL_COLOURS: dict[str, tuple[int, int, int]] = {
    "nodata": (0, 0, 0),
    "observed": (46, 139, 87),  # green: a real observation
    "composited": (70, 130, 180),  # blue: a blend of real observations
    "interpolated": (255, 165, 0),  # orange: linear in time
    "generated": (220, 20, 60),  # red: predicted by the network
}


@dataclass(frozen=True)
class WrittenAsset:
    """A file already written to storage, ready to be described in an item."""

    key: str
    href: str
    size: int
    sha256: str
    media_type: str
    roles: tuple[str, ...]
    title: str
    band: str | None = None  # reflectance band name, when the asset holds one
    # reflectance | clear_count | source_date | fill | uncertainty | thumbnail
    kind: str = "reflectance"
    bands: tuple[str, ...] = ()  # the bands of a multi-band asset (uncertainty), in order
    #: Further asset fields (``description``, ``raster:bands``, ``classification:classes``)
    #: of a kind :func:`build_item` does not describe itself: an event's change layers
    #: (:mod:`cloudfree.event`). Merged last into the asset.
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


#: Hex digits of the product digest in an item id: 32 bits, so two products of one tile,
#: window and method collide with odds of about 1 in 4e9.
PRODUCT_DIGEST_CHARS = 8


def item_id(tile_id: str, window: DateWindow, method: str, version: str = __version__, *,
            product: str | None = None) -> str:
    """Deterministic id from tile, window, method and software version, and the product:
    ``cloudfree-{tile}-{window}-{method}-v{version}-{product[:8]}``.

    ``product`` is :func:`product_digest` of everything else that decides the pixels (bands,
    resolution, CRS, target date, mask, source profile), so two products of one tile and
    window are two items and never replace each other; :func:`cloudfree.tile.plan_tile`
    always gives it. Without it, the readable prefix alone (older items)."""
    base = f"cloudfree-{tile_id}-{window.compact}-{method}-v{version}"
    return f"{base}-{product[:PRODUCT_DIGEST_CHARS]}" if product else base


def product_digest(product: Mapping[str, Any]) -> str:
    """SHA-256 of a product's definition (the parameters that decide its pixels, JSON with
    sorted keys). Not of its source items: a new scene in the catalog makes the same
    product again, under the same id; :func:`inputs_hash` tells the two makings apart."""
    payload = json.dumps(product, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def within(url: str, folder: str) -> bool:
    """Whether ``url`` is ``folder`` or lies under it (by path segment: ``a/b-c`` is not
    under ``a/b``)."""
    folder = folder.rstrip("/")
    return url.rstrip("/") == folder or url.startswith(folder + "/")


def prefixes_overlap(a: str, b: str) -> bool:
    """Whether removing one of two folders could remove a file of the other."""
    return within(a, b) or within(b, a)


def item_prefix(item: Mapping[str, Any]) -> str | None:
    """The folder holding every file of an item: the deepest folder common to its asset
    hrefs (the static JSON copy lies beside them); ``None`` for an item without assets."""
    folders = [str(a["href"]).rsplit("/", 1)[0].split("/")
               for a in (item.get("assets") or {}).values() if "/" in str(a.get("href", ""))]
    if not folders:
        return None
    common = folders[0]
    for parts in folders[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return "/".join(common) or None


def inputs_hash(source_items: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any]) -> str:
    """Hash of everything that determines a mosaic: the source items (ids, their
    ``updated``/``datetime`` and, for prepared items, how each band was decoded), the
    parameters and the software version."""
    sources = sorted(
        (it["id"], it["properties"].get("updated", ""), it["properties"].get("datetime", ""),
         json.dumps([[b.get("band"), b.get("scale"), b.get("offset")] for b in
                     (it["properties"].get("cloudfree:decoding") or {}).get("bands", [])]))
        for it in source_items
    )
    payload = json.dumps(
        {"sources": sources, "parameters": parameters, "software": SOFTWARE},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _geometry(bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    minx, miny, maxx, maxy = bbox
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_item(
    *,
    item_id: str,
    collection_id: str,
    tile: Tile,
    window: DateWindow,
    assets: Sequence[WrittenAsset],
    source_items: Sequence[Mapping[str, Any]],
    source_api_url: str,
    source_collection: str,
    method: str,
    parameters: Mapping[str, Any],
    digest: str,
    nodata_pct: float,
    fill_pct: Mapping[str, float] | None = None,
    software: Mapping[str, str] | None = None,
    static_href: str | None = None,
    processed_at: dt.datetime | None = None,
    target_date: str | None = None,
    dropped_sources: Sequence[Mapping[str, Any]] = (),
    extra_properties: Mapping[str, Any] | None = None,
    extra_links: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Build the complete STAC item of one mosaic tile (pure): the item the API serves
    (its self, parent, collection and root links are the API's own; the static copy
    beside the COGs is :func:`static_item` of it).

    ``nodata_pct``: the share (%) of the tile's pixels with no clear observation in the
    window. It is also the item's ``eo:cloud_cover``: the usual ``eo:cloud_cover < x``
    filter then keeps tiles whose gaps, which clouds, shadows and missing scenes leave, are
    under x %; it is not the cloud cover of any scene. ``fill_pct``: the share of each
    fill class (``cloudfree:fill_pct``); ``software``: what the method adds to
    ``processing:software`` (the generator's weights); ``static_href``: the static copy
    (an ``alternate`` link); ``target_date``: a targeted method's date
    (``cloudfree:target_date``); ``dropped_sources``: scenes left out because they could
    not be read (``cloudfree:dropped_sources``, ``[{"id", "asset", "error"}]``), which are
    then no ``derived_from`` source. ``platform`` is the sources' one platform, omitted
    when they mix several; ``cloudfree:platforms`` lists them all. ``extra_properties``
    and ``extra_links``: what a product adds to the item (an event pair's
    ``cloudfree:event`` and ``related`` links, :mod:`cloudfree.event_tile`), merged last
    and appended."""
    processed_at = processed_at or dt.datetime.now(dt.UTC)
    dropped_ids = {str(d.get("id")) for d in dropped_sources}
    source_items = [it for it in source_items if str(it.get("id")) not in dropped_ids]
    platforms = sorted({str(it["properties"]["platform"]).lower() for it in source_items
                        if it.get("properties", {}).get("platform")})
    start = dt.datetime.combine(window.start, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(window.end, dt.time(23, 59, 59), tzinfo=dt.UTC)
    height, width = tile.shape
    transform = list(tile.transform)
    api = source_api_url.rstrip("/")
    dates = sorted({it["properties"]["datetime"][:10] for it in source_items})
    item_assets: dict[str, Any] = {}
    for asset in assets:
        entry: dict[str, Any] = {
            "href": asset.href,
            "type": asset.media_type,
            "title": asset.title,
            "roles": list(asset.roles),
            "file:size": asset.size,
            # multihash: 0x12 = sha2-256, 0x20 = 32 bytes
            "file:checksum": "1220" + asset.sha256,
        }
        if asset.kind == "reflectance":
            entry["eo:bands"] = [eo_band(asset.band or asset.key)]
            entry["raster:bands"] = [
                {
                    "nodata": NODATA,
                    "data_type": "uint16",
                    "scale": SCALE,
                    "offset": OFFSET,
                    "spatial_resolution": tile.resolution_m,
                    "unit": "reflectance",
                }
            ]
        else:
            entry.update(_provenance_asset(asset.kind, tile.resolution_m, asset.bands))
        entry.update(asset.fields)
        if asset.kind != "thumbnail":
            entry["proj:shape"] = [height, width]
            entry["proj:transform"] = list(transform)
        item_assets[asset.key] = entry
    links = [
        {
            "rel": "derived_from",
            "href": f"{api}/collections/{source_collection}/items/{it['id']}",
            "type": "application/geo+json",
            "title": it["id"],
        }
        for it in source_items
    ]
    if static_href:
        links.append({"rel": "alternate", "href": static_href, "type": "application/geo+json",
                      "title": "static copy"})
    links.extend(dict(link) for link in extra_links)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": sorted(EXTENSIONS.values()),
        "id": item_id,
        "collection": collection_id,
        "geometry": _geometry(tile.bbox_latlon()),
        "bbox": list(tile.bbox_latlon()),
        "properties": {
            # The middle of the window: a non-null datetime keeps stackstac and
            # odc-stac users working; the window itself is start/end_datetime.
            "datetime": _iso(start + (end - start) / 2),
            "start_datetime": _iso(start),
            "end_datetime": _iso(end),
            "created": _iso(processed_at),
            "updated": _iso(processed_at),
            "proj:code": f"EPSG:{tile.epsg}",
            "proj:bbox": list(tile.bounds),
            "proj:shape": [height, width],
            "proj:transform": transform,
            "gsd": tile.resolution_m,
            "processing:level": "L3",
            "processing:facility": "cloudfree",
            "processing:software": {"cloudfree": __version__, **(software or {})},
            "processing:datetime": _iso(processed_at),
            "processing:lineage": (
                f"{method} of {len(source_items)} Sentinel-2 L2A scenes "
                f"({len(dates)} dates, {dates[0] if dates else '-'} to "
                f"{dates[-1] if dates else '-'}) from {api}/collections/{source_collection}, "
                "cloud-masked with the SCL band."
            ),
            "processing:expression": {"format": "cloudfree", "expression": dict(parameters)},
            "cloudfree:tile_id": tile.tile_id,
            "cloudfree:method": method,
            "cloudfree:inputs_hash": digest,
            "cloudfree:source_dates": dates,
            "cloudfree:nodata_pct": round(float(nodata_pct), 3),
            # the share of pixels without a clear observation (see the docstring)
            "eo:cloud_cover": round(float(nodata_pct), 3),
            "constellation": "sentinel-2",
            **({"platform": platforms[0]} if len(platforms) == 1 else {}),
            **({"cloudfree:platforms": platforms} if platforms else {}),
            "instruments": ["msi"],
            **({"cloudfree:fill_pct": dict(fill_pct)} if fill_pct is not None else {}),
            **({"cloudfree:target_date": target_date} if target_date else {}),
            **({"cloudfree:dropped_sources": [dict(d) for d in dropped_sources]}
               if dropped_sources else {}),
            **dict(extra_properties or {}),
        },
        "links": links,
        "assets": item_assets,
    }


def _fill_classes() -> list[dict[str, Any]]:
    from cloudfree.methods import FILL_CLASSES

    return [{"value": code, "name": name, "description": text,
             "color_hint": "{:02X}{:02X}{:02X}".format(*fill_colour(name))}
            for code, (name, text) in sorted(FILL_CLASSES.items())]


def fill_colour(name: str) -> tuple[int, int, int]:
    """The RGB colour of a fill class (grey for one without its own)."""
    return FILL_COLOURS.get(name, (128, 128, 128))


def _provenance_asset(kind: str, resolution_m: float | None,
                      bands: Sequence[str] = ()) -> dict[str, Any]:
    """Description, raster:bands and classes of the per-pixel provenance assets (and of
    the corrected methods' ``uncertainty``, one band per reflectance band of ``bands``)."""
    res = {} if resolution_m is None else {"spatial_resolution": resolution_m}
    if kind == "uncertainty":
        from cloudfree.methods.corrected import UNCERTAINTY_NODATA
        from cloudfree.methods.corrected_interval import UNCERTAINTY_DESCRIPTION

        return {
            "description": f"Per band, the {UNCERTAINTY_DESCRIPTION} (split-conformal on the "
                           "residual correction's held-out pixels, by distance to the nearest "
                           "clear pixel): the true reflectance lies within the value ± this "
                           "about 90 % of the time. 0 = observed (exact).",
            "eo:bands": [eo_band(band) for band in bands],
            "raster:bands": [{"data_type": "uint16", "nodata": UNCERTAINTY_NODATA,
                              "scale": SCALE, "offset": 0.0, "unit": "reflectance", **res}
                             for _ in bands],
        }
    if kind == "clear_count":
        return {
            "description": "Number of clear (cloud-, shadow- and nodata-free) observations "
                           "per pixel in the compositing window.",
            "raster:bands": [{"data_type": "uint16", "unit": "count", **res}],
        }
    if kind == "source_date":
        return {
            "description": "Date of the observation a pixel comes from, in days since "
                           "1970-01-01; for blends (median, geomedian) the weighted mean "
                           "date of the observations blended. 0 = no observation.",
            "raster:bands": [{"data_type": "uint16", "nodata": 0, "unit": "days since 1970-01-01",
                              **res}],
        }
    if kind == "fill":
        return {
            "description": "How each pixel was filled.",
            "raster:bands": [{"data_type": "uint8", "nodata": 0, **res}],
            "classification:classes": _fill_classes(),
        }
    return {}


#: Sentinel-2's first data (2A's launch): the start of the extent before any item exists.
SENTINEL2_START = "2015-06-23T00:00:00Z"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


@dataclass(frozen=True)
class LiveItem:
    """What the collection says about one published item: its footprint, window, platforms,
    source years, resolution, gaps and CRS (:func:`list_live_items` reads only these)."""

    id: str
    bbox: tuple[float, float, float, float]
    start: str
    end: str
    platforms: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    gsd: float | None = None
    cloud_cover: float | None = None
    proj_code: str | None = None

    #: The item fields read, for the API's fields extension.
    FIELDS = ("id", "bbox", "properties.datetime", "properties.start_datetime",
              "properties.end_datetime", "properties.platform", "properties.cloudfree:platforms",
              "properties.cloudfree:source_dates", "properties.gsd", "properties.eo:cloud_cover",
              "properties.proj:code")

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> LiveItem:
        props = item.get("properties") or {}
        start = props.get("start_datetime") or props.get("datetime")
        end = props.get("end_datetime") or props.get("datetime")
        platforms = props.get("cloudfree:platforms") or (
            [props["platform"]] if props.get("platform") else [])
        years = sorted({int(str(d)[:4]) for d in props.get("cloudfree:source_dates") or []})
        bbox = list(item["bbox"])
        if len(bbox) == 6:  # 3D: drop the heights
            bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
        return cls(id=str(item["id"]), bbox=(bbox[0], bbox[1], bbox[2], bbox[3]),
                   start=str(start), end=str(end),
                   platforms=tuple(sorted(str(p).lower() for p in platforms)),
                   years=tuple(years), gsd=props.get("gsd"),
                   cloud_cover=props.get("eo:cloud_cover"), proj_code=props.get("proj:code"))


def collection_extent(items: Sequence[LiveItem]) -> dict[str, Any]:
    """The spatial and temporal extent of ``items``: the union of their bboxes and
    ``[min start_datetime, max end_datetime]``; before any item, the globe from Sentinel-2's
    first data on (true of every item to come)."""
    if not items:
        return {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[SENTINEL2_START, None]]}}
    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items),
            max(i.bbox[2] for i in items), max(i.bbox[3] for i in items)]
    starts = sorted(_parse_time(i.start) for i in items)
    ends = sorted(_parse_time(i.end) for i in items)
    return {"spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[_iso(starts[0]), _iso(ends[-1])]]}}


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _host_provider(url: str) -> dict[str, Any] | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname or parts.hostname in _LOOPBACK:
        return None  # a local stack's address tells a reader nothing
    return {"name": parts.hostname, "roles": ["host"], "url": url.rstrip("/"),
            "description": "Hosts the source Sentinel-2 L2A scenes (STAC API)."}


def attribution(years: Iterable[int] = ()) -> str:
    """``Contains modified Copernicus Sentinel data 2023-2024`` (the years of the source
    scenes), as the Copernicus Sentinel data legal notice asks."""
    ys = sorted(set(years))
    if not ys:
        return ATTRIBUTION
    span = str(ys[0]) if len(ys) == 1 else (
        f"{ys[0]}-{ys[-1]}" if ys == list(range(ys[0], ys[-1] + 1)) else ", ".join(map(str, ys)))
    return f"{ATTRIBUTION} {span}"


def build_collection(collection_id: str, *, bands: Sequence[str],
                     items: Sequence[LiveItem] = (),
                     source_api_urls: Sequence[str] = ()) -> dict[str, Any]:
    """The output collection (pure), true of the published ``items``: their extent, the
    attribution with the years of their source scenes, summaries of their platforms,
    resolutions, CRSs and ``eo:cloud_cover`` (the share of pixels with no clear
    observation); the licence (Copernicus Sentinel data legal notice) with its link, the
    providers (ESA/Copernicus as licensor and producer, the source hosts, cloudfree as
    processor), item_assets of ``bands`` and the provenance rasters."""
    item_assets: dict[str, Any] = {
        band: {
            "type": _COG,
            "roles": ["data", "reflectance"],
            "title": f"{band} surface reflectance",
            "eo:bands": [eo_band(band)],
            "raster:bands": [
                {"nodata": NODATA, "data_type": "uint16", "scale": SCALE, "offset": OFFSET,
                 "unit": "reflectance"}
            ],
        }
        for band in bands
    }
    titles = {"clear_count": "clear-observation count", "source_date": "source date",
              "fill": "fill method"}
    for kind, title in titles.items():
        item_assets[kind] = {
            "type": _COG,
            "roles": ["data", "metadata"],
            "title": title,
            **_provenance_asset(kind, None),
        }
    item_assets["uncertainty"] = {  # the corrected methods' items only
        "type": _COG,
        "roles": ["data", "metadata"],
        "title": UNCERTAINTY_TITLE,
        **_provenance_asset("uncertainty", None, bands),
    }
    item_assets["thumbnail"] = {"type": "image/png", "roles": ["thumbnail"], "title": "RGB"}
    years = sorted({y for it in items for y in it.years})
    credit = attribution(years)
    summaries: dict[str, Any] = {"constellation": ["sentinel-2"], "instruments": ["msi"]}
    platforms = sorted({p for it in items for p in it.platforms})
    if platforms:
        summaries["platform"] = platforms
    gsds = sorted({it.gsd for it in items if it.gsd is not None})
    if gsds:
        summaries["gsd"] = gsds
    codes = sorted({it.proj_code for it in items if it.proj_code})
    if codes:
        summaries["proj:code"] = codes
    covers = [float(it.cloud_cover) for it in items if it.cloud_cover is not None]
    if covers:
        summaries["eo:cloud_cover"] = {"minimum": min(covers), "maximum": max(covers)}
    summaries |= {
        "processing:level": ["L3"],
        "eo:bands": [eo_band(b) for b in bands],
        "raster:bands": [{"nodata": NODATA, "data_type": "uint16", "scale": SCALE,
                          "offset": OFFSET, "unit": "reflectance"}],
    }
    hosts = [p for p in (_host_provider(u) for u in dict.fromkeys(source_api_urls)) if p]
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": sorted({EXTENSIONS[k] for k in ("eo", "raster", "classification",
                                                            "processing", "proj")}
                                  | {ITEM_ASSETS_EXTENSION}),
        "id": collection_id,
        "title": "cloudfree mosaics",
        "description": (
            "Cloud-free Sentinel-2 L2A mosaics made by cloudfree: one item per tile and "
            "compositing window, reflectance COGs (scale 0.0001, offset -0.1, nodata 0) "
            "plus per-pixel provenance (clear-observation count, source date, fill method). "
            "An item's eo:cloud_cover is the share (%) of its pixels with no clear "
            "observation in the window (the gaps clouds, shadows and missing scenes leave), "
            f"not the cloud cover of a scene. {credit}, processed by cloudfree; Sentinel "
            "data is free and open under the Copernicus Sentinel data legal notice."
        ),
        "keywords": ["sentinel-2", "copernicus", "msi", "level-2a", "surface reflectance",
                     "cloud-free", "mosaic", "composite"],
        "license": "proprietary",
        "providers": [
            {"name": "European Space Agency (ESA), Copernicus programme of the European Union",
             "roles": ["licensor", "producer"], "url": "https://sentinels.copernicus.eu/",
             "description": f"Sentinel-2 MSI observations and their Level-2A processing. "
                            f"{credit}."},
            *hosts,
            {"name": "cloudfree", "roles": ["processor"],
             "description": f"cloud masking and compositing ({SOFTWARE})"},
        ],
        "extent": collection_extent(items),
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [
            {"rel": "license", "href": LICENSE_URL, "type": "application/pdf",
             "title": f"Copernicus Sentinel data legal notice ({credit})"},
        ],
    }


#: Links the STAC API makes itself (stac-fastapi drops stored ones): not part of the content.
_API_RELS = frozenset({"self", "item", "parent", "collection", "root", "items", "child"})


def _content(document: Mapping[str, Any]) -> dict[str, Any]:
    """A collection as stored: without the links the API infers (and its queryables)."""
    return {**document, "links": [link for link in document.get("links", [])
                                  if link.get("rel") not in _API_RELS
                                  and not str(link.get("rel", "")).endswith("/queryables")]}


def _bands_of(collection: Mapping[str, Any] | None) -> list[str]:
    return [key for key, asset in ((collection or {}).get("item_assets") or {}).items()
            if "reflectance" in (asset.get("roles") or [])]


def _hosts_of(collection: Mapping[str, Any] | None) -> list[str]:
    return [p["url"] for p in (collection or {}).get("providers") or []
            if "host" in (p.get("roles") or []) and p.get("url")]


def list_live_items(api_url: str, collection_id: str, *, token: str | None = None,
                    page_size: int = 1000) -> list[LiveItem]:
    """Every item of the collection in the API, paged through, reading only the fields of
    :class:`LiveItem` (the fields extension; an API without it answers whole items)."""
    from urllib.parse import urlencode

    url: str | None = (f"{api_url.rstrip('/')}/collections/{collection_id}/items?"
                       + urlencode({"limit": page_size, "fields": ",".join(LiveItem.FIELDS)}))
    found: dict[str, LiveItem] = {}
    seen: set[str] = set()
    while url and url not in seen:
        seen.add(url)
        page = get_json(url, token=token)
        if page is None:
            return []
        for feature in page.get("features", []):
            live = LiveItem.from_item(feature)
            found[live.id] = live
        url = next((link["href"] for link in page.get("links", []) if link.get("rel") == "next"
                    and page.get("features")), None)
    return sorted(found.values(), key=lambda it: it.id)


def _desired_collection(api_url: str, collection_id: str, existing: Mapping[str, Any] | None,
                        *, bands: Sequence[str], source_api_url: str | None,
                        token: str | None) -> tuple[dict[str, Any], list[LiveItem]]:
    items = list_live_items(api_url, collection_id, token=token) if existing else []
    all_bands = list(dict.fromkeys([*_bands_of(existing), *bands]))
    hosts = [*_hosts_of(existing), *([source_api_url] if source_api_url else [])]
    return build_collection(collection_id, bands=all_bands, items=items,
                            source_api_urls=hosts), items


def ensure_collection(api_url: str, collection_id: str, *, bands: Sequence[str],
                      token: str | None = None, source_api_url: str | None = None) -> None:
    """Create the output collection when the API lacks it; bring an existing one up to date
    (new bands' item_assets, the extent and summaries of its live items, this version's
    licence, providers and attribution) when it differs."""
    existing = get_json(f"{api_url.rstrip('/')}/collections/{collection_id}", token=token)
    desired, _ = _desired_collection(api_url, collection_id, existing, bands=bands,
                                     source_api_url=source_api_url, token=token)
    if existing is None or _content(existing) != _content(desired):
        upsert_collection(api_url, desired, token=token)


def _relative(target: str, base_dir: str) -> str:
    """``target`` relative to the folder ``base_dir`` when both are on one bucket or file
    system (``./x``, ``../../x``); else ``target`` as is."""
    from urllib.parse import urlsplit

    t, b = urlsplit(target), urlsplit(base_dir)
    if (t.scheme, t.netloc) != (b.scheme, b.netloc) or (t.scheme and not t.path):
        return target
    rel = posixpath.relpath(t.path or "/", b.path or "/")
    return rel if rel.startswith("../") else f"./{rel}"


def _folder(href: str) -> str:
    return href.rsplit("/", 1)[0]


def static_item(item: Mapping[str, Any], *, item_href: str,
                collection_href: str) -> dict[str, Any]:
    """The static copy of an API item (pure), for ``item_href`` beside its COGs: relative
    ``self``, ``root``, ``parent`` and ``collection`` links to the static ``collection.json``
    at ``collection_href``, and asset hrefs relative to the item, so the folder tree is a
    catalog that can be copied anywhere. ``derived_from`` links stay absolute: they name
    the source scenes in the source catalog."""
    here = _folder(item_href)
    to_collection = _relative(collection_href, here)
    kept = [dict(link) for link in item.get("links", [])
            if link.get("rel") not in _API_RELS
            and not (link.get("rel") == "alternate" and link.get("href") == item_href)]
    links = [
        {"rel": "self", "href": _relative(item_href, here), "type": "application/geo+json"},
        {"rel": "root", "href": to_collection, "type": "application/json"},
        {"rel": "parent", "href": to_collection, "type": "application/json"},
        {"rel": "collection", "href": to_collection, "type": "application/json"},
        *kept,
    ]
    assets = {key: {**asset, "href": _relative(str(asset["href"]), here)}
              for key, asset in (item.get("assets") or {}).items()}
    return {**item, "links": links, "assets": assets}


def static_collection(collection: Mapping[str, Any], *, collection_href: str,
                      item_hrefs: Mapping[str, str]) -> dict[str, Any]:
    """The static ``collection.json`` (pure): the API collection's content with relative
    ``self`` and ``root`` links and one relative ``item`` link per static item copy
    (``item_hrefs``: item id -> href), sorted by id."""
    here = _folder(collection_href)
    own = _relative(collection_href, here)
    links = [
        {"rel": "self", "href": own, "type": "application/json"},
        {"rel": "root", "href": own, "type": "application/json",
         "title": collection.get("title", collection["id"])},
        *[dict(link) for link in collection.get("links", []) if link.get("rel") not in _API_RELS],
        *[{"rel": "item", "href": _relative(href, here), "type": "application/geo+json",
           "title": iid} for iid, href in sorted(item_hrefs.items())],
    ]
    return {**_content(collection), "links": links}


def _list_json(root: str, fs: Any) -> list[str]:
    """Every ``.json`` under ``root`` (an ``s3://`` URL through ``fs``, or a local path),
    as URLs of the same kind, read fresh (no cached listing)."""
    from pathlib import Path

    if root.startswith("s3://"):
        path = root.removeprefix("s3://").rstrip("/")
        fs.invalidate_cache(path)
        if not fs.exists(path):
            return []
        return [f"s3://{key}" for key in fs.find(path) if key.endswith(".json")]
    local = Path(root.removeprefix("file://"))
    prefix = "file://" if root.startswith("file://") else ""
    return [f"{prefix}{p}" for p in sorted(local.rglob("*.json"))] if local.is_dir() else []


def _read(url: str, fs: Any) -> bytes | None:
    from pathlib import Path

    try:
        if url.startswith("s3://"):
            data: bytes = fs.cat(url.removeprefix("s3://"))
            return data
        return Path(url.removeprefix("file://")).read_bytes()
    except FileNotFoundError:
        return None


def _static_hrefs(api_url: str, collection_id: str, live: Sequence[LiveItem], output_root: str,
                  fs: Any, token: str | None) -> dict[str, str]:
    """The static copy of each live item, from the listing of the output root (a live item
    with two copies, the old one not yet removed: the one its API item links to)."""
    ids = {it.id for it in live}
    found: dict[str, list[str]] = {}
    for url in _list_json(output_root, fs):
        name = url.rsplit("/", 1)[1].removesuffix(".json")
        if name in ids and _folder(url).rstrip("/") != output_root.rstrip("/"):
            found.setdefault(name, []).append(url)
    hrefs: dict[str, str] = {}
    for iid, urls in found.items():
        if len(urls) > 1:
            item = published_item(api_url, collection_id, iid, token=token) or {}
            alternates = {link.get("href") for link in item.get("links", [])
                          if link.get("rel") == "alternate"}
            urls = [u for u in urls if u in alternates] or []
        if len(urls) == 1:
            hrefs[iid] = urls[0]
    return hrefs


def refresh_collection(api_url: str, collection_id: str, *, output_root: str, fs: Any,
                       bands: Sequence[str] = (), source_api_url: str | None = None,
                       token: str | None = None, attempts: int = 5) -> dict[str, Any]:
    """Make the API collection and the static ``{output_root}/collection.json`` true of the
    live items: rebuild both from the API's listing of the items (extent, summaries,
    attribution) and the output root's listing of their static copies (the ``item`` links),
    PUT the collection when it changed, write ``collection.json``. Call it after each
    publish, and after removing items or prefixes. Returns the static collection.

    Concurrent publishers: each rebuilds from listings taken after its own item is live,
    then reads back what it wrote and lists again, and rebuilds until both agree (at most
    ``attempts`` times). The last writer's documents then hold every item that was live
    when it last listed, so two tiles publishing at once both end up listed, whichever
    writes last; if publishers keep racing past ``attempts`` a warning says so and the next
    refresh (the next publish, or a run's final one) fixes it. An item removed since (a
    replaced prefix, ``cloudfree gc``) is gone from the listings and so from both."""
    from cloudfree.cog import put

    collection_href = f"{output_root.rstrip('/')}/{STATIC_COLLECTION}"
    url = f"{api_url.rstrip('/')}/collections/{collection_id}"
    static: dict[str, Any] = {}
    for _attempt in range(max(1, attempts)):
        existing = get_json(url, token=token)
        desired, live = _desired_collection(
            api_url, collection_id, existing or {"id": collection_id}, bands=bands,
            source_api_url=source_api_url, token=token)
        if existing is None or _content(existing) != _content(desired):
            upsert_collection(api_url, desired, token=token)
        hrefs = _static_hrefs(api_url, collection_id, live, output_root, fs, token)
        static = static_collection(desired, collection_href=collection_href, item_hrefs=hrefs)
        data = json.dumps(static, indent=1).encode()
        put(data, collection_href, fs=fs)
        again = list_live_items(api_url, collection_id, token=token)
        if again == live and _read(collection_href, fs) == data:
            return static
    log.warning("collection %s: other publishers kept changing it during %d refreshes; "
                "%s may miss an item until the next refresh", collection_id, attempts,
                collection_href)
    return static


def merge_extent(api_url: str, collection_id: str, item: Mapping[str, Any], *,
                 token: str | None = None) -> bool:
    """Grow the API collection's extent to cover ``item``: one GET and at most one PUT,
    whatever the collection's size. What each tile of a run does on publishing (the
    extent is true as each item goes live); the run's end then rebuilds the collection
    whole (:func:`refresh_collection`), which also shrinks it after removals and settles
    the case of two tiles merging at once (one growth may be lost in between). Returns
    whether it changed the collection."""
    url = f"{api_url.rstrip('/')}/collections/{collection_id}"
    existing = get_json(url, token=token)
    if existing is None:
        return False
    mine = LiveItem.from_item(item)
    extent = existing.get("extent") or {}
    if extent == collection_extent([]):  # no item yet: the extent becomes this item's
        merged = collection_extent([mine])
    else:
        box = ((extent.get("spatial") or {}).get("bbox") or [list(mine.bbox)])[0]
        interval = ((extent.get("temporal") or {}).get("interval") or [[None, None]])[0]
        so_far = LiveItem(id="", bbox=(float(box[0]), float(box[1]), float(box[2]),
                                       float(box[3])),
                          start=str(interval[0] or mine.start), end=str(interval[1] or mine.end))
        merged = collection_extent([so_far, mine])
    if merged == extent:
        return False
    upsert_collection(api_url, {**existing, "extent": merged}, token=token)
    return True


def published_item(api_url: str, collection_id: str, item_id: str, *,
                   token: str | None = None) -> dict[str, Any] | None:
    """The live item, or ``None`` when the API has none by that id."""
    return get_json(f"{api_url.rstrip('/')}/collections/{collection_id}/items/{item_id}",
                    token=token)


def publish_item(api_url: str, item: Mapping[str, Any], *, token: str | None = None) -> None:
    """Upsert the item: the last step, after every file it points at exists."""
    upsert_item(api_url, dict(item), token=token)
