"""cloudfree.catalogs over real STAC items (../shared/data/stac-items): the profile each
item gets, the asset each band is read from, and how its digital numbers decode."""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from cloudfree.catalogs import (
    PROFILES,
    SceneDecoding,
    choose_profile,
    decode_item,
    decoding_table,
    get_signer,
    prepare_items,
    register_signer,
    resolve_bands,
)
from cloudfree.errors import (
    CloudFreeWarning,
    InvalidParameterError,
    SigningUnavailableError,
    UndecodableItemError,
    UnknownAssetError,
    UnsupportedItemError,
)
from cloudfree.sentinel2 import BANDS
from cloudfree.testing import shared_data_dir

_DATA = shared_data_dir()
ITEMS = _DATA / "stac-items" if _DATA else Path("/nonexistent/stac-items")
needs_items = pytest.mark.skipif(not ITEMS.is_dir(),
                                 reason="needs the real STAC items in ../shared/data/stac-items")

ALL_BANDS = tuple(BANDS)
ES_FLAG = ("earthsearch:boa_offset_applied=true (DNs harmonised; raster:bands offset -0.1 "
           "ignored)")
V0_FLAG = "sentinel:boa_offset_applied=true (DNs harmonised)"
DATE_RULE = "acquired before 2022-01-25 (baseline 04.00 start), no baseline given"


def _pc(baseline: str) -> tuple[str, float, str]:
    op = ">=" if baseline >= "04.00" else "<"
    return "planetary-computer", (-0.1 if op == ">=" else 0.0), \
        f"s2:processing_baseline {baseline} {op} 04.00"


#: (catalog directory, item id) -> (profile, offset of every band, source of every band)
EXPECTED: dict[tuple[str, str], tuple[str, float, str]] = {
    **{("earth-search-v1-l2a", i): ("earth-search-v1", 0.0, "raster:bands")
       for i in ("S2A_28QCH_20200714_0_L2A", "S2B_31QGB_20200831_0_L2A")},
    **{("earth-search-v1-l2a", i): ("earth-search-v1", 0.0, ES_FLAG)
       for i in ("S2A_13TDE_20231008_0_L2A", "S2B_20EPT_20250731_0_L2A",
                 "S2B_24MUA_20250731_0_L2A", "S2B_24MUV_20250731_0_L2A",
                 "S2B_24MVV_20250731_0_L2A", "S2B_24MWV_20250731_0_L2A",
                 "S2B_24MXV_20250731_0_L2A")},
    **{("earth-search-v1-c1-l2a", i): ("earth-search-c1", -0.1, "raster:bands")
       for i in ("S2A_T13TDE_20240402T174230_L2A", "S2A_T13TDE_20240405T175934_L2A",
                 "S2A_T13TDE_20240412T175055_L2A", "S2A_T13TDE_20240415T180048_L2A",
                 "S2A_T13TDE_20240422T174753_L2A", "S2B_T13TDE_20240331T175111_L2A",
                 "S2B_T13TDE_20240407T174209_L2A", "S2B_T13TDE_20240410T175332_L2A",
                 "S2B_T13TDE_20240417T174407_L2A", "S2B_T13TDE_20240420T175329_L2A",
                 "S2B_T20EPT_20250731T131905_L2A", "S2B_T24MUA_20250731T130245_L2A",
                 "S2B_T24MUV_20250731T130245_L2A", "S2B_T24MVV_20250731T130245_L2A",
                 "S2B_T24MWV_20250731T130245_L2A", "S2B_T24MXV_20250731T130245_L2A")},
    **{("earth-search-v0", i): ("earth-search-v0", 0.0, V0_FLAG)
       for i in ("S2A_17SPR_20221106_0_L2A", "S2B_20EPT_20250731_0_L2A")},
    **{("earth-search-v0", i): ("earth-search-v0", 0.0, DATE_RULE)
       for i in ("S2A_28QCH_20200714_0_L2A", "S2A_36MYB_20200722_0_L2A",
                 "S2A_36MYB_20200814_0_L2A", "S2B_42TUM_20220107_0_L2A")},
    **{("planetary-computer-l2a", i): _pc(b) for i, b in (
        ("S2A_MSIL2A_20150704T101006_R022_T35XQA_20210411T133707", "02.12"),
        ("S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652", "02.12"),
        ("S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531", "02.12"),
        ("S2B_MSIL2A_20200606T080609_R078_T35MNM_20200826T094900", "02.12"),
        ("S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251", "04.00"),
        ("S2A_MSIL2A_20230216T150721_R082_T19PHS_20230217T082924", "04.00"),
        ("S2A_MSIL2A_20230216T235751_R087_T52CEB_20230217T134604", "04.00"),
        ("S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824", "05.10"),
        ("S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458", "05.10"),
        ("S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747", "05.11"),
        ("S2B_MSIL2A_20250312T014549_R074_T53NKG_20250312T041213", "05.11"))},
}
UNSUPPORTED = {"landsat-c2-l2": "Landsat", "hls": "HLS"}


