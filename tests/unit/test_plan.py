"""The dry run (cloudfree.plan, ``cloudfree plan``) over the real STAC items of
../shared/data/stac-items: tiles, scenes, per-band decoding, estimates and budgets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cloudfree import cli
from cloudfree.catalogs import prepare_items
from cloudfree.cluster.sizing import BASE_MEMORY_GIB, CUBE_COPIES
from cloudfree.errors import BudgetExceededError, InvalidParameterError
from cloudfree.grid import parse_bbox, parse_date_window
from cloudfree.methods import list_methods
from cloudfree.plan import (
    THROUGHPUT_BANDS,
    THROUGHPUT_PIXEL_DATES_PER_S,
    Budgets,
    budget_problems,
    build_plan,
    check_budgets,
    footprint_groups,
    load_items,
)
from cloudfree.settings import Settings
from cloudfree.testing import shared_data_dir
from cloudfree.tile import MosaicParams, halo_px

DATA = shared_data_dir()
ITEMS = DATA / "stac-items" if DATA else None
needs_items = pytest.mark.skipif(not (ITEMS and ITEMS.is_dir()),
                                 reason="needs ../shared/data/stac-items")

ES = "earth-search-v1-l2a"
PC = "planetary-computer-l2a"
REFLECTANCE = ("blue", "green", "red", "nir", "swir16", "swir22")


def _files(*catalogs: str) -> list[str]:
    assert ITEMS is not None
    return [str(p) for c in catalogs for p in sorted((ITEMS / c).glob("*.json"))]


def _raw(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _baseline(item: dict) -> tuple[int, int]:
    major, minor = item["properties"]["s2:processing_baseline"].split(".")
    return int(major), int(minor)


@pytest.fixture(scope="module")
def es_pc_plan():
    return build_plan(load_items(_files(ES, PC)))


# --------------------------------------------------------------------------- the CLI


@needs_items
def test_plan_json_lists_every_scene_with_its_asset_keys_and_decoding(capsys):
    files = _files(ES, PC)
    assert cli.main(["plan", "--items", *files, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    scenes = {s["id"]: s for s in record["scenes"]}
    raw = {it["id"]: it for it in map(_raw, files)}
    assert set(scenes) == set(raw) and len(record["scenes"]) == len(raw) == 20
    for ident, item in raw.items():
        scene = scenes[ident]
        assert scene["collection"] == item["collection"] == "sentinel-2-l2a"
        assert list(scene["bands"]) == [*REFLECTANCE, "scl"]
        for band in REFLECTANCE:
            decoding = scene["bands"][band]
            assert decoding["asset_key"] in item["assets"]  # a key the item really has
            assert decoding["scale"] == 0.0001
        assert scene["bands"]["scl"] == {**scene["bands"]["scl"], "scale": 1.0, "offset": 0.0}
        props = item["properties"]
        if ident.startswith("S2A_MSIL2A") or ident.startswith("S2B_MSIL2A"):  # Planetary Computer
            assert scene["profile"] == "planetary-computer"
            assert scene["bands"]["red"]["asset_key"] == "B04"
            assert scene["bands"]["scl"]["asset_key"] == "SCL"
            expected = -0.1 if _baseline(item) >= (4, 0) else 0.0
        else:  # Earth Search v1: the harmonisation flag, else raster:bands
            assert scene["profile"] == "earth-search-v1"
            assert scene["bands"]["red"]["asset_key"] == "red"
            assert scene["bands"]["scl"]["asset_key"] == "scl"
            flagged = props["earthsearch:boa_offset_applied"] is True
            expected = 0.0 if flagged else item["assets"]["red"]["raster:bands"][0]["offset"]
        assert {scene["bands"][b]["offset"] for b in REFLECTANCE} == {expected}, ident
    # both kinds of PC items are there, and ES items whose raster:bands say -0.1 get 0
    pc = [it for it in raw.values() if it["id"].startswith(("S2A_MSIL2A", "S2B_MSIL2A"))]
    assert {_baseline(it) >= (4, 0) for it in pc} == {True, False}
    stale = scenes["S2B_24MUA_20250731_0_L2A"]["bands"]["red"]
    assert stale["offset"] == 0.0 and "boa_offset_applied=true" in stale["source"]
    assert raw["S2B_24MUA_20250731_0_L2A"]["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
    # every tile's scenes are planned scenes; every scene reaches a tile
    assert {s for t in record["tiles"] for s in t["scenes"]} == set(scenes)
    assert record["budgets"]["max_tiles"] == {"limit": 10000, "figure": len(record["tiles"]),
                                              "ok": True, "env": "CLOUDFREE_MAX_TILES"}


def _one_item(tmp_path: Path, catalog: str, name: str, edit) -> str:
    assert ITEMS is not None
    item = _raw(str(ITEMS / catalog / f"{name}.json"))
    edit(item)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(item))
    return str(path)


def _no_red(item: dict) -> None:
    del item["assets"]["red"]


def _no_baseline(item: dict) -> None:
    del item["properties"]["s2:processing_baseline"]


BAD = {
    "unknown asset": (lambda tmp: ["--items", _one_item(tmp, ES, "S2B_24MUA_20250731_0_L2A",
                                                        _no_red)],
                      ["'S2B_24MUA_20250731_0_L2A'", "band 'red'", "blue, blue-jp2, cloud"]),
    "undecodable": (lambda tmp: ["--items", _one_item(
        tmp, PC, "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458", _no_baseline)],
        ["'S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458'", "--assume-decoding"]),
    "unknown band": (lambda tmp: ["--items", *_files(ES)[:1], "--bands", "red,B13"],
                     ["invalid bands 'B13'", "known: coastal (B01), blue (B02)", "swir22 (B12)"]),
    "landsat": (lambda tmp: ["--items", *_files("landsat-c2-l2")[:1]],
                ["Landsat item", "Sentinel-2 L2A only"]),
    "hls": (lambda tmp: ["--items", *_files("hls")[:1]], ["HLS item", "Sentinel-2 L2A only"]),
    "unreadable file": (lambda tmp: ["--items", *_files(ES)[:1], str(tmp / "missing.json")],
                        ["missing.json", "cannot read it"]),
    "not json": (lambda tmp: ["--items", str(ITEMS / "README.md")], ["README.md", "not JSON"]),
    "unknown source": (lambda tmp: ["--items", *_files(ES)[:1], "--source", "bogus"],
                       ["invalid source 'bogus'", "planetary-computer"]),
    "nothing to plan": (lambda tmp: ["--datetime", "2024-01-01/2024-02-01"],
                        ["nothing to plan"]),
}


@needs_items
@needs_items
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_no_traceback(case, tmp_path, capsys):
    argv, expected = BAD[case]
    assert cli.main(["plan", *argv(tmp_path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("cloudfree: error: ")
    for text in expected:
        assert text in captured.err, (case, text)


@needs_items
def test_assume_decoding_decides_what_the_metadata_does_not(tmp_path, capsys):
    path = _one_item(tmp_path, PC, "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458",
                     _no_baseline)
    assert cli.main(["plan", "--items", path, "--assume-decoding", "scale=0.0001,offset=-0.1",
                     "--bands", "B04,nir", "--json"]) == 0
    (scene,) = json.loads(capsys.readouterr().out)["scenes"]
    assert list(scene["bands"]) == ["red", "nir", "scl"]
    assert scene["bands"]["red"]["offset"] == -0.1
    assert scene["bands"]["red"]["source"].startswith("--assume-decoding")


@needs_items
def test_the_window_and_the_area_select_items(capsys):
    files = _files(ES, PC)
    assert cli.main(["plan", "--items", *files, "--datetime", "2025-07-01/2025-07-31",
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {s["id"] for s in record["scenes"]} == {
        f"S2B_{t}_20250731_0_L2A" for t in ("20EPT", "24MUA", "24MUV", "24MVV", "24MWV", "24MXV")}
    assert any("left out" in note for note in record["notes"])
    # an area of interest without --tile-size: one tile over it, as 'cloudfree mosaic'
    assert cli.main(["plan", "--items", *files, "--bbox=-105.3,39.9,-105.2,40.0",
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    (tile,) = record["tiles"]
    assert tile["id"].startswith("aoi-32613-") and record["tile_size_px"] is None
    assert set(tile["scenes"]) == {"S2A_13TDE_20231008_0_L2A",
                                   "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747"}


# --------------------------------------------------------------------------- the plan


@needs_items
def test_items_are_grouped_by_overlapping_footprint(es_pc_plan):
    groups = {frozenset(g.scenes): g for g in es_pc_plan.groups}
    brazil = frozenset(f"S2B_24M{t}_20250731_0_L2A" for t in ("UA", "UV", "VV", "WV", "XV"))
    assert groups[brazil].epsg == 32724
    colorado = frozenset({"S2A_13TDE_20231008_0_L2A",
                          "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747"})
    assert groups[colorado].epsg == 32613
    arctic = frozenset({"S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824",
                        "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458"})
    assert groups[arctic].epsg == 32646  # the UTM zone of the group's centre, 95.2 E
    assert sum(len(g.scenes) for g in es_pc_plan.groups) == len(es_pc_plan.scenes) == 20
    assert len(es_pc_plan.groups) == 20 - 4 - 1 - 1


def test_footprint_groups_are_connected_components():
    boxes = [(0, 0, 2, 2), (5, 5, 6, 6), (1.5, 1.5, 3, 3), (2.5, 0, 4, 2.8), (10, 0, 11, 1)]
    assert sorted(map(sorted, footprint_groups(boxes))) == [[0, 2, 3], [1], [4]]


@needs_items
def test_tiles_read_their_halo_and_estimate_memory_and_time(es_pc_plan):
    params = es_pc_plan.params
    assert halo_px(params, "scl") == math.ceil(params.dilation_m / params.resolution_m)
    assert es_pc_plan.halo_px == max(t.halo_px for t in es_pc_plan.tiles)
    for planned in es_pc_plan.tiles:  # each with the halo of the detector auto chose for it
        halo = halo_px(params, planned.mask)
        assert planned.halo_px == halo
        rows, cols = planned.tile.shape
        assert (rows, cols) == (2048, 2048)
        assert planned.grown_shape == (rows + 2 * halo, cols + 2 * halo)
        read = planned.grown_shape[0] * planned.grown_shape[1]
        assert planned.pixels == read * planned.n_dates * len(params.bands)
        cube = read * planned.n_dates * (len(params.bands) + 1) * 2
        assert planned.memory_gib == pytest.approx(BASE_MEMORY_GIB + CUBE_COPIES * cube / 2**30)
        assert planned.seconds == pytest.approx(
            read * planned.n_dates * len(params.bands) / THROUGHPUT_BANDS
            / THROUGHPUT_PIXEL_DATES_PER_S["median"])
    same_day = [t for t in es_pc_plan.tiles if len(t.scenes) > t.n_dates]
    assert same_day  # adjacent 24M granules of one datatake: one date per day in the cube
    record = es_pc_plan.as_dict()
    assert "CUBE_COPIES" in record["estimates"]["memory_counts"]
    assert record["estimates"]["device"] == "cpu"
    json.dumps(record)  # JSON-able


@needs_items
def test_a_learned_method_is_estimated_on_the_cpu():
    plan = build_plan(load_items(_files(ES)[:1]), params=MosaicParams(method="generator"))
    record = plan.as_dict()
    assert record["estimates"]["learned_method_on_cpu"] is True
    assert "on the CPU" in plan.summary()
    assert record["halo_px"] == halo_px(MosaicParams(method="generator"),
                                        plan.tiles[0].mask) > 10


def test_every_mosaic_method_has_a_measured_throughput():
    assert set(THROUGHPUT_PIXEL_DATES_PER_S) == set(list_methods("mosaic"))


@needs_items
def test_prepared_items_plan_as_their_raw_selves():
    raw = load_items(_files(ES, PC))
    prepared = prepare_items(raw, REFLECTANCE, signer="none")
    assert build_plan(prepared).as_dict()["scenes"] == [
        {**s, "caveats": []} for s in build_plan(raw).as_dict()["scenes"]]


@needs_items
def test_item_collections_load_and_bad_files_are_named(tmp_path):
    items = [_raw(p) for p in _files(PC)[:2]]
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    assert [it["id"] for it in load_items([collection])] == [it["id"] for it in items]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "Collection", "id": "x"}))
    with pytest.raises(InvalidParameterError, match="other.json.*neither a STAC Item"):
        load_items([other])


@needs_items
def test_no_item_in_the_window_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="none of them lies in 1999"):
        build_plan(load_items(_files(ES)), window=parse_date_window("1999-01-01/1999-02-01"))
    with pytest.raises(InvalidParameterError, match="over"):
        build_plan(load_items(_files(ES)), aoi=parse_bbox("0,0,0.1,0.1"))


# --------------------------------------------------------------------------- budgets


@needs_items
def test_budgets_refuse_a_plan_naming_the_budget_the_figure_and_the_fix(es_pc_plan):
    check_budgets(es_pc_plan, Budgets())  # the defaults hold this plan
    n = len(es_pc_plan.tiles)
    with pytest.raises(BudgetExceededError) as info:
        check_budgets(es_pc_plan, Budgets(max_tiles=n - 1))
    message = str(info.value)
    assert info.value.budget == "max_tiles" and info.value.figure == n
    assert f"max_tiles ({n} > {n - 1})" in message and f"CLOUDFREE_MAX_TILES={n}" in message
    with pytest.raises(BudgetExceededError, match="max_scenes_per_tile .3 > 2.*"
                                                  "CLOUDFREE_MAX_SCENES_PER_TILE=3"):
        check_budgets(es_pc_plan, Budgets(max_scenes_per_tile=2))
    with pytest.raises(BudgetExceededError, match="max_tile_memory_gib.*--tile-size"):
        check_budgets(es_pc_plan, Budgets(max_tile_memory_gib=1.0))
    problems = budget_problems(es_pc_plan, Budgets(max_tiles=1, max_scenes_per_tile=1,
                                                   max_tile_memory_gib=1.0))
    assert [p.budget for p in problems] == ["max_tiles", "max_scenes_per_tile",
                                            "max_tile_memory_gib"]
    assert check_budgets(es_pc_plan, Budgets(max_tiles=n)) is None  # at the limit: fits


def test_budgets_come_from_the_settings(monkeypatch):
    monkeypatch.setenv("CLOUDFREE_MAX_TILES", "7")
    monkeypatch.setenv("CLOUDFREE_MAX_SCENES_PER_TILE", "3")
    monkeypatch.setenv("CLOUDFREE_MAX_TILE_MEMORY_GIB", "2.5")
    assert Budgets.from_settings(Settings()) == Budgets(7, 3, 2.5)
    monkeypatch.delenv("CLOUDFREE_MAX_TILES")
    assert Settings().max_tiles == 10000


def test_the_flows_take_the_catalog_parameters():
    from prefect.utilities.callables import parameter_schema

    from flows.aoi_mosaic import aoi_mosaic
    from flows.regional_mosaic import regional_mosaic

    for flow in (aoi_mosaic, regional_mosaic):
        properties = parameter_schema(flow.fn).model_dump()["properties"]
        assert {"bands", "source", "assume_decoding", "signer"} <= set(properties), flow.name


def _profile_rows() -> list[str]:
    """The README's profile table, as generated from PROFILES."""
    from cloudfree.catalogs import PROFILES

    rows = []
    for p in PROFILES.values():
        keys = (", ".join(f"`{p.asset_keys[b]}`" for b in ("blue", "red", "nir08"))
                if p.asset_keys else "by `eo:bands` name, then common name")
        flag = f"`{p.boa_flag}`=true: offset 0; else " if p.boa_flag else ""
        date = "" if p.name == "generic" else ", then the acquisition date"
        collections = ", ".join(f"`{c}`" for c in p.collections) or "any"
        scl = f"`{p.scl_key}`" if p.scl_key else "`scl`/`SCL` or titled so"
        tested = "yes" if p.tested else "no: keys from its documentation, never run here"
        rows.append(f"| `{p.name}` | {collections} | {keys} | {scl} | `{p.signer}` | "
                    f"{flag}`raster:bands`, then the processing baseline{date} | {tested} |")
    return rows


