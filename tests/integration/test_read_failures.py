"""Source reads from the real S3 (SeaweedFS), through the fault proxy where a fault is
wanted: a transient fault is absorbed by GDAL's retries; a scene that stays unreadable
(a truncated COG, an endpoint that keeps failing) fails the tile naming the scene and the
asset, or is dropped, and the tile is then exactly the tile without it. The error crosses
from a Dask worker process intact and holds no credential."""

from __future__ import annotations

import uuid

import pytest
import xarray as xr

from cloudfree.demo import demo_region
from cloudfree.errors import SourceReadError
from cloudfree.grid import grid_tiles, parse_bbox
from cloudfree.storage import s3_filesystem
from cloudfree.testing.faultproxy import Fault, FaultProxy
from cloudfree.tile import MosaicParams, compute_tile, halo_px, items_for_tile

PARAMS = MosaicParams(bands=("red", "green", "blue"), chunksize=64)

pytestmark = pytest.mark.filterwarnings("ignore::cloudfree.errors.CloudFreeWarning")


class World:
    """A private copy of one demo tile's scenes (their objects copied under a fresh
    prefix, so breaking one breaks no other test), the tile, and GDAL options."""

    def __init__(self, stack, demo_scenes):
        epsg, bbox, _ = demo_region(demo_scenes, tile_size_px=64)
        self.tile = next(iter(grid_tiles(parse_bbox(list(bbox)), resolution_m=10,
                                         tile_size_px=64, epsg=epsg)))
        sources = items_for_tile(demo_scenes, self.tile, halo=halo_px(PARAMS))
        self.fs = s3_filesystem(stack.storage_options())
        prefix = f"{stack.bucket}/test-read-failures/{uuid.uuid4().hex[:8]}"
        self.scenes = []
        for scene in sorted(sources, key=lambda it: it["id"])[:4]:
            copy = {**scene, "assets": {}}
            for key, asset in scene["assets"].items():
                source = str(asset["href"])
                if key in {*PARAMS.bands, "scl"} and source.startswith("s3://"):
                    target = f"{prefix}/{scene['id']}/{source.rsplit('/', 1)[-1]}"
                    self.fs.copy(source.removeprefix("s3://"), target)
                    copy["assets"][key] = {**asset, "href": f"s3://{target}"}
            self.scenes.append(copy)
        self.stack = stack

    def gdal_env(self, endpoint: str | None = None, **options):
        settings = self.stack if endpoint is None else self.stack.model_copy(
            update={"s3_endpoint_url": endpoint})
        # every read reaches the wire (and the proxy), whatever this process read before
        return {**settings.gdal_env(), "CPL_VSIL_CURL_NON_CACHED": f"/vsis3/{self.stack.bucket}",
                **options}

    def key(self, index: int, asset: str = "red") -> str:
        return str(self.scenes[index]["assets"][asset]["href"]).removeprefix("s3://")

    def truncate(self, index: int, asset: str = "red") -> None:
        data = self.fs.cat_file(self.key(index, asset))
        self.fs.pipe_file(self.key(index, asset), data[: len(data) // 2])

    def compute(self, scenes=None, **kw):
        kw.setdefault("gdal_env", self.gdal_env())
        return compute_tile(self.scenes if scenes is None else scenes, self.tile, PARAMS, **kw)

    def without(self, index: int):
        return self.compute(self.scenes[:index] + self.scenes[index + 1:])

    def observed(self) -> list[int]:
        """The scenes that are clear somewhere on the tile: without one, the tile differs
        (so a test that drops it can tell the tile without it from the tile with it)."""
        whole = self.compute()
        return [i for i in range(len(self.scenes))
                if (whole["clear_count"] > self.without(i)["clear_count"]).any()]


@pytest.fixture(scope="module")
def world(stack, demo_scenes):
    world = World(stack, demo_scenes)
    world.seen = world.observed()
    assert len(world.seen) >= 2, "the demo tile needs two scenes that are clear on it"
    return world


def same_pixels(a: xr.Dataset, b: xr.Dataset) -> None:
    a, b = a.copy(), b.copy()
    a.attrs.pop("dropped_sources"), b.attrs.pop("dropped_sources")
    xr.testing.assert_identical(a, b)


def test_a_transient_fault_is_absorbed(world):
    clean = world.compute()
    with FaultProxy(world.stack.s3_url) as s3:
        fault = s3.add(Fault(kind="status", status=503, match=rf"^GET /{world.key(world.seen[0])}",
                             times=2))
        result = world.compute(gdal_env=world.gdal_env(s3.url, GDAL_HTTP_RETRY_DELAY="0.1"))
        assert s3.injected(fault) == 2
    assert result.attrs["dropped_sources"] == []
    same_pixels(result, clean)


def test_a_scene_the_endpoint_keeps_failing_is_dropped(world):
    index = world.seen[1]
    without = world.without(index)
    with FaultProxy(world.stack.s3_url) as s3:
        s3.add(Fault(kind="status", status=503, match=rf"^GET /{world.key(index, 'green')}"))
        env = world.gdal_env(s3.url, GDAL_HTTP_MAX_RETRY=1, GDAL_HTTP_RETRY_DELAY="0.1")
        with pytest.raises(SourceReadError) as info:
            world.compute(gdal_env=env, read_failure_policy="fail")
        result = world.compute(gdal_env=env, read_failure_policy="drop")
    assert (info.value.item_id, info.value.asset) == (world.scenes[index]["id"], "green")
    assert info.value.href == f"s3://{world.key(index, 'green')}"
    assert "503" in info.value.reason
    [dropped] = result.attrs["dropped_sources"]
    assert dropped["id"] == world.scenes[index]["id"] and dropped["asset"] == "green"
    same_pixels(result, without)


def test_a_truncated_cog_is_named_or_dropped_exactly(world):
    """The last test of the module: it breaks a scene's red COG for good."""
    index = world.seen[0]
    without = world.without(index)
    world.truncate(index, "red")
    with pytest.raises(SourceReadError) as info:
        world.compute(read_failure_policy="fail")
    err = info.value
    assert (err.item_id, err.asset, err.href) == (world.scenes[index]["id"], "red",
                                                  f"s3://{world.key(index)}")
    key, secret = world.stack.s3_credentials()
    assert key not in str(err) and secret not in str(err)
    result = world.compute(read_failure_policy="drop")
    assert [d["id"] for d in result.attrs["dropped_sources"]] == [world.scenes[index]["id"]]
    same_pixels(result, without)

    # on a Dask worker process: the error crosses the process boundary whole
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=":0", host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        future = client.submit(compute_tile, world.scenes, world.tile, PARAMS,
                               gdal_env=world.gdal_env(), read_failure_policy="fail")
        with pytest.raises(SourceReadError) as remote:
            future.result()
        assert (remote.value.item_id, remote.value.asset) == (err.item_id, err.asset)
        dropped = client.submit(compute_tile, world.scenes, world.tile, PARAMS,
                                gdal_env=world.gdal_env(), pure=False).result()
    assert dropped.attrs["dropped_sources"] == result.attrs["dropped_sources"]
    same_pixels(dropped, without)
