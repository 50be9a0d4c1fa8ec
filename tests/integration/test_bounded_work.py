"""Bounded work on the real local stack: tiles run whole on the Dask workers, at most
``max_tiles_in_flight`` at once, equal to the tile computed in this process; one failed
tile does not stop the others, the run ends Failed with its per-tile table artifact, and a
re-run redoes only what failed."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import rasterio

from cloudfree.demo import demo_region
from cloudfree.errors import TilesFailedError
from cloudfree.grid import grid_tiles, parse_bbox
from cloudfree.storage import s3_filesystem
from cloudfree.tile import MosaicParams, compute_tile, halo_px, items_for_tile

TILE_PX = 64


@pytest.fixture(scope="module")
def region(env, demo_scenes):
    return demo_region(demo_scenes, tile_size_px=TILE_PX)


@pytest.fixture
def output(monkeypatch):
    """A fresh output collection for the test: nothing of another test's is skipped."""
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CLOUDFREE_OUTPUT_COLLECTION", name)
    return name


def _tiles(region):
    epsg, bbox, _ = region
    return {t.tile_id: t for t in grid_tiles(parse_bbox(list(bbox)), resolution_m=10,
                                             tile_size_px=TILE_PX, epsg=epsg)}


def _read(env, href):
    with rasterio.Env(**env.gdal_env()), rasterio.open(href) as src:
        return src.read(1)


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return [r for r in runs if r.name.startswith("mosaic-")]


def _artifact_rows(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=["mosaic-tiles"])))
    assert artifact.type == "table"
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_one_tile_in_flight_equals_the_tile_computed_here(env, region, demo_scenes, output,
                                                          monkeypatch):
    """max_tiles_in_flight=1: the tile tasks run one after another (their Prefect task runs
    never overlap), and each published tile equals compute_tile in this process exactly."""
    from flows.regional_mosaic import regional_mosaic

    monkeypatch.setenv("CLOUDFREE_MAX_TILES_IN_FLIGHT", "1")
    epsg, bbox, window = region
    state = regional_mosaic(datetime=window, bbox=list(bbox), epsg=epsg, tile_size_px=TILE_PX,
                            return_state=True)
    assert state.is_completed()
    result = state.result()
    assert len(result["tiles"]) == 8
    assert {t["status"] for t in result["tiles"]} == {"published"}
    runs = sorted(_task_runs(state.state_details.flow_run_id), key=lambda r: r.start_time)
    assert len(runs) == 8
    for before, after in zip(runs, runs[1:], strict=False):
        assert before.end_time <= after.start_time, (before.name, after.name)
    tiles = _tiles(region)
    for outcome in result["tiles"][:3]:
        tile = tiles[outcome["tile_id"]]
        expected = compute_tile(demo_scenes, tile, MosaicParams(chunksize=TILE_PX),
                                gdal_env=env.gdal_env())
        np.testing.assert_array_equal(_read(env, outcome["hrefs"]["red"]),
                                      expected["reflectance"].sel(band="red").values)
        np.testing.assert_array_equal(_read(env, outcome["hrefs"]["clear_count"]),
                                      expected["clear_count"].values)
    rows = _artifact_rows(state.state_details.flow_run_id)
    assert [r["status"] for r in rows] == ["published"] * 8


def test_a_failed_tile_fails_the_run_after_the_others_and_only_it_is_redone(
        env, region, demo_scenes, output, monkeypatch):
    """One scene's red COG is missing (read failure policy 'fail'): the tiles that read it
    fail, every other tile is published, the run ends Failed with the table artifact; with
    the file back, a re-run publishes only the failed tiles and skips the rest."""
    from flows.regional_mosaic import regional_mosaic

    monkeypatch.setenv("CLOUDFREE_READ_FAILURE_POLICY", "fail")
    monkeypatch.setenv("CLOUDFREE_MAX_TILES_IN_FLIGHT", "2")
    epsg, bbox, window = region
    tiles = _tiles(region)
    # the SCL mask's 10 px halo: the multi-temporal detector's 110 px would make every
    # tile of this small region read every scene
    halo = halo_px(MosaicParams(mask="scl"))
    # the easternmost scene: some tiles read it, the western ones do not
    broken = max(demo_scenes, key=lambda s: s["bbox"][0])
    reading = {tid for tid, tile in tiles.items()
               if broken["id"] in {s["id"] for s in items_for_tile(demo_scenes, tile, halo=halo)}}
    assert 0 < len(reading) < len(tiles)
    fs = s3_filesystem(env.storage_options())
    path = broken["assets"]["red"]["href"].removeprefix("s3://")
    data = fs.cat_file(path)
    fs.rm_file(path)
    try:
        state = regional_mosaic(datetime=window, bbox=list(bbox), epsg=epsg,
                                tile_size_px=TILE_PX, mask="scl", return_state=True)
    finally:
        fs.pipe_file(path, data)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, TilesFailedError)
    assert f"{len(reading)} of {len(tiles)} tiles failed" in str(error)
    assert broken["id"] in str(error) and "re-run the same command" in str(error)
    rows = {r["tile"]: r for r in _artifact_rows(state.state_details.flow_run_id)}
    assert set(rows) == set(tiles)
    for tid, row in rows.items():
        if tid in reading:
            assert row["status"] == "failed" and "SourceReadError" in row["error"], row
            assert broken["id"] in row["error"] and row["item"] and row["scenes"] > 0
        else:
            assert row["status"] == "published" and row["error"] == "", row
    again = regional_mosaic(datetime=window, bbox=list(bbox), epsg=epsg, tile_size_px=TILE_PX,
                            mask="scl")
    statuses = {t["tile_id"]: t["status"] for t in again["tiles"]}
    assert statuses == {tid: "published" if tid in reading else "skipped" for tid in tiles}
    assert {t["item_id"] for t in again["tiles"]} == {r["item"] for r in rows.values()}