def test_the_readme_profile_table_is_the_profiles():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Catalog profiles"):readme.index("### How decoding")]
    listed = [line for line in table.splitlines() if line.startswith("| `")]
    assert listed == _profile_rows()


# --------------------------------------------------------------------------- the grid's budgets


DEMO_AOI = "15.05,46.00,15.12,46.03"  # the acceptance AOI: ~540 x 340 px at 10 m


def test_a_small_aoi_is_one_tile_and_a_large_one_is_cut_into_grid_tiles():
    from cloudfree.grid import aoi_tile, grid_tiles
    from cloudfree.plan import DEFAULT_TILE_SIZE_PX, area_tiles

    aoi = parse_bbox(DEMO_AOI)
    tiles, size = area_tiles(aoi, resolution_m=10, tile_size_px=None)
    assert size is None and tiles == [aoi_tile(aoi, resolution_m=10)]
    rows, cols = tiles[0].shape
    # one pixel over max_pixels_per_tile: cut into the grid of DEFAULT_TILE_SIZE_PX tiles
    budgets = Budgets(max_pixels_per_tile=rows * cols - 1)
    cut, size = area_tiles(aoi, resolution_m=10, tile_size_px=None, budgets=budgets)
    assert size == DEFAULT_TILE_SIZE_PX
    assert cut == grid_tiles(aoi, resolution_m=10, tile_size_px=DEFAULT_TILE_SIZE_PX)
    assert area_tiles(aoi, resolution_m=10, tile_size_px=None,
                      budgets=Budgets(max_pixels_per_tile=rows * cols))[1] is None
    # 10 x 10 degrees at 10 m is ~9.6 Gpx: never one tile under the default budget
    big, size = area_tiles(parse_bbox("10,40,20,50"), resolution_m=10, tile_size_px=None)
    assert size == DEFAULT_TILE_SIZE_PX and len(big) > 1
    assert all(t.shape == (size, size) for t in big)


