"""How the digital numbers (DNs) of each Sentinel-2 L2A asset become reflectance.

``reflectance = DN * scale + offset``. ESA's processing baseline 04.00 (products acquired
from 2022-01-25) added ``BOA_ADD_OFFSET`` = -1000 to the L2A DNs, so the same reflectance
reads ``DN * 1e-4 - 0.1`` from then on, ``DN * 1e-4`` before. Catalogs describe this in
different, sometimes contradictory ways. :func:`decode_item` decides per item and per band
asset, by the first rule that applies:

1. **Earth Search harmonisation flag** (profiles earth-search-v1:
   ``earthsearch:boa_offset_applied``, earth-search-v0: ``sentinel:boa_offset_applied``;
   the generic profile honours either). ``true`` means Element84 already added the offset
   into the COG's DNs ("harmonised"): scale 1e-4 (or raster:bands' scale), **offset 0**,
   even though v1 items still declare ``raster:bands`` offset -0.1 on those assets. That
   field is stale there: an Element84 maintainer in Element84/earth-search#9 ("the offset
   property may be incorrectly set to -0.1 even when it has been applied but I think the
   boa_offset_applied is the truth"); cirrus-geo/cirrus-earth-search#21 and #26 (new scenes
   have the offset applied, their DNs differ from ESA's JP2 by exactly 1000);
   microsoft/PlanetaryComputer#349. The flag concerns the COG assets only, never the
   ``*-jp2`` assets (ESA's originals), which cloudfree does not read. ``false`` or absent:
   the next rules decide. Known caveat: Element84 has mislabelled some 2022/2025 scenes
   (Element84/earth-search#66, #71: flag false while the DNs are harmonised);
   :func:`caveats` flags Earth Search ``sentinel-2-l2a`` items with baseline >= 04.00 and
   the flag false, and :func:`~cloudfree.catalogs.prepare_items` warns, pointing users to
   ``sentinel-2-c1-l2a``.
2. **The asset's declared scale/offset**: ``raster:bands[0]`` ``scale``/``offset``
   (raster extension v1), else ``raster:scale``/``raster:offset`` on the asset or on its
   ``bands[0]`` (STAC 1.1, raster extension v2: CDSE), when a scale is given (a missing
   offset then means 0). Earth Search ``sentinel-2-c1-l2a`` items decode here.
3. **The processing baseline** ``s2:processing_baseline`` (or v0's
   ``sentinel:processing_baseline``, or ``processing:version``), compared as numbers
   (05.11 > 04.00): >= 04.00 -> scale 1e-4, offset -0.1 (the DNs carry +1000); < 04.00 ->
   scale 1e-4, offset 0. Planetary Computer items decode here (they carry no
   raster:bands and the DNs are ESA's).
4. **Acquired before 2022-01-25, no baseline given** -> scale 1e-4, offset 0, for items of a
   known profile only (not the generic one). ESA introduced the offset with baseline 04.00
   on 2022-01-25, and no product acquired earlier was processed with >= 04.00 until the
   Collection-1 reprocessing, whose items carry their own baseline >= 05.00. Old Earth
   Search v0 items (no baseline, no flag) decode here.
5. ``--assume-decoding`` (``assume``): the user's statement for items that none of the rules
   above decides: ``"scale=0.0001,offset=-0.1"``, or a preset (:data:`PRESETS`:
   ``"baseline>=04.00"``, ``"baseline<04.00"``, ``"harmonized"``). Recorded as the source.
6. Otherwise the item is undecodable: :class:`~cloudfree.errors.UndecodableItemError`
   names it and says to pass ``--assume-decoding``.

The SCL asset is never rescaled (scale 1, offset 0). cloudfree's own output encoding stays
:data:`cloudfree.sentinel2.SCALE` / :data:`~cloudfree.sentinel2.OFFSET` (1e-4, -0.1).
Every decision is recorded, with its source, in :class:`SceneDecoding` (the
``cloudfree:decoding`` property of a prepared item, and ``plan --json``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudfree.catalogs._assets import find_band_asset, find_scl_asset, item_epsg
from cloudfree.catalogs.profiles import (
    PROFILES,
    Profile,
    choose_profile,
    item_id,
    resolve_bands,
)
from cloudfree.errors import InvalidParameterError, UndecodableItemError

__all__ = ["PRESETS", "BandDecoding", "SceneDecoding", "caveats", "decode_item",
           "decoding_table", "parse_assume"]

#: The L2A scale of every baseline.
L2A_SCALE = 0.0001
#: First acquisition date processed with baseline 04.00 (BOA_ADD_OFFSET introduced).
OFFSET_START = dt.date(2022, 1, 25)
#: Item properties that hold the processing baseline, in order of preference.
BASELINE_PROPS = ("s2:processing_baseline", "sentinel:processing_baseline",
                  "processing:version")
#: Both Earth Search harmonisation flags (the generic profile honours either).
BOA_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
#: Named ``--assume-decoding`` values -> (scale, offset).
PRESETS: dict[str, tuple[float, float]] = {
    "baseline>=04.00": (L2A_SCALE, -0.1),
    "baseline<04.00": (L2A_SCALE, 0.0),
    "harmonized": (L2A_SCALE, 0.0),
    "harmonised": (L2A_SCALE, 0.0),
}
#: Key of the decoding record in a prepared item's properties.
DECODING_PROPERTY = "cloudfree:decoding"


@dataclass(frozen=True)
class BandDecoding:
    """How one band asset of one item decodes, and why."""

    band: str
    asset_key: str
    scale: float
    offset: float
    source: str


@dataclass(frozen=True)
class SceneDecoding:
    """The decoding of one item: its profile and, per band (then ``scl``), the asset read."""

    item_id: str
    profile: str
    profile_why: str
    baseline: str | None
    datetime: str
    epsg: int | None
    bands: tuple[BandDecoding, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``plan --json``, the ``cloudfree:decoding`` property)."""
        return {
            "item_id": self.item_id, "profile": self.profile, "profile_why": self.profile_why,
            "baseline": self.baseline, "datetime": self.datetime, "epsg": self.epsg,
            "bands": [{"band": b.band, "asset_key": b.asset_key, "scale": b.scale,
                       "offset": b.offset, "source": b.source} for b in self.bands],
        }


