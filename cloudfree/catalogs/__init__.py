"""STAC catalogs of Sentinel-2 L2A: which catalog an item comes from (its profile), which
asset holds each band, how the asset's digital numbers decode to reflectance, and items
prepared for the cube (re-keyed, signed, with their decoding recorded).

- :mod:`cloudfree.catalogs.profiles`: :class:`Profile`, :data:`PROFILES` (Earth Search v1,
  its Collection-1 ``sentinel-2-c1-l2a``, Earth Search v0, the Planetary Computer, CDSE and
  a generic fallback), :func:`choose_profile` and the ``--bands`` parser
  :func:`resolve_bands`.
- :mod:`cloudfree.catalogs.decoding`: the decoding rules (harmonisation flag,
  ``raster:bands``, processing baseline, acquisition date, ``--assume-decoding``) with
  their references, :func:`decode_item` and :func:`decoding_table`.
- :mod:`cloudfree.catalogs.signing`: href signers (:func:`get_signer`,
  :func:`register_signer`).
- :func:`prepare_items`: decoded, re-keyed, signed copies of search results.
"""

from __future__ import annotations

from cloudfree.catalogs._items import prepare_items
from cloudfree.catalogs.decoding import (
    DECODING_PROPERTY,
    PRESETS,
    BandDecoding,
    SceneDecoding,
    decode_item,
    decoding_table,
    parse_assume,
)
from cloudfree.catalogs.profiles import PROFILES, Profile, choose_profile, resolve_bands
from cloudfree.catalogs.signing import Signer, get_signer, register_signer

__all__ = [
    "DECODING_PROPERTY",
    "PRESETS",
    "PROFILES",
    "BandDecoding",
    "Profile",
    "SceneDecoding",
    "Signer",
    "choose_profile",
    "decode_item",
    "decoding_table",
    "get_signer",
    "parse_assume",
    "prepare_items",
    "register_signer",
    "resolve_bands",
]
