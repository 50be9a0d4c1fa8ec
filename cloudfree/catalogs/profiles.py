"""Catalog profiles: which STAC catalog an item comes from, and how its assets are keyed.

A :class:`Profile` describes one public Sentinel-2 L2A catalog: the collection ids it
serves, the hosts that identify it (in the API URL, the item's links or its asset hrefs),
the asset key of each cloudfree band, the key of the scene classification (SCL), the
default href signer, and the Earth Search harmonisation flag it carries (if any).

:func:`choose_profile` picks the profile of an item:

1. ``source`` (``--source``), a profile name, wins; an unknown name is an
   :class:`~cloudfree.errors.InvalidParameterError` listing the profiles.
2. The item's ``collection``: a collection served by one profile decides
   (``sentinel-2-c1-l2a`` -> earth-search-c1, ``sentinel-s2-l2a-cogs`` ->
   earth-search-v0). ``sentinel-2-l2a`` is served by Earth Search v1, the Planetary
   Computer and CDSE alike, so the host decides among them: first in ``api_url``, then in
   the item's link hrefs, then in its asset hrefs.
3. Otherwise the ``generic`` profile, which finds bands by ``eo:bands`` (the Sentinel-2
   band id, then an unambiguous ``common_name``) and the SCL by key or title; its ``why``
   starts with ``"guessed from eo:bands/raster:bands"`` and callers warn
   (:class:`~cloudfree.errors.CloudFreeWarning`).

Landsat and HLS items are refused before any of this
(:class:`~cloudfree.errors.UnsupportedItemError`): no profile handles them.

:func:`resolve_bands` parses ``--bands``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cloudfree.errors import InvalidParameterError, UnsupportedItemError
from cloudfree.sentinel2 import BANDS

__all__ = ["PROFILES", "Profile", "choose_profile", "resolve_bands", "unsupported_kind"]

#: ``why`` of the generic fallback starts with this (callers warn when they see it).
GUESSED = "guessed from eo:bands/raster:bands"


@dataclass(frozen=True)
class Profile:
    """One STAC catalog's layout of Sentinel-2 L2A items."""

    name: str
    title: str
    collections: tuple[str, ...]
    hosts: tuple[str, ...]
    asset_keys: Mapping[str, str] = field(hash=False)  # a read-only mapping
    scl_key: str | None
    signer: str
    boa_flag: str | None
    tested: bool
    notes: str


_COG_KEYS = MappingProxyType({name: name for name in BANDS})
_ID_KEYS = MappingProxyType({name: info.s2_name for name in BANDS for info in (BANDS[name],)})
_CDSE_RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20,
             "B8A": 20, "B11": 20, "B12": 20, "B01": 60, "B09": 60}