def load(catalog: str, item_id: str) -> dict[str, Any]:
    item: dict[str, Any] = json.loads((ITEMS / catalog / f"{item_id}.json").read_text())
    return item


def _files(catalogs: set[str]) -> list[tuple[str, str]]:
    if not ITEMS.is_dir():
        return []
    return sorted((p.parent.name, p.stem) for p in ITEMS.glob("*/*.json")
                  if p.parent.name in catalogs)


def _local(item: dict[str, Any], collection: str | None = None) -> dict[str, Any]:
    """A copy of ``item`` as a local mirror would serve it: no links, 127.0.0.1 hrefs."""
    out = copy.deepcopy(item)
    out["links"] = []
    if collection is not None:
        out["collection"] = collection
    for key, asset in out["assets"].items():
        asset["href"] = f"http://127.0.0.1:9/{out['id']}/{key}.tif"
    return out


# ----------------------------------------------------------------------------- every item


@needs_items
def test_every_sentinel2_item_is_in_the_table() -> None:
    """The table below names every Sentinel-2 item on disk, so none goes unchecked."""
    on_disk = _files({c for c, _ in EXPECTED})
    assert on_disk == sorted(EXPECTED)


@needs_items
@pytest.mark.parametrize(("catalog", "item_id"), sorted(EXPECTED))
def test_real_item_decodes_as_its_catalog_says(catalog: str, item_id: str) -> None:
    profile, offset, source = EXPECTED[(catalog, item_id)]
    item = load(catalog, item_id)
    scene = decode_item(item, ALL_BANDS)
    assert scene.item_id == item_id
    assert scene.profile == profile
    by_id = profile in ("earth-search-v0", "planetary-computer")  # B04..., SCL
    assert [b.band for b in scene.bands] == [*ALL_BANDS, "scl"]
    for decoding in scene.bands[:-1]:
        expected_key = BANDS[decoding.band].s2_name if by_id else decoding.band
        assert decoding.asset_key == expected_key
        assert (decoding.scale, decoding.offset, decoding.source) == (0.0001, offset, source)
    scl = scene.bands[-1]
    assert (scl.asset_key, scl.scale, scl.offset) == ("SCL" if by_id else "scl", 1.0, 0.0)
    assert scene.epsg == item["properties"]["proj:epsg"]
    assert scene.datetime == item["properties"]["datetime"]


@needs_items
@pytest.mark.parametrize(("catalog", "item_id"), _files(set(UNSUPPORTED)))
def test_landsat_and_hls_items_are_refused(catalog: str, item_id: str) -> None:
    item = load(catalog, item_id)
    with pytest.raises(UnsupportedItemError, match=UNSUPPORTED[catalog]) as caught:
        decode_item(item, ("red",))
    assert item_id in str(caught.value)
    assert "Sentinel-2 L2A only" in str(caught.value)
    with pytest.raises(UnsupportedItemError):
        prepare_items([item], ("red",), source="earth-search-v1")


