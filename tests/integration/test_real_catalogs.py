"""Real catalog metadata, not mocks: every stored Sentinel-2 item of the real catalogs,
with its published metadata untouched, mosaicked to the reflectance its pixels encode.

Each item (``shared/data/stac-items/<catalog>/<id>.json``) keeps every field as its
catalog published it; only the hrefs of its 6 default band assets and its SCL asset
(under the item's own keys: ``red``/``scl`` or ``B04``/``SCL``) point at local sparse
GeoTIFFs at the asset's own grid. Their digital numbers encode a known reflectance under
the item's OWN encoding, stated below in :data:`ENCODING` from the catalogs' documentation
(never from ``cloudfree.catalogs``). The items go through the local pgstac (a collection
per catalog), come back from ``search_scenes``, are prepared with
``catalogs.prepare_items`` under the catalog's profile and mosaicked with
``compute_tile``: the mosaic must show the known reflectance within 1 DN in every band.
A wrong offset is 1000 DN off; a wrong asset, band or pixel shift changes the pattern.

Also: one median over a window straddling 2022-01-25 (baseline 04.00) at one place,
mixing four encodings, and Landsat / HLS items refused with an error naming the item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloudfree import catalogs
from cloudfree._stac_api import upsert_collection, upsert_items
from cloudfree.errors import UnsupportedItemError
from cloudfree.grid import AOI, DateWindow, Tile
from cloudfree.search import search_scenes
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.testing import real_items as ri
from cloudfree.tile import MosaicParams, compute_tile

SCALE = 1e-4
#: The start of processing baseline 04.00 (ESA adds BOA_ADD_OFFSET -1000 from then on).
BASELINE_04_START = dt.date(2022, 1, 25)

#: (catalog, processing baseline, boa_offset_applied flag, acquired before 2022-01-25)
#: -> the reflectance offset of the COG digital numbers (scale 1e-4 throughout), as the
#: catalogs document them:
#: - Earth Search v1 ``sentinel-2-l2a``: baseline 02.14 items carry raster:bands offset 0;
#:   flagged items (``earthsearch:boa_offset_applied: true``) were harmonised by Element84
#:   (the -1000 already added into the DNs), offset 0, whatever raster:bands say (-0.1).
#: - Earth Search Collection 1 ``sentinel-2-c1-l2a``: raster:bands offset -0.1, no flag.
#: - Earth Search v0 ``sentinel-s2-l2a-cogs``: flagged items harmonised (0); items without
#:   baseline or flag were acquired before baseline 04.00 existed (0).
#: - Planetary Computer: baseline < 04.00 offset 0; >= 04.00 offset -0.1 (DN carries +1000).
ENCODING: dict[tuple[str, str | None, bool | None, bool], float] = {
    ("earth-search-v1-l2a", "02.14", False, True): 0.0,
    ("earth-search-v1-l2a", "05.09", True, False): 0.0,
    ("earth-search-v1-l2a", "05.11", True, False): 0.0,
    ("earth-search-v1-c1-l2a", "05.10", None, False): -0.1,
    ("earth-search-v1-c1-l2a", "05.11", None, False): -0.1,
    ("earth-search-v0", "04.00", True, False): 0.0,
    ("earth-search-v0", "05.11", True, False): 0.0,
    ("earth-search-v0", None, None, True): 0.0,
    ("planetary-computer-l2a", "02.12", None, True): 0.0,
    ("planetary-computer-l2a", "04.00", None, False): -0.1,
    ("planetary-computer-l2a", "05.10", None, False): -0.1,
    ("planetary-computer-l2a", "05.11", None, False): -0.1,
}

#: catalog -> (local collection id in pgstac, cloudfree profile name).
CATALOGS: dict[str, tuple[str, str]] = {
    "earth-search-v1-l2a": ("es-v1-sentinel-2-l2a", "earth-search-v1"),
    "earth-search-v1-c1-l2a": ("es-c1", "earth-search-c1"),
    "earth-search-v0": ("es-v0", "earth-search-v0"),
    "planetary-computer-l2a": ("pc-sentinel-2-l2a", "planetary-computer"),
}

#: The items mosaicked: every stored Sentinel-2 item, but only three Collection-1 items
#: (its ten T13TDE items share one encoding; time).
ITEMS: dict[str, tuple[str, ...]] = {
    "earth-search-v1-l2a": (
        "S2A_28QCH_20200714_0_L2A", "S2B_31QGB_20200831_0_L2A", "S2A_13TDE_20231008_0_L2A",
        "S2B_20EPT_20250731_0_L2A", "S2B_24MUA_20250731_0_L2A", "S2B_24MUV_20250731_0_L2A",
        "S2B_24MVV_20250731_0_L2A", "S2B_24MWV_20250731_0_L2A", "S2B_24MXV_20250731_0_L2A",
    ),
    "earth-search-v1-c1-l2a": (
        "S2A_T13TDE_20240402T174230_L2A", "S2B_T20EPT_20250731T131905_L2A",
        "S2B_T24MUV_20250731T130245_L2A",
    ),
    "earth-search-v0": (
        "S2A_28QCH_20200714_0_L2A", "S2A_36MYB_20200722_0_L2A", "S2A_36MYB_20200814_0_L2A",
        "S2B_42TUM_20220107_0_L2A", "S2A_17SPR_20221106_0_L2A", "S2B_20EPT_20250731_0_L2A",
    ),
    "planetary-computer-l2a": (
        "S2A_MSIL2A_20150704T101006_R022_T35XQA_20210411T133707",
        "S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652",
        "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531",
        "S2B_MSIL2A_20200606T080609_R078_T35MNM_20200826T094900",
        "S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251",
        "S2A_MSIL2A_20230216T150721_R082_T19PHS_20230217T082924",
        "S2A_MSIL2A_20230216T235751_R087_T52CEB_20230217T134604",
        "S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824",
        "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458",
        "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747",
        "S2B_MSIL2A_20250312T014549_R074_T53NKG_20250312T041213",
    ),
}
CASES = [pytest.param(cat, iid, id=f"{cat}:{iid}") for cat, ids in ITEMS.items() for iid in ids]

#: Base reflectance per band, in DN of 1e-4 (distinct, so a swapped asset shows).
BASE_DN = {"blue": 312, "green": 587, "red": 443, "nir": 3121, "swir16": 2234, "swir22": 1207}
TILE_PX = 48
PARAMS = MosaicParams(method="median", chunksize=256)


def pattern_dn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """0..199 DN, constant on each 20 m cell of the UTM grid (Sentinel-2 grids sit on
    multiples of 20 m, so 10 m and 20 m assets agree), 5 DN per cell east and 13 north:
    a shift of one 20 m pixel changes it by 5 DN or more."""
    return (5 * np.floor(x / 20) + 13 * np.floor(y / 20)) % 200


def reflectance(band: str, x: np.ndarray, y: np.ndarray, epsg: int) -> np.ndarray:
    return (BASE_DN[band] + pattern_dn(x, y)) * SCALE


def published_offset(catalog: str, item: dict[str, Any]) -> float:
    props = item["properties"]
    baseline = props.get("s2:processing_baseline", props.get("sentinel:processing_baseline"))
    flag = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
    before = dt.date.fromisoformat(props["datetime"][:10]) < BASELINE_04_START
    key = (catalog, baseline, flag, before)
    assert key in ENCODING, f"{item['id']}: no published encoding written for {key}"
    return ENCODING[key]


def pixel_centres(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    minx, _, _, maxy = tile.bounds
    height, width = tile.shape
    x = minx + tile.resolution_m * (np.arange(width) + 0.5)
    y = maxy - tile.resolution_m * (np.arange(height) + 0.5)
    return np.broadcast_to(x[None, :], (height, width)), np.broadcast_to(y[:, None], (height, width))


def tile_inside(items: list[dict[str, Any]], epsg: int, tile_id: str) -> Tile:
    """A small tile well inside every item's footprint and raster (in ``epsg``)."""
    rings = [ri.footprint_xy(it, epsg) for it in items]
    boxes = [ri.raster_bounds(it, ri.asset_keys(it)["red"]) for it in items]
    x, y = ri.interior_point(rings, boxes, inset_m=TILE_PX * 10 + 1500)
    return ri.tile_around(x, y, epsg, size_px=TILE_PX, tile_id=tile_id)


