import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from stackstac.rio_env import LayeredEnv

from cloudfree.cube import build_cube, read_error_text
from cloudfree.errors import SourceReadError, UnknownAssetError
from cloudfree.storage import S3Session
from cloudfree.testing import make_items, make_tile


@pytest.fixture()
def scenes(tmp_path):
    rng = np.random.default_rng(0)
    red = rng.integers(1000, 5000, size=(3, 32, 32), dtype=np.uint16)
    red[1, :, :4] = 0  # swath edge
    scl = np.full((3, 16, 16), 4, dtype=np.uint16)  # 20 m, like Earth Search
    scl[2, :8, :8] = 9
    tile = make_tile(size=32)
    return tile, red, scl, make_items(tmp_path, {"red": red, "scl": scl}, tile=tile)


def test_cube_keeps_dn_nodata_and_grid(scenes):
    tile, red, scl, items = scenes
    cube = build_cube(items, ["red", "scl"], tile=tile, chunksize=16)
    assert cube.dtype == np.uint16
    assert cube.dims == ("time", "band", "y", "x")
    assert cube.shape == (3, 2, 32, 32)
    assert cube.chunks[0] == (3,)  # time whole
    assert cube.chunks[2] == (16, 16)
    # centre coordinates, not top-left
    assert float(cube.x[0]) == tile.bounds[0] + 5
    assert float(cube.y[0]) == tile.bounds[3] - 5
    values = cube.values
    np.testing.assert_array_equal(values[:, 0], red)
    assert (values[1, 0, :, :4] == 0).all()
    # 20 m SCL resampled nearest onto the 10 m grid
    np.testing.assert_array_equal(values[2, 1, :16, :16], 9)
    np.testing.assert_array_equal(values[2, 1, 16:, 16:], 4)


def test_same_day_scenes_are_merged(tmp_path):
    tile = make_tile(size=16)
    a = np.zeros((1, 16, 16), np.uint16)
    a[:, :, :8] = 100
    b = np.zeros((1, 16, 16), np.uint16)
    b[:, :, 6:] = 200
    items = make_items(tmp_path / "a", {"red": a}, tile=tile)
    items += make_items(tmp_path / "b", {"red": b}, tile=tile, start=dt.date(2024, 5, 1))
    items[1]["id"] = "TEST_OTHER_TILE"
    items[1]["properties"]["datetime"] = "2024-05-01T10:00:05Z"
    cube = build_cube(items, ["red"], tile=tile)
    assert cube.sizes["time"] == 1
    frame = cube.values[0, 0]
    # no nodata left where either scene has data; the later scene lies on top
    assert (frame[:, :6] == 100).all() and (frame[:, 6:] == 200).all()


def test_missing_asset_is_named(scenes):
    tile, _, _, items = scenes
    with pytest.raises(UnknownAssetError, match="nir"):
        build_cube(items, ["red", "nir"], tile=tile)


def test_a_failed_read_names_its_scene_and_asset(scenes):
    tile, _, _, items = scenes
    href = items[1]["assets"]["scl"]["href"]
    data = Path(href).read_bytes()
    Path(href).write_bytes(data[: len(data) // 2])
    cube = build_cube(items, ["red", "scl"], tile=tile, chunksize=16)
    with pytest.raises(SourceReadError) as info:
        cube.compute()
    assert (info.value.item_id, info.value.asset, info.value.href) == (items[1]["id"], "scl",
                                                                       href)


def test_read_error_text_masks_credentials_and_signatures():
    env = LayeredEnv(always={"session": S3Session("AKIAEXAMPLEKEY", "wJalrEXAMPLESECRET"),
                             "AWS_SESSION_TOKEN": "sessiontoken123"})
    cause = RuntimeError(
        "HTTP response code: 403 <AWSAccessKeyId>AKIAEXAMPLEKEY</AWSAccessKeyId> "
        "wJalrEXAMPLESECRET sessiontoken123 /vsicurl/https://host/b/x.tif?X-Amz-Signature=abc1")
    try:
        raise RuntimeError("Read failed. See previous exception for details.") from cause
    except RuntimeError as exc:
        text = read_error_text(exc, env)
    for secret in ("AKIAEXAMPLEKEY", "wJalrEXAMPLESECRET", "sessiontoken123", "abc1"):
        assert secret not in text
    # GDAL's own message (the root of the chain), with the URL kept but for its query
    assert text.startswith("HTTP response code: 403")
    assert "https://host/b/x.tif?<query removed>" in text
