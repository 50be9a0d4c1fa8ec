"""COG encoding: validity, metadata, round trips, and local puts."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rio_cogeo import cog_validate

from cloudfree.cog import cog_creation_options, put, write_cog
from cloudfree.errors import InvalidParameterError

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_100_000.0)


def _dn(shape, seed=0):
    return np.random.default_rng(seed).integers(1, 12_000, size=shape, dtype=np.uint16)


def _open(data):
    memfile = MemoryFile(data)
    return memfile, memfile.open()


def test_cog_is_valid_with_internal_overviews_and_tiles():
    data = write_cog(
        _dn((1, 600, 600)), transform=TRANSFORM, crs="EPSG:32633", nodata=0, blocksize=256
    )
    memfile, src = _open(data)
    with memfile, src:
        assert cog_validate(memfile.name, quiet=True)[0]
        assert src.overviews(1) == [2, 4]
        assert src.block_shapes[0] == (256, 256)
        assert src.profile["compress"] == "deflate"
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["PREDICTOR"] == "2"


def test_metadata_and_pixels_round_trip():
    pixels = _dn((3, 64, 80), seed=1)
    pixels[:, :5, :7] = 0
    data = write_cog(
        pixels,
        transform=TRANSFORM,
        crs=32633,
        nodata=0,
        scale=0.0001,
        offset=[-0.1, -0.1, -0.2],
        band_names=["red", "green", "blue"],
        compress="zstd",
    )
    memfile, src = _open(data)
    with memfile, src:
        np.testing.assert_array_equal(src.read(), pixels)
        assert src.nodata == 0
        assert src.scales == (0.0001,) * 3
        assert src.offsets == (-0.1, -0.1, -0.2)
        assert src.descriptions == ("red", "green", "blue")
        assert src.crs.to_epsg() == 32633 and src.transform == TRANSFORM
        assert src.dtypes == ("uint16",) * 3
        assert src.profile["compress"] == "zstd"
        assert (src.read_masks(1)[:5, :7] == 0).all() and src.read_masks(1)[10, 10] == 255


def test_two_dimensional_input_and_dtype_cast():
    reflectance = np.linspace(0.0, 0.6, 32 * 32, dtype=np.float32).reshape(32, 32)
    reflectance[0, 0] = np.nan
    data = write_cog(
        (reflectance + 0.1) / 0.0001,
        transform=TRANSFORM,
        crs="EPSG:32633",
        nodata=0,
        dtype="uint16",
    )
    memfile, src = _open(data)
    with memfile, src:
        stored = src.read(1)
        assert src.count == 1 and stored.dtype == np.uint16
        assert stored[0, 0] == 0  # NaN became nodata
        np.testing.assert_array_equal(stored[1:], np.rint((reflectance[1:] + 0.1) / 0.0001))


def test_float_and_categorical_cogs_get_their_predictor():
    values = np.random.default_rng(2).random((2, 48, 48)).astype(np.float32)
    data = write_cog(
        values,
        transform=list(TRANSFORM)[:6],
        crs="EPSG:4326",
        nodata=None,
        overview_resampling="bilinear",
    )
    memfile, src = _open(data)
    with memfile, src:
        assert src.nodata is None
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(src.read(), values)
    classes = np.random.default_rng(3).integers(0, 12, (48, 48), dtype=np.uint8)
    data = write_cog(
        classes, transform=TRANSFORM, crs="EPSG:32633", nodata=0, overview_resampling="nearest"
    )
    memfile, src = _open(data)
    with memfile, src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1") == "1"
        np.testing.assert_array_equal(src.read(1), classes)


def test_creation_options_pick_the_predictor():
    assert cog_creation_options(dtype=np.dtype("uint16"))["PREDICTOR"] == "STANDARD"
    assert cog_creation_options(dtype=np.dtype("float32"))["PREDICTOR"] == "FLOATING_POINT"
    categorical = cog_creation_options(dtype=np.dtype("uint8"), overview_resampling="nearest")
    assert categorical["PREDICTOR"] == "NO" and categorical["OVERVIEW_RESAMPLING"] == "NEAREST"
    assert cog_creation_options(dtype=np.dtype("uint16"), compress="zstd")["COMPRESS"] == "ZSTD"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"array": np.zeros((1, 2, 8, 8), np.uint16)}, "array"),
        ({"array": np.zeros((2, 8, 8), np.uint16), "scale": [0.1, 0.1, 0.1]}, "scale"),
        ({"array": np.zeros((8, 8), np.uint16), "blocksize": 100}, "blocksize"),
        ({"array": np.zeros((2, 8, 8), np.uint16), "band_names": ["a"]}, "band_names"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, name):
    with pytest.raises(InvalidParameterError, match=name):
        write_cog(transform=TRANSFORM, crs="EPSG:32633", nodata=0, **kwargs)


def test_put_writes_local_paths_atomically(tmp_path):
    target = tmp_path / "a" / "b" / "red.tif"
    assert put(b"abc", str(target)) == str(target)
    assert target.read_bytes() == b"abc"
    put(b"second", f"file://{target}")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["red.tif"]  # no temp files


def test_put_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(InvalidParameterError, match="s3fs"):
        put(b"x", "s3://bucket/key.tif")
    with pytest.raises(InvalidParameterError, match="url"):
        put(b"x", "https://example.com/key.tif")


def test_written_cog_opens_from_disk(tmp_path):
    data = write_cog(_dn((64, 64)), transform=TRANSFORM, crs="EPSG:32633", nodata=0)
    path = tmp_path / "x.tif"
    put(data, str(path))
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(path) as src:
        assert src.driver == "GTiff" and src.block_shapes == [(512, 512)]