@needs_items
def test_there_are_landsat_and_hls_items_to_refuse() -> None:
    found = {c for c, _ in _files(set(UNSUPPORTED))}
    assert found == set(UNSUPPORTED)


# ----------------------------------------------------------------------------- broken items


@needs_items
def test_missing_band_asset_names_item_band_and_keys() -> None:
    item = load("earth-search-v1-l2a", "S2A_13TDE_20231008_0_L2A")
    del item["assets"]["red"]
    with pytest.raises(UnknownAssetError) as caught:
        decode_item(item, ("blue", "red"))
    message = str(caught.value)
    assert "S2A_13TDE_20231008_0_L2A" in message and "'red'" in message
    assert "red-jp2" in message and "swir16" in message  # the item's keys are listed
    assert isinstance(caught.value, LookupError) and caught.value.exit_code == 2


@needs_items
def test_missing_scl_asset_is_an_unknown_asset() -> None:
    item = load("planetary-computer-l2a", "S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251")
    del item["assets"]["SCL"]
    with pytest.raises(UnknownAssetError, match="band 'scl'"):
        decode_item(item, ("red",))


def _stripped(year: int) -> dict[str, Any]:
    item = load("earth-search-v1-l2a", "S2A_13TDE_20231008_0_L2A")
    props = item["properties"]
    del props["s2:processing_baseline"], props["earthsearch:boa_offset_applied"]
    props["datetime"] = f"{year}-10-08T18:02:55.276000Z"
    for asset in item["assets"].values():
        asset.pop("raster:bands", None)
    return item


@needs_items
def test_item_without_any_decoding_facts_is_undecodable() -> None:
    with pytest.raises(UndecodableItemError) as caught:
        decode_item(_stripped(2023), ("red",))
    assert "S2A_13TDE_20231008_0_L2A" in str(caught.value)
    assert "--assume-decoding" in str(caught.value)


@needs_items
def test_assume_decoding_decodes_what_nothing_else_decides() -> None:
    scene = decode_item(_stripped(2023), ("red",), assume="scale=0.0001,offset=-0.1")
    red = scene.bands[0]
    assert (red.scale, red.offset) == (0.0001, -0.1)
    assert red.source == "--assume-decoding scale=0.0001,offset=-0.1"
    harmonised = decode_item(_stripped(2023), ("red",), assume="harmonized").bands[0]
    assert (harmonised.offset, harmonised.source) == (0.0, "--assume-decoding harmonized")
    # where the item's metadata decides, the assumption is not used
    pc = load("planetary-computer-l2a", "S2A_MSIL2A_20150704T101006_R022_T35XQA_20210411T133707")
    kept = decode_item(pc, ("red",), assume="scale=0.0001,offset=-0.1").bands[0]
    assert (kept.offset, kept.source) == (0.0, "s2:processing_baseline 02.12 < 04.00")


@needs_items
def test_date_rule_only_for_known_profiles() -> None:
    assert decode_item(_stripped(2021), ("red",)).bands[0].source == DATE_RULE
    guessed = _local(_stripped(2021), collection="my-mirror")
    with pytest.raises(UndecodableItemError, match="guessed"):
        decode_item(guessed, ("red",))


@needs_items
def test_bad_assume_lists_presets() -> None:
    item = _stripped(2023)
    with pytest.raises(InvalidParameterError, match="baseline>=04.00"):
        decode_item(item, ("red",), assume="scale=lots")


# ----------------------------------------------------------------------------- bands


def test_resolve_bands_accepts_names_ids_and_common_names() -> None:
    assert resolve_bands("B04,nir,swir16") == ("red", "nir", "swir16")
    assert resolve_bands("B8A") == ("nir08",)
    assert resolve_bands(["b8a", "B4", "RED", "red", "B04"]) == ("nir08", "red")
    assert resolve_bands(" blue , B12 ") == ("blue", "swir22")