# ----------------------------------------------------------------------------- rules


def parse_assume(assume: str) -> tuple[float, float, str]:
    """``--assume-decoding`` -> (scale, offset, source)."""
    text = assume.strip().lower().replace(" ", "")
    if text in PRESETS:
        scale, offset = PRESETS[text]
        return scale, offset, f"--assume-decoding {text}"
    fields: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        try:
            if name not in ("scale", "offset") or name in fields:
                raise ValueError(name)
            fields[name] = float(value)
        except ValueError:
            fields.clear()
            break
    if "scale" not in fields:
        raise InvalidParameterError(
            "--assume-decoding", assume, "give 'scale=S,offset=O' (offset defaults to 0), "
            f"e.g. 'scale=0.0001,offset=-0.1', or one of: {', '.join(PRESETS)}")
    scale, offset = fields["scale"], fields.get("offset", 0.0)
    return scale, offset, f"--assume-decoding scale={scale:g},offset={offset:g}"


def _baseline(props: Mapping[str, Any]) -> tuple[str, str, tuple[int, int] | None] | None:
    """(property, raw value, (major, minor) or None when unparsable), or None if absent."""
    for prop in BASELINE_PROPS:
        value = props.get(prop)
        if value is None or value == "":
            continue
        text = str(value).strip()
        match = re.fullmatch(r"[A-Za-z]?0*(\d+)\.(\d+)", text) or re.fullmatch(
            r"[Nn](\d\d)(\d\d)", text)
        return prop, text, (int(match[1]), int(match[2])) if match else None
    return None


def _flag(props: Mapping[str, Any], profile: Profile) -> tuple[str, bool] | None:
    names = (profile.boa_flag,) if profile.boa_flag else (
        BOA_FLAGS if profile.name == "generic" else ())
    for name in names:
        if name in props:
            value = props[name]
            return name, value is True or str(value).strip().lower() == "true"
    return None