_CDSE_KEYS = MappingProxyType({name: f"{info.s2_name}_{_CDSE_RES[info.s2_name]}m"
                               for name, info in BANDS.items()})

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile(
        name="earth-search-v1", title="Earth Search v1 (Element84), sentinel-2-l2a",
        collections=("sentinel-2-l2a",),
        hosts=("earth-search.aws.element84.com/v1", "sentinel-cogs"),
        asset_keys=_COG_KEYS, scl_key="scl", signer="none",
        boa_flag="earthsearch:boa_offset_applied", tested=True,
        notes="COGs converted from ESA's JP2. earthsearch:boa_offset_applied=true means "
              "Element84 added BOA_ADD_OFFSET into the DNs (reflectance = DN * 1e-4) although "
              "raster:bands still says offset -0.1 (Element84/earth-search#9). Some 2022/2025 "
              "scenes are mislabelled (earth-search#66, #71); prefer sentinel-2-c1-l2a.",
    ),
    Profile(
        name="earth-search-c1", title="Earth Search v1 (Element84), sentinel-2-c1-l2a",
        collections=("sentinel-2-c1-l2a",),
        hosts=("earth-search.aws.element84.com/v1", "e84-earth-search-sentinel-data"),
        asset_keys=_COG_KEYS, scl_key="scl", signer="none", boa_flag=None, tested=True,
        notes="ESA Collection-1 reprocessing (baseline >= 05.00); raster:bands scale/offset "
              "are authoritative (offset -0.1 throughout).",
    ),
    Profile(
        name="earth-search-v0", title="Earth Search v0 (Element84), sentinel-s2-l2a-cogs",
        collections=("sentinel-s2-l2a-cogs",),
        hosts=("earth-search.aws.element84.com/v0", "sentinel-cogs"),
        asset_keys=_ID_KEYS, scl_key="SCL", signer="none",
        boa_flag="sentinel:boa_offset_applied", tested=True,
        notes="Legacy STAC 1.0.0-beta items without raster:bands; the baseline is in "
              "sentinel:processing_baseline and the harmonisation flag in "
              "sentinel:boa_offset_applied (both only on newer items).",
    ),
    Profile(
        name="planetary-computer", title="Microsoft Planetary Computer, sentinel-2-l2a",
        collections=("sentinel-2-l2a",),
        hosts=("planetarycomputer.microsoft.com", "blob.core.windows.net"),
        asset_keys=_ID_KEYS, scl_key="SCL", signer="planetary-computer", boa_flag=None,
        tested=True,
        notes="ESA's data as COGs, DNs as ESA wrote them; no raster:bands, so the decoding "
              "follows s2:processing_baseline (microsoft/PlanetaryComputer#349). Blob hrefs "
              "need a SAS token (the planetary-computer signer).",
    ),
    Profile(
        name="cdse", title="Copernicus Data Space Ecosystem STAC, sentinel-2-l2a",
        collections=("sentinel-2-l2a",),
        hosts=("stac.dataspace.copernicus.eu", "dataspace.copernicus.eu", "s3://eodata/"),
        asset_keys=_CDSE_KEYS, scl_key="SCL_20m", signer="none", boa_flag=None, tested=False,
        notes="Never run against CDSE here (tested=False). Its STAC 1.1 catalogue is "
              "https://stac.dataspace.copernicus.eu/v1 (documentation.dataspace.copernicus.eu"
              "/APIs/STAC.html; the legacy catalogue.dataspace.copernicus.eu/stac is "
              "deprecated from 2025-11-17). The documentation pages found do not list the "
              "asset keys: B04_10m, B8A_20m, B01_60m, SCL_20m (band and native resolution, "
              "ESA's JP2 files, hrefs s3://eodata/..., needing CDSE S3 credentials) are the "
              "keys CDSE clients use. CDSE support (forum.dataspace.copernicus.eu/t/"
              "stac-raster-extension/5005): the assets carry raster:scale/raster:offset "
              "(raster extension v2), which decide the decoding; else the baseline.",
    ),
    Profile(
        name="generic", title="Any other STAC catalog (guessed from eo:bands)",
        collections=(), hosts=(), asset_keys=MappingProxyType({}), scl_key=None,
        signer="none", boa_flag=None, tested=True,
        notes="Bands found by eo:bands name (B02...) then unambiguous common_name; SCL by "
              "key scl/SCL, or a title/role naming the scene classification.",
    ),
)}

_KNOWN = tuple(p for p in PROFILES.values() if p.name != "generic")


# ----------------------------------------------------------------------------- bands

#: Unambiguous STAC eo ``common_name`` -> cloudfree band (``rededge`` names three bands).
COMMON_NAMES: dict[str, str] = {name: name for name in BANDS if not name.startswith("rededge")}


def _band_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name, info in BANDS.items():
        aliases[name.lower()] = name
        aliases[info.s2_name.lower()] = name  # b04, b8a
        aliases[re.sub(r"^b0", "b", info.s2_name.lower())] = name  # b4
    aliases.update({common.lower(): name for common, name in COMMON_NAMES.items()})
    return aliases


_ALIASES = _band_aliases()


def _known_bands() -> str:
    return ", ".join(f"{name} ({info.s2_name})" for name, info in BANDS.items())