@pytest.mark.parametrize("bad", ["B13", "red,B13", "rededge", "scl", "", ","])
def test_resolve_bands_refuses_unknown_names(bad: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        resolve_bands(bad)
    message = str(caught.value)
    assert "invalid bands" in message
    assert ("blue (B02)" in message and "swir22 (B12)" in message) or "rededge1" in message


# ----------------------------------------------------------------------------- profiles


@needs_items
def test_source_wins_and_unknown_source_lists_profiles() -> None:
    item = load("earth-search-v1-c1-l2a", "S2B_T24MUA_20250731T130245_L2A")
    profile, why = choose_profile(item, source="earth-search-v1")
    assert (profile.name, why) == ("earth-search-v1", "--source earth-search-v1")
    with pytest.raises(InvalidParameterError) as caught:
        choose_profile(item, source="sentinelhub")
    assert all(name in str(caught.value) for name in PROFILES)


@needs_items
def test_api_url_decides_a_shared_collection() -> None:
    mirror = _local(load("earth-search-v1-l2a", "S2B_24MUA_20250731_0_L2A"))
    profile, why = choose_profile(mirror, api_url="https://earth-search.aws.element84.com/v1")
    assert profile.name == "earth-search-v1" and "earth-search.aws.element84.com/v1" in why
    profile, why = choose_profile(mirror)
    assert profile.name == "generic"
    assert why.startswith("guessed from eo:bands/raster:bands")


@needs_items
def test_cdse_keys_and_stac_1_1_raster_fields() -> None:
    """CDSE is untested against the real service: the key layout its clients use, on a PC
    item re-keyed the CDSE way, with a STAC 1.1 ``raster:scale``/``raster:offset``."""
    assert PROFILES["cdse"].tested is False
    item = _local(load("planetary-computer-l2a",
                       "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747"))
    keys = {**{info.s2_name: PROFILES["cdse"].asset_keys[name]
               for name, info in BANDS.items()}, "SCL": "SCL_20m"}
    item["assets"] = {keys.get(k, k): a for k, a in item["assets"].items()}
    item["assets"]["B04_10m"] |= {"raster:scale": 0.0001, "raster:offset": -0.1}
    scene = decode_item(item, ("red", "nir08"), api_url="https://stac.dataspace.copernicus.eu/v1")
    assert scene.profile == "cdse"
    assert [(b.asset_key, b.offset, b.source) for b in scene.bands] == [
        ("B04_10m", -0.1, "raster:scale/raster:offset"),
        ("B8A_20m", -0.1, "s2:processing_baseline 05.11 >= 04.00"),
        ("SCL_20m", 0.0, "SCL classes (never rescaled)")]


# ----------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def local_signer() -> str:
    register_signer("local-test", lambda href: href + "?sig=local")
    return "local-test"


@needs_items
def test_prepare_items_rekeys_signs_fills_epsg_and_records(local_signer: str) -> None:
    item = load("earth-search-v1-c1-l2a", "S2B_T24MXV_20250731T130245_L2A")
    epsg = item["properties"].pop("proj:epsg")
    item["properties"]["proj:code"] = f"EPSG:{epsg}"
    before = copy.deepcopy(item)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CloudFreeWarning)
        (prepared,) = prepare_items([item], "B02,green,red", signer=local_signer)
    assert item == before  # the input is untouched
    assert list(prepared["assets"]) == ["blue", "green", "red", "scl"]
    for band, key in (("blue", "blue"), ("green", "green"), ("red", "red"), ("scl", "scl")):
        asset = prepared["assets"][band]
        assert asset["href"] == item["assets"][key]["href"] + "?sig=local"
        assert asset["proj:epsg"] == epsg
    assert prepared["properties"]["proj:epsg"] == epsg
    record = prepared["properties"]["cloudfree:decoding"]
    assert record == decode_item(item, ("blue", "green", "red")).as_dict()
    assert json.loads(json.dumps(record)) == record
    assert decoding_table(prepared) == {"blue": (0.0001, -0.1), "green": (0.0001, -0.1),
                                        "red": (0.0001, -0.1), "scl": (1.0, 0.0)}
    again = prepare_items([prepared], ("red",))
    assert again[0] is prepared