def assert_mosaic(result: Any, tile: Tile, want_dn: dict[str, np.ndarray], label: str,
                  *, count: int) -> None:
    """The mosaic equals ``want_dn`` (canonical DN: reflectance = DN * 1e-4 - 0.1) within
    1 DN in every band, and every pixel has ``count`` clear observations."""
    refl = result["reflectance"]
    assert list(refl["band"].values) == list(DEFAULT_BANDS), label
    if "x" in refl.coords and "y" in refl.coords:  # the mosaic is the tile's own grid
        x, y = pixel_centres(tile)
        np.testing.assert_allclose(refl["x"].values, x[0], err_msg=f"{label}: x")
        np.testing.assert_allclose(refl["y"].values, y[:, 0], err_msg=f"{label}: y")
    problems = []
    for band in DEFAULT_BANDS:
        got = np.asarray(refl.sel(band=band).values).astype(np.int64)
        want = want_dn[band]
        assert got.shape == tile.shape, f"{label} {band}: shape {got.shape} != {tile.shape}"
        diff = np.abs(got - want)
        if diff.max() > 1:
            at = tuple(int(v) for v in np.unravel_index(int(np.argmax(diff)), diff.shape))
            problems.append(
                f"{band}: max |diff| {diff.max()} DN at {at}, mosaic reflectance "
                f"{got[at] * SCALE - 0.1:.4f} vs encoded {want[at] * SCALE - 0.1:.4f} "
                f"({np.count_nonzero(diff > 1)} of {diff.size} px off)")
    assert not problems, f"{label}: " + "; ".join(problems)
    clear = np.asarray(result["clear_count"].values)
    assert (clear == count).all(), f"{label}: clear_count {np.unique(clear)} != {count}"