def resolve_bands(names: str | Sequence[str]) -> tuple[str, ...]:
    """``--bands`` to cloudfree band names, in the order given, duplicates dropped.

    Accepts a comma-separated string or a list of cloudfree names (``blue`` ...
    ``swir22``), Sentinel-2 band ids (``B02``, ``B8A``, ``b8a``, ``B4``) and unambiguous
    common names (``nir``, ``red``, ``swir16`` ...).
    """
    raw = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for entry in raw:
        token = str(entry).strip()
        if not token:
            continue
        key = token.lower()
        if key == "scl":
            raise InvalidParameterError(
                "bands", token, "the SCL is always read for the cloud mask; list only "
                f"reflectance bands, known: {_known_bands()}")
        if key == "rededge":
            raise InvalidParameterError(
                "bands", token, "'rededge' names three bands; give rededge1 (B05), "
                "rededge2 (B06) or rededge3 (B07)")
        band = _ALIASES.get(key)
        if band is None:
            raise InvalidParameterError(
                "bands", token, f"not a Sentinel-2 L2A band; known: {_known_bands()}")
        if band not in out:
            out.append(band)
    if not out:
        raise InvalidParameterError("bands", names, f"give at least one band; known: "
                                    f"{_known_bands()}")
    return tuple(out)


# ----------------------------------------------------------------------------- items


def _props(item: Mapping[str, Any]) -> Mapping[str, Any]:
    props = item.get("properties")
    return props if isinstance(props, Mapping) else {}


def _assets(item: Mapping[str, Any]) -> Mapping[str, Any]:
    assets = item.get("assets")
    return assets if isinstance(assets, Mapping) else {}


def item_id(item: Mapping[str, Any]) -> str:
    return str(item.get("id", "<no id>"))


def unsupported_kind(item: Mapping[str, Any]) -> str | None:
    """``"Landsat"`` or ``"HLS"`` when ``item`` is one of those, else None."""
    props = _props(item)
    collection = str(item.get("collection") or "").lower()
    platform = str(props.get("platform") or "").lower()
    if (platform.startswith("landsat") or collection.startswith("landsat")
            or any(str(k).startswith("landsat:") for k in props)):
        return "Landsat"
    if collection.startswith("hls"):
        return "HLS"
    s2_props = any(str(k).startswith(("s2:", "sentinel:")) for k in props)
    if not s2_props and not platform.startswith("sentinel"):
        keys = set(_assets(item))
        if "Fmask" in keys or {"B01", "B02", "B03", "B04"} <= keys:
            return "HLS"
    return None


def _link_hrefs(item: Mapping[str, Any]) -> list[str]:
    links = item.get("links")
    if not isinstance(links, list):
        return []
    return [str(link.get("href", "")) for link in links if isinstance(link, Mapping)]


def _asset_hrefs(item: Mapping[str, Any]) -> list[str]:
    return [str(a.get("href", "")) for a in _assets(item).values() if isinstance(a, Mapping)]


def _by_host(item: Mapping[str, Any], candidates: Sequence[Profile],
             api_url: str | None) -> tuple[Profile, str] | None:
    places = (("--api-url/STAC API", [api_url] if api_url else []),
              ("item links", _link_hrefs(item)), ("asset hrefs", _asset_hrefs(item)))
    for where, hrefs in places:
        for profile in candidates:
            for host in profile.hosts:
                if any(host in href for href in hrefs):
                    return profile, f"{host} in {where}"
    return None


def choose_profile(item: Mapping[str, Any], *, source: str | None = None,
                   api_url: str | None = None) -> tuple[Profile, str]:
    """The profile of ``item`` and why it was chosen (see the module docstring).

    Raises:
        UnsupportedItemError: a Landsat or HLS item.
        InvalidParameterError: ``source`` names no profile.
    """
    kind = unsupported_kind(item)
    if kind is not None:
        raise UnsupportedItemError(item_id(item), kind)
    if source is not None:
        profile = PROFILES.get(source.strip().lower())
        if profile is None:
            raise InvalidParameterError(
                "source", source, f"not a catalog profile; known: {', '.join(PROFILES)}")
        return profile, f"--source {profile.name}"
    collection = item.get("collection")
    if collection:
        candidates = [p for p in _KNOWN if collection in p.collections]
        if len(candidates) == 1:
            return candidates[0], f"collection {collection!r}"
    else:
        candidates = list(_KNOWN)
    found = _by_host(item, candidates, api_url)
    if found is not None:
        profile, where = found
        prefix = f"collection {collection!r}, " if collection else "no collection, "
        return profile, prefix + where
    served = (f"collection {collection!r} with no known host" if candidates and collection
              else f"unknown collection {collection!r}" if collection
              else "no collection and no known host")
    return PROFILES["generic"], f"{GUESSED} ({served})"