def test_grid_budgets_refuse_before_any_tile_is_made():
    from cloudfree.plan import area_tiles

    with pytest.raises(BudgetExceededError) as info:
        area_tiles(parse_bbox("5,40,25,55"), resolution_m=10, tile_size_px=512)
    assert (info.value.budget, info.value.figure) == ("max_tiles", 112560)
    assert "split the run into at least 12 smaller areas" in str(info.value)
    with pytest.raises(BudgetExceededError) as info:
        area_tiles(parse_bbox(DEMO_AOI), resolution_m=10, tile_size_px=4096,
                   budgets=Budgets(max_pixels_per_tile=2048 * 2048))
    assert info.value.budget == "max_pixels_per_tile"
    assert "--tile-size of at most 2048 px" in str(info.value)


@needs_items
def test_build_plan_checks_the_grid_the_crs_and_the_target_date():
    items = load_items(_files(ES, PC))
    with pytest.raises(BudgetExceededError, match="max_tiles"):
        build_plan(items, aoi=parse_bbox("-106,39,-104,41"), tile_size_px=64,
                   budgets=Budgets(max_tiles=100))
    with pytest.raises(BudgetExceededError, match="max_tiles"):  # grouped items, no AOI
        build_plan(items, tile_size_px=64, budgets=Budgets(max_tiles=100))
    with pytest.raises(InvalidParameterError, match="invalid epsg 999999"):
        build_plan(items, epsg=999999)
    with pytest.raises(InvalidParameterError, match="outside the window"):
        build_plan(items, params=MosaicParams(method="interpolate", target_date="2020-01-01"),
                   window=parse_date_window("2025-07-01/2025-07-31"))
    plan = build_plan(items, tile_size_px=512)
    pixels = budget_problems(plan, Budgets(max_pixels_per_tile=512 * 512 - 1))
    assert [p.budget for p in pixels] == ["max_pixels_per_tile"]
    assert check_budgets(plan, Budgets(max_pixels_per_tile=512 * 512)) is None


def test_the_pixel_budget_comes_from_the_settings(monkeypatch):
    monkeypatch.setenv("CLOUDFREE_MAX_PIXELS_PER_TILE", "1000000")
    assert Budgets.from_settings(Settings()).max_pixels_per_tile == 1_000_000


def test_local_workers_never_use_more_threads_than_cores(monkeypatch):
    """The flows' LocalCluster: one tile per worker, workers x each tile's threads <= cores,
    and no more workers than tiles in flight."""
    from flows._tasks import local_workers

    for in_flight in (1, 2, 3, 4, 8):
        monkeypatch.setenv("CLOUDFREE_MAX_TILES_IN_FLIGHT", str(in_flight))
        settings = Settings()
        for cores in (1, 2, 3, 4, 6, 16):
            workers, threads = local_workers(settings, cores)
            assert 1 <= workers <= min(in_flight, 4) and threads >= 1
            assert workers * threads <= cores, (in_flight, cores)
        assert local_workers(settings, 16) == (min(in_flight, 4), 16 // min(in_flight, 4))