@needs_items
def test_prepare_items_warns_once_for_guessed_profiles() -> None:
    items = [_local(load("earth-search-v1-l2a", i), collection="my-mirror")
             for i in ("S2B_24MUA_20250731_0_L2A", "S2B_24MUV_20250731_0_L2A")]
    with pytest.warns(CloudFreeWarning) as record:
        prepared = prepare_items(items, ("red",))
    guessed = [str(w.message) for w in record if "guessed" in str(w.message)]
    assert len(guessed) == 1
    assert "S2B_24MUA_20250731_0_L2A" in guessed[0] and "red='red'" in guessed[0]
    assert "1 more" in guessed[0] and "--source" in guessed[0]
    assert [p["properties"]["cloudfree:decoding"]["profile"] for p in prepared] == ["generic"] * 2
    # the generic profile honours the Earth Search flag it finds
    assert decoding_table(prepared[0])["red"] == (0.0001, 0.0)


@needs_items
def test_prepare_items_warns_about_the_earth_search_flag_caveat() -> None:
    item = load("earth-search-v1-l2a", "S2B_20EPT_20250731_0_L2A")
    item["properties"]["earthsearch:boa_offset_applied"] = False
    with pytest.warns(CloudFreeWarning, match="sentinel-2-c1-l2a") as record:
        (prepared,) = prepare_items([item], ("red",))
    assert any("earth-search#66" in str(w.message) for w in record)
    assert decoding_table(prepared)["red"] == (0.0001, -0.1)


@needs_items
def test_prepare_items_unknown_source_lists_profiles() -> None:
    item = load("earth-search-v0", "S2A_17SPR_20221106_0_L2A")
    with pytest.raises(InvalidParameterError, match="earth-search-c1"):
        prepare_items([item], ("red",), source="copernicus")


@needs_items
def test_planetary_computer_items_need_the_signer_package() -> None:
    item = load("planetary-computer-l2a", "S2B_MSIL2A_20250312T014549_R074_T53NKG_20250312T041213")
    (unsigned,) = prepare_items([item], ("red",), signer="none")
    assert unsigned["assets"]["red"]["href"] == item["assets"]["B04"]["href"]
    if importlib.util.find_spec("planetary_computer") is not None:
        pytest.skip("planetary-computer is installed here: signing would go online")
    with pytest.raises(SigningUnavailableError, match="pip install planetary-computer"):
        prepare_items([item], ("red",))


# ----------------------------------------------------------------------------- small parts


def test_signers_by_name_or_callable() -> None:
    assert get_signer("none")("s3://a/b.tif") == "s3://a/b.tif"
    assert get_signer(None)("x") == "x"
    assert get_signer(str.upper)("x") == "X"
    with pytest.raises(InvalidParameterError, match="planetary-computer"):
        get_signer("azure")


def test_decoding_table_of_an_unprepared_item() -> None:
    with pytest.raises(UndecodableItemError, match="prepare_items"):
        decoding_table({"id": "raw", "properties": {}})


def test_scene_decoding_as_dict_is_plain() -> None:
    scene = SceneDecoding("x", "generic", "why", None, "2024-01-01T00:00:00Z", 32633, ())
    assert scene.as_dict() == {"item_id": "x", "profile": "generic", "profile_why": "why",
                               "baseline": None, "datetime": "2024-01-01T00:00:00Z",
                               "epsg": 32633, "bands": []}