@dataclass(frozen=True)
class Loaded:
    catalog: str
    item: dict[str, Any]  # as written and loaded (local hrefs)
    tile: Tile
    offset: float


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-catalogs")


@pytest.fixture(scope="module")
def loaded(stack, workdir) -> dict[tuple[str, str], Loaded]:
    """Every case item written (around its own tile) and loaded into its catalog's local
    collection; items absent from this machine are left out (their tests skip)."""
    out: dict[tuple[str, str], Loaded] = {}
    for catalog, ids in ITEMS.items():
        collection, _ = CATALOGS[catalog]
        written = []
        for item_id in ids:
            if ri.real_item_path(catalog, item_id) is None:
                continue
            item = ri.load_real_item(catalog, item_id)
            epsg = ri.asset_epsg(item, ri.asset_keys(item)["red"])
            tile = tile_inside([item], epsg, f"{catalog}-{item_id}")
            offset = published_offset(catalog, item)
            local = ri.write_item_assets(item, workdir / catalog, bounds=tile.bounds,
                                         bounds_epsg=epsg, reflectance=reflectance,
                                         offset=offset)
            written.append(ri.in_collection(local, collection))
            out[catalog, item_id] = Loaded(catalog, written[-1], tile, offset)
        if written:
            upsert_collection(
                stack.stac_publish_url, ri.local_collection(collection, f"real {catalog}"),
                token=stack.stac_token(),
            )
            upsert_items(stack.stac_publish_url, collection, written, token=stack.stac_token())
    return out