def _acquired(props: Mapping[str, Any]) -> dt.date | None:
    value = props.get("datetime") or props.get("start_datetime")
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _raster_band(asset: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """(scale, offset, source) declared on ``asset``: ``raster:bands[0]`` (raster extension
    v1), else ``raster:scale``/``raster:offset`` on the asset or its ``bands[0]`` (STAC 1.1,
    raster extension v2, as CDSE writes them). None when no scale is declared."""
    places: list[tuple[object, str, str, str]] = []
    bands = asset.get("raster:bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], Mapping):
        places.append((bands[0], "scale", "offset", "raster:bands"))
    places.append((asset, "raster:scale", "raster:offset", "raster:scale/raster:offset"))
    bands = asset.get("bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], Mapping):
        places.append((bands[0], "raster:scale", "raster:offset",
                       "bands[0] raster:scale/raster:offset"))
    for where, scale_key, offset_key, source in places:
        if not isinstance(where, Mapping) or where.get(scale_key) is None:
            continue
        offset = where.get(offset_key)
        return float(where[scale_key]), 0.0 if offset is None else float(offset), source
    return None


def _decode_band(band: str, key: str, asset: Mapping[str, Any], props: Mapping[str, Any],
                 profile: Profile, assumed: tuple[float, float, str] | None,
                 ident: str) -> BandDecoding:
    raster = _raster_band(asset)
    flag = _flag(props, profile)
    jp2 = key.endswith("-jp2") or "jp2" in str(asset.get("type", ""))
    if flag is not None and flag[1] and not jp2:
        scale = raster[0] if raster else L2A_SCALE
        stale = (f"; {raster[2]} offset {raster[1]:g} ignored" if raster and raster[1]
                 else "")
        return BandDecoding(band, key, scale, 0.0, f"{flag[0]}=true (DNs harmonised{stale})")
    if raster is not None:
        return BandDecoding(band, key, raster[0], raster[1], raster[2])
    baseline = _baseline(props)
    prop, text, number = baseline if baseline is not None else ("", "", None)
    if number is not None:
        if number >= (4, 0):
            return BandDecoding(band, key, L2A_SCALE, -0.1, f"{prop} {text} >= 04.00")
        return BandDecoding(band, key, L2A_SCALE, 0.0, f"{prop} {text} < 04.00")
    acquired = _acquired(props)
    if (baseline is None and profile.name != "generic" and acquired is not None
            and acquired < OFFSET_START):
        return BandDecoding(band, key, L2A_SCALE, 0.0,
                            "acquired before 2022-01-25 (baseline 04.00 start), "
                            "no baseline given")
    if assumed is not None:
        return BandDecoding(band, key, assumed[0], assumed[1], assumed[2])
    reasons = [f"asset {key!r} declares no scale (raster:bands or raster:scale)"]
    if flag is None:
        reasons.append("no boa_offset_applied flag")
    reasons.append("no processing baseline" if baseline is None
                   else f"unreadable processing baseline {baseline[0]}={baseline[1]!r}")
    if acquired is None:
        reasons.append("no readable datetime")
    elif acquired >= OFFSET_START:
        reasons.append(f"acquired {acquired} (on or after 2022-01-25, when the offset began)")
    if profile.name == "generic":
        reasons.append("and the catalog profile is guessed (use --source to name it)")
    raise UndecodableItemError(ident, ", ".join(reasons))


def decode_item(item: Mapping[str, Any], bands: Sequence[str], *, source: str | None = None,
                api_url: str | None = None, assume: str | None = None,
                scl: bool = True) -> SceneDecoding:
    """Decide, for each of ``bands`` and the SCL (unless ``scl`` is False), which asset of
    ``item`` to read and how its DNs decode (see the module docstring for the rules).

    Raises:
        UnsupportedItemError: a Landsat or HLS item.
        UnknownAssetError: a band (or the SCL) has no asset in the item.
        UndecodableItemError: no rule decides a band's scale/offset.
        InvalidParameterError: bad ``bands``, ``source`` or ``assume``.
    """
    wanted = resolve_bands(bands) if len(bands) else ()
    profile, why = choose_profile(item, source=source, api_url=api_url)
    assumed = parse_assume(assume) if assume is not None else None
    props = item.get("properties") or {}
    ident = item_id(item)
    decoded = []
    for band in wanted:
        key, asset = find_band_asset(item, band, profile)
        decoded.append(_decode_band(band, key, asset, props, profile, assumed, ident))
    if scl:
        scl_key, _ = find_scl_asset(item, profile)
        decoded.append(BandDecoding("scl", scl_key, 1.0, 0.0, "SCL classes (never rescaled)"))
    baseline = _baseline(props)
    return SceneDecoding(
        item_id=ident, profile=profile.name, profile_why=why,
        baseline=baseline[1] if baseline else None,
        datetime=str(props.get("datetime") or props.get("start_datetime") or ""),
        epsg=item_epsg(item, [b.asset_key for b in decoded]), bands=tuple(decoded))


def caveats(item: Mapping[str, Any], scene: SceneDecoding) -> list[str]:
    """Known doubts about a decoding (one line each; empty when none)."""
    props = item.get("properties") or {}
    baseline = _baseline(props)
    flag = _flag(props, PROFILES["earth-search-v1"])
    if (scene.profile == "earth-search-v1" and flag is not None and not flag[1]
            and baseline is not None and baseline[2] is not None and baseline[2] >= (4, 0)):
        return ["Earth Search sentinel-2-l2a items with processing baseline >= 04.00 and "
                "earthsearch:boa_offset_applied=false are decoded with offset -0.1 as their "
                "metadata says, but Element84 has mislabelled some 2022/2025 scenes whose "
                "DNs are already harmonised (Element84/earth-search#66, #71); prefer the "
                "collection sentinel-2-c1-l2a"]
    return []


def decoding_table(item: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """band -> (scale, offset) of a prepared item (its ``cloudfree:decoding`` property)."""
    record = (item.get("properties") or {}).get(DECODING_PROPERTY)
    if not isinstance(record, Mapping) or not isinstance(record.get("bands"), list):
        raise UndecodableItemError(
            item_id(item), f"it has no {DECODING_PROPERTY} property; prepare it with "
            "cloudfree.catalogs.prepare_items first")
    return {str(b["band"]): (float(b["scale"]), float(b["offset"])) for b in record["bands"]}
