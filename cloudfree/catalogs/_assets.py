"""Finding a band's asset in an item, and the item's EPSG code.

A band's asset is, in this order:

1. the profile's key for the band (``red`` on Earth Search v1, ``B04`` on the Planetary
   Computer and Earth Search v0, ``B04_10m`` on CDSE), when the item has it;
2. the single-band asset whose ``eo:bands[0].name`` (STAC 1.1: ``bands[0].name``) is the band's Sentinel-2 id (``B04``)
   or cloudfree name (``red``);
3. the single-band asset whose ``eo:bands[0].common_name`` (``eo:common_name``) is the band's unambiguous common
   name (none for the three red-edge bands, whose common name is ``rededge``);
4. generic profile only: the asset keyed by the cloudfree name or the Sentinel-2 id, in any
   case.

``*-jp2`` assets (ESA's JPEG2000 originals beside Earth Search's COGs) are never picked by
rules 2-4. The SCL is the profile's ``scl_key``, else an asset keyed ``scl``/``SCL``
(``SCL_20m``...), else one whose title names the scene classification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cloudfree.catalogs.profiles import COMMON_NAMES, Profile, item_id
from cloudfree.errors import UnknownAssetError
from cloudfree.sentinel2 import BANDS

__all__ = ["find_band_asset", "find_scl_asset", "item_epsg", "parse_epsg"]


def _assets(item: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    assets = item.get("assets") or {}
    return {str(k): v for k, v in assets.items() if isinstance(v, Mapping)}


def _is_jp2(key: str) -> bool:
    """Earth Search's ``*-jp2`` duplicates of its COG assets (ESA's originals)."""
    return key.lower().endswith("-jp2")


def _single_band(asset: Mapping[str, Any]) -> dict[str, str] | None:
    """{"name", "common_name"} of a single-band asset (``eo:bands``, or STAC 1.1 ``bands``
    with ``eo:common_name``), else None."""
    for field, common in (("eo:bands", "common_name"), ("bands", "eo:common_name")):
        bands = asset.get(field)
        if isinstance(bands, list) and len(bands) == 1 and isinstance(bands[0], Mapping):
            return {"name": str(bands[0].get("name", "")),
                    "common_name": str(bands[0].get(common, ""))}
    return None


def _unique(matches: list[str]) -> str | None:
    return matches[0] if len(matches) == 1 else None


def find_band_asset(item: Mapping[str, Any], band: str,
                    profile: Profile) -> tuple[str, Mapping[str, Any]]:
    """(asset key, asset) of cloudfree ``band`` in ``item``.

    Raises:
        UnknownAssetError: no asset holds the band.
    """
    assets = _assets(item)
    s2_id = BANDS[band].s2_name
    key = profile.asset_keys.get(band)
    if key is not None and key in assets:
        return key, assets[key]
    eo = {k: b for k, a in assets.items() if not _is_jp2(k)
          for b in (_single_band(a),) if b is not None}
    names = {s2_id.lower(), band.lower()}
    found = _unique([k for k, b in eo.items() if b["name"].lower() in names])
    common = next((c for c, name in COMMON_NAMES.items() if name == band), None)
    if found is None and common is not None:
        found = _unique([k for k, b in eo.items() if b["common_name"] == common])
    if found is None and profile.name == "generic":
        found = _unique([k for k in assets if k.lower() in names])
    if found is not None:
        return found, assets[found]
    looked = (f"asset key {key!r}, " if key else "") + (
        f"an asset whose eo:bands name is {s2_id!r} or {band!r}"
        + (f" or common_name {common!r}" if common else ""))
    raise UnknownAssetError(item_id(item), band, looked, list(assets))


def find_scl_asset(item: Mapping[str, Any], profile: Profile) -> tuple[str, Mapping[str, Any]]:
    """(asset key, asset) of the scene classification (SCL) of ``item``.

    Raises:
        UnknownAssetError: the item has no SCL asset.
    """
    assets = _assets(item)
    if profile.scl_key and profile.scl_key in assets:
        return profile.scl_key, assets[profile.scl_key]
    found = _unique([k for k in assets if re.fullmatch(r"scl(_\d+m)?", k.lower())])
    if found is None:
        found = _unique([k for k, a in assets.items() if not _is_jp2(k)
                         and "scene classification" in str(a.get("title", "")).lower()])
    if found is not None:
        return found, assets[found]
    looked = (f"asset key {profile.scl_key!r}, " if profile.scl_key else "") + (
        "a key scl/SCL, or a title naming the scene classification")
    raise UnknownAssetError(item_id(item), "scl", looked, list(assets))


def parse_epsg(value: object) -> int | None:
    """An EPSG code from ``proj:epsg`` (int) or ``proj:code`` (``"EPSG:32633"``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(?:EPSG:)?(\d+)", str(value).strip(), flags=re.IGNORECASE)
    return int(match[1]) if match else None


def _epsg_of(mapping: Mapping[str, Any]) -> int | None:
    return parse_epsg(mapping.get("proj:epsg")) or parse_epsg(mapping.get("proj:code"))


def item_epsg(item: Mapping[str, Any], keys: Sequence[str] = ()) -> int | None:
    """The item's EPSG code (``proj:epsg`` or ``proj:code``), else the first of the assets
    ``keys`` that has one."""
    found = _epsg_of(item.get("properties") or {})
    assets = _assets(item)
    for key in keys:
        if found is not None:
            break
        if key in assets:
            found = _epsg_of(assets[key])
    return found