def _day(item: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(item["properties"]["datetime"][:10])


@pytest.mark.parametrize(("catalog", "item_id"), CASES)
def test_real_item_mosaics_to_the_reflectance_it_encodes(stack, loaded, catalog, item_id):
    case = loaded.get((catalog, item_id))
    if case is None:
        pytest.skip(f"real STAC item {catalog}/{item_id}.json is not on this machine")
    collection, profile = CATALOGS[catalog]
    day = _day(case.item)
    found = search_scenes(stack.stac_url, collection=collection,
                          aoi=AOI(bbox=case.tile.bbox_latlon()), window=DateWindow(day, day))
    assert item_id in [f["id"] for f in found]
    # Adjacent tiles of one datatake overlap: keep the item under test alone.
    found = [f for f in found if f["id"] == item_id]
    prepared = catalogs.prepare_items(found, DEFAULT_BANDS, source=profile, signer="none")
    table = catalogs.decoding_table(prepared[0])
    recorded = {band: table[band] for band in DEFAULT_BANDS}
    assert all(s == pytest.approx(SCALE) and o == pytest.approx(case.offset, abs=1e-9)
               for s, o in recorded.values()), (
        f"{item_id}: decoding {recorded}, published offset {case.offset}, "
        f"why: {prepared[0]['properties'].get('cloudfree:decoding')}")

    result = compute_tile(prepared, case.tile, PARAMS)

    x, y = pixel_centres(case.tile)
    want = {band: BASE_DN[band] + pattern_dn(x, y).astype(np.int64) + 1000
            for band in DEFAULT_BANDS}
    assert_mosaic(result, case.tile, want, f"{catalog}/{item_id}", count=1)


# --------------------------------------------------------------------------- one place, 2021-2024

T13TDE = {  # the scene -> (catalog, profile, DN above the base, published offset)
    "S2A_T13TDE_20240402T174230_L2A": ("earth-search-v1-c1-l2a", "earth-search-c1", 0, -0.1),
    "S2A_13TDE_20211214_0_L2A_DERIVED": ("earth-search-v1-l2a", "earth-search-v1", 100, 0.0),
    "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747": (
        "planetary-computer-l2a", "planetary-computer", 250, -0.1),
    "S2A_13TDE_20231008_0_L2A": ("earth-search-v1-l2a", "earth-search-v1", 400, 0.0),
}
MIXED_COLLECTION = "t13tde-mixed"


def derived_pre_04_item() -> dict[str, Any]:
    """The catalogs hold no T13TDE item acquired before 2022-01-25, so one is derived:
    the real Earth Search v1 item S2A_13TDE_20231008_0_L2A, given the decoding-relevant
    metadata of the real baseline-02.14 item S2A_28QCH_20200714_0_L2A of the same catalog
    (``s2:processing_baseline`` 02.14, ``earthsearch:boa_offset_applied`` false, each band
    asset's ``raster:bands`` with offset 0), a December 2021 datetime and a new id."""
    base = ri.load_real_item("earth-search-v1-l2a", "S2A_13TDE_20231008_0_L2A")
    old = ri.load_real_item("earth-search-v1-l2a", "S2A_28QCH_20200714_0_L2A")
    props = base["properties"]
    for key in ("s2:processing_baseline", "earthsearch:boa_offset_applied"):
        props[key] = old["properties"][key]
    props["datetime"] = "2021-12-14T18:02:55.276000Z"
    for key, asset in base["assets"].items():
        if "raster:bands" in asset and key in old["assets"]:
            asset["raster:bands"] = old["assets"][key]["raster:bands"]
    base["id"] = "S2A_13TDE_20211214_0_L2A_DERIVED"
    return base


def test_one_median_across_baseline_04_mixes_four_encodings(stack, workdir):
    """Four scenes at one place, 2021-12 to 2024-08, each under its own encoding: a
    derived baseline-02.14 Earth Search v1 item (offset 0, not harmonised), the real
    harmonised Earth Search v1 item (flag true, offset 0 though raster:bands say -0.1), a
    Collection-1 item (-0.1) and a Planetary Computer item of baseline 05.11 (-0.1, no
    raster:bands). Their reflectances differ (+0, +100, +250, +400 DN, sorted C1 < derived
    < PC < ES v1), so the median of the four is the mean of the middle two (+175 DN); any
    ONE scene decoded with the wrong offset (0.1 = 1000 DN) moves past the others and
    changes the median by at least 50 DN."""
    items: dict[str, dict[str, Any]] = {}
    for item_id, (catalog, _, _, _) in T13TDE.items():
        items[item_id] = (derived_pre_04_item() if item_id.endswith("_DERIVED")
                          else ri.load_real_item(catalog, item_id))
    epsg = ri.asset_epsg(items["S2A_13TDE_20231008_0_L2A"], "red")
    assert {ri.asset_epsg(it, ri.asset_keys(it)["red"]) for it in items.values()} == {epsg}
    tile = tile_inside(list(items.values()), epsg, "t13tde-mixed")

    written = []
    for item_id, (catalog, _, delta, offset) in T13TDE.items():
        assert published_offset(catalog, items[item_id]) == offset, item_id

        def scene_reflectance(band: str, x: np.ndarray, y: np.ndarray, epsg: int,
                              delta: int = delta) -> np.ndarray:
            return (BASE_DN[band] + delta + pattern_dn(x, y)) * SCALE

        local = ri.write_item_assets(items[item_id], workdir / "t13tde", bounds=tile.bounds,
                                     bounds_epsg=epsg, reflectance=scene_reflectance,
                                     offset=offset)
        written.append(ri.in_collection(local, MIXED_COLLECTION))
    upsert_collection(
        stack.stac_publish_url, ri.local_collection(MIXED_COLLECTION, "T13TDE, 4 catalogs"),
        token=stack.stac_token(),
    )
    upsert_items(stack.stac_publish_url, MIXED_COLLECTION, written, token=stack.stac_token())

    window = DateWindow(dt.date(2021, 12, 1), dt.date(2024, 8, 31))
    assert window.start < BASELINE_04_START < window.end
    found = search_scenes(stack.stac_url, collection=MIXED_COLLECTION,
                          aoi=AOI(bbox=tile.bbox_latlon()), window=window)
    assert sorted(f["id"] for f in found) == sorted(T13TDE)
    # One search of a mixed collection, each item prepared under its own catalog's profile.
    prepared = [p for f in found for p in catalogs.prepare_items(
        [f], DEFAULT_BANDS, source=T13TDE[f["id"]][1], signer="none")]

    result = compute_tile(prepared, tile, PARAMS)

    x, y = pixel_centres(tile)
    want = {band: BASE_DN[band] + 175 + pattern_dn(x, y).astype(np.int64) + 1000
            for band in DEFAULT_BANDS}
    assert_mosaic(result, tile, want, "T13TDE 2021-12..2024-08 median", count=4)


# --------------------------------------------------------------------------- not Sentinel-2

OTHER = {"landsat-c2-l2": "Landsat", "hls": "HLS"}
OTHER_COLLECTION = "other-sensors"
OTHER_CASES = [pytest.param(cat, iid, id=f"{cat}:{iid}") for cat in OTHER
               for iid in ri.real_item_ids(cat)]


@pytest.fixture(scope="module")
def other_found(stack) -> dict[str, dict[str, Any]]:
    """The Landsat and HLS items, loaded as published into one local collection (whose id
    says nothing of their kind) and searched back."""
    items = [ri.in_collection(ri.load_real_item(cat, iid), OTHER_COLLECTION)
             for cat in OTHER for iid in ri.real_item_ids(cat)]
    if not items:
        pytest.skip("no Landsat / HLS STAC items on this machine")
    upsert_collection(
        stack.stac_publish_url, ri.local_collection(OTHER_COLLECTION, "Landsat and HLS"),
        token=stack.stac_token(),
    )
    upsert_items(stack.stac_publish_url, OTHER_COLLECTION, items, token=stack.stac_token())
    found = search_scenes(stack.stac_url, collection=OTHER_COLLECTION,
                          aoi=AOI(bbox=(-180.0, -90.0, 180.0, 90.0)),
                          window=DateWindow(dt.date(2015, 1, 1), dt.date(2025, 12, 31)))
    assert sorted(f["id"] for f in found) == sorted(it["id"] for it in items)
    return {f["id"]: f for f in found}


@pytest.mark.parametrize(("catalog", "item_id"), OTHER_CASES)
def test_landsat_and_hls_items_are_refused_by_name(other_found, catalog, item_id):
    with pytest.raises(UnsupportedItemError) as caught:
        catalogs.prepare_items([other_found[item_id]], DEFAULT_BANDS)
    message = str(caught.value)
    assert item_id in message
    assert OTHER[catalog].lower() in message.lower(), message
