"""Preparing catalog items for the cube: decoded, re-keyed, signed copies.

:func:`prepare_items` turns items of any supported catalog into one shape the rest of
cloudfree reads: assets keyed by cloudfree band name (``red`` ...) plus ``scl``, hrefs
signed, ``proj:epsg`` present (stackstac 0.5 reads only ``proj:epsg``, while newer items
carry ``proj:code``), and the decoding of every band in the ``cloudfree:decoding`` property
(:meth:`~cloudfree.catalogs.SceneDecoding.as_dict`), which
:func:`~cloudfree.catalogs.decoding_table` reads back.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cloudfree.catalogs._assets import parse_epsg
from cloudfree.catalogs.decoding import DECODING_PROPERTY, SceneDecoding, caveats, decode_item
from cloudfree.catalogs.profiles import PROFILES
from cloudfree.catalogs.signing import Signer, get_signer
from cloudfree.errors import CloudFreeWarning

__all__ = ["prepare_items"]


def _as_dict(item: Any) -> Mapping[str, Any]:
    """A plain item mapping (pystac Items via ``to_dict``)."""
    if isinstance(item, Mapping):
        return item
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, Mapping):
            return result
    raise TypeError(f"not a STAC item: {type(item).__name__}")


def _with_epsg(mapping: dict[str, Any], epsg: int | None) -> None:
    if mapping.get("proj:epsg") is None:
        own = parse_epsg(mapping.get("proj:code"))
        if own is not None or epsg is not None:
            mapping["proj:epsg"] = own if own is not None else epsg


def _prepared(item: Mapping[str, Any], scene: SceneDecoding, sign: Signer) -> dict[str, Any]:
    assets = item.get("assets") or {}
    new = {k: copy.deepcopy(v) for k, v in item.items() if k != "assets"}
    props: dict[str, Any] = dict(new.get("properties") or {})
    _with_epsg(props, scene.epsg)
    props[DECODING_PROPERTY] = scene.as_dict()
    new["properties"] = props
    new["assets"] = {}
    for band in scene.bands:
        asset = copy.deepcopy(dict(assets[band.asset_key]))
        asset["href"] = sign(str(asset["href"]))
        _with_epsg(asset, scene.epsg)
        if band.band != "scl":  # the decision, where readers of raster:bands look for it
            first = dict((asset.get("raster:bands") or [{}])[0])
            asset["raster:bands"] = [first | {"scale": band.scale, "offset": band.offset}]
        new["assets"][band.band] = asset
    return new


def _guess_message(scene: SceneDecoding) -> str:
    keys = ", ".join(f"{b.band}={b.asset_key!r}" for b in scene.bands)
    return (f"no catalog profile matches item {scene.item_id!r} ({scene.profile_why}): "
            f"guessed its assets {keys} and decoded them by {scene.bands[0].source}; "
            f"pass --source ({', '.join(PROFILES)}) to name the catalog")


def prepare_items(
    items: Iterable[Any],
    bands: Sequence[str],
    *,
    source: str | None = None,
    api_url: str | None = None,
    assume: str | None = None,
    signer: Signer | str | None = None,
    scl: bool = True,
) -> list[dict[str, Any]]:
    """Decoded, re-keyed, signed copies of ``items`` (the inputs are left untouched).

    Each copy's assets are the requested ``bands`` (cloudfree names) and ``scl`` (unless
    ``scl`` is False, for a cube without classes): copies of
    the catalog's asset dicts, hrefs passed through ``signer`` (a callable or a registered
    name; default: the item's profile's signer). ``properties["proj:epsg"]`` (and each
    asset's) is filled from ``proj:code`` when missing, and
    ``properties["cloudfree:decoding"]`` records the decoding. Items already prepared
    (they have that property) pass through as they are. A guessed (generic) profile and
    the Earth Search flag caveat are warned about (:class:`CloudFreeWarning`) once per
    reason, not once per item.

    Raises:
        UnsupportedItemError, UnknownAssetError, UndecodableItemError,
        InvalidParameterError, SigningUnavailableError: see :func:`decode_item` and
        :func:`~cloudfree.catalogs.get_signer`.
    """
    explicit = get_signer(signer) if signer is not None else None
    out: list[dict[str, Any]] = []
    notes: dict[str, list[str]] = {}
    for raw in items:
        item = _as_dict(raw)
        if DECODING_PROPERTY in (item.get("properties") or {}):
            out.append(item if isinstance(item, dict) else dict(item))
            continue
        scene = decode_item(item, bands, source=source, api_url=api_url, assume=assume,
                            scl=scl)
        profile = PROFILES[scene.profile]
        sign = explicit if explicit is not None else get_signer(profile.signer)
        out.append(_prepared(item, scene, sign))
        if profile.name == "generic":
            notes.setdefault(f"generic:{scene.profile_why}", []).append(_guess_message(scene))
        for line in caveats(item, scene):
            notes.setdefault(line, []).append(f"{line} (item {scene.item_id!r})")
    for messages in notes.values():
        more = f" (and {len(messages) - 1} more items like it)" if len(messages) > 1 else ""
        warnings.warn(messages[0] + more, CloudFreeWarning, stacklevel=2)
    return out
