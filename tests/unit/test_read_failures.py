"""A source read that fails names its scene and asset; by policy the tile fails, or the
scene is dropped and the tile is exactly what it would be without it."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from cloudfree import cog
from cloudfree.errors import NoReadableSourceError, SourceReadError
from cloudfree.testing import make_items, make_tile
from cloudfree.tile import MosaicParams, compute_tile

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
PARAMS = MosaicParams(dilation_m=0, chunksize=32)

pytestmark = pytest.mark.filterwarnings("ignore::cloudfree.errors.CloudFreeWarning")


@pytest.fixture()
def scenes(tmp_path):
    """Five dated scenes of a 48 px tile, each band a file of its own (GeoTIFF)."""
    rng = np.random.default_rng(1)
    n, size = 5, 48
    stack = rng.integers(1200, 3000, size=(n, len(BANDS), size, size), dtype=np.uint16)
    scl = np.full((n, size // 2, size // 2), 4, np.uint16)
    scl[1, 2:10, 2:10] = 9
    tile = make_tile(size=size)
    arrays = {b: stack[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    return tile, make_items(tmp_path, arrays, tile=tile)


def truncate_as_cog(href: str) -> None:
    """Rewrite a GeoTIFF as a COG (small tiles), then cut the file in half: the header
    still opens, the pixels do not read."""
    with rasterio.open(href) as src:
        data = cog.write_cog(src.read(1), transform=src.transform, crs=src.crs, nodata=0)
    Path(href).write_bytes(data[: len(data) // 2])


def without(items, item_id):
    return [it for it in items if it["id"] != item_id]


def test_a_truncated_asset_fails_the_tile_naming_scene_and_asset(scenes):
    tile, items = scenes
    href = items[2]["assets"]["green"]["href"]
    truncate_as_cog(href)
    with pytest.raises(SourceReadError) as info:
        compute_tile(items, tile, PARAMS, read_failure_policy="fail")
    err = info.value
    assert (err.item_id, err.asset, err.href) == (items[2]["id"], "green", href)
    assert items[2]["id"] in str(err) and "'green'" in str(err)
    assert "CLOUDFREE_READ_FAILURE_POLICY=drop" in str(err)
    # it crosses a process boundary (a Dask worker) whole
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SourceReadError and str(back) == str(err)
    assert (back.item_id, back.asset, back.href, back.reason) == (
        err.item_id, err.asset, err.href, err.reason)


def assert_same_pixels(a: xr.Dataset, b: xr.Dataset) -> None:
    """Identical data, coordinates and attributes, but for the record of what was dropped."""
    a, b = a.copy(), b.copy()
    a.attrs.pop("dropped_sources"), b.attrs.pop("dropped_sources")
    xr.testing.assert_identical(a, b)


def test_drop_gives_exactly_the_tile_without_the_scene(scenes):
    tile, items = scenes
    broken = items[2]["id"]
    whole = compute_tile(items, tile, PARAMS)
    truncate_as_cog(items[2]["assets"]["green"]["href"])
    dropped = compute_tile(items, tile, PARAMS, read_failure_policy="drop")
    clean = compute_tile(without(items, broken), tile, PARAMS)
    assert whole.attrs["dropped_sources"] == [] and clean.attrs["dropped_sources"] == []
    [entry] = dropped.attrs["dropped_sources"]
    assert entry["id"] == broken and entry["asset"] == "green"
    assert "TIFF" in entry["error"] or "Read" in entry["error"]
    assert_same_pixels(dropped, clean)
    # the scene mattered: with it the tile has one more clear observation everywhere
    np.testing.assert_array_equal(whole["clear_count"].values,
                                  dropped["clear_count"].values + 1)


def test_drop_is_the_default_and_handles_missing_files_of_several_scenes(scenes):
    tile, items = scenes
    Path(items[0]["assets"]["scl"]["href"]).unlink()
    Path(items[3]["assets"]["nir"]["href"]).unlink()
    result = compute_tile(items, tile, PARAMS)
    got = sorted((d["id"], d["asset"]) for d in result.attrs["dropped_sources"])
    assert got == [(items[0]["id"], "scl"), (items[3]["id"], "nir")]
    clean = compute_tile([items[1], items[2], items[4]], tile, PARAMS)
    assert_same_pixels(result, clean)
    assert int(result["clear_count"].max()) == 3


def test_no_readable_scene_left_is_a_clear_error(scenes):
    tile, items = scenes
    for item in items[:2]:
        Path(item["assets"]["red"]["href"]).unlink()
    with pytest.raises(NoReadableSourceError) as info:
        compute_tile(items[:2], tile, PARAMS)
    assert sorted(d["id"] for d in info.value.dropped) == [items[0]["id"], items[1]["id"]]
    assert tile.tile_id in str(info.value)


def test_a_signed_href_loses_its_query_in_the_error(scenes):
    tile, items = scenes
    items[1]["assets"]["red"]["href"] += "?sig=SECRET-SIGNATURE&se=2030"
    with pytest.raises(SourceReadError) as info:
        compute_tile(items, tile, PARAMS, read_failure_policy="fail")
    assert info.value.item_id == items[1]["id"] and info.value.asset == "red"
    assert "SECRET-SIGNATURE" not in str(info.value)


def test_a_bad_policy_is_refused(scenes):
    tile, items = scenes
    with pytest.raises(ValueError, match="read_failure_policy"):
        compute_tile(items, tile, PARAMS, read_failure_policy="ignore")  # type: ignore[arg-type]
