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


@pytest.mark.parametrize(("height", "width"), [(400, 600), (330, 540), (600, 400), (513, 64)])
def test_every_raster_larger_than_a_block_gets_overviews(height, width):
    """A GIS zoomed out reads overviews, not the full file: any side over the 512 px
    block gives at least one level, down to a raster that fits in one block."""
    data = write_cog(_dn((height, width)), transform=TRANSFORM, crs="EPSG:32633", nodata=0)
    memfile, src = _open(data)
    with memfile, src:
        assert cog_validate(memfile.name, quiet=True)[0]
        levels = src.overviews(1)
        assert levels and levels[0] == 2
        assert max(height, width) / levels[-1] <= 512
    data = write_cog(_dn((512, 512)), transform=TRANSFORM, crs="EPSG:32633", nodata=0)
    memfile, src = _open(data)
    with memfile, src:
        assert src.overviews(1) == []  # one block: nothing to gain


def test_class_raster_keeps_its_colour_table_and_class_names_inside_the_tiff():
    classes = np.random.default_rng(4).integers(0, 5, (600, 400), dtype=np.uint8)
    colours = {0: (0, 0, 0, 0), 1: (46, 139, 87, 255), 2: (70, 130, 180, 255)}
    tags = {"flag_values": "0 1 2", "flag_meanings": "nodata observed composited"}
    data = write_cog(classes, transform=TRANSFORM, crs="EPSG:32633", nodata=0,
                     band_names=["fill"], overview_resampling="nearest", colormap=colours,
                     band_tags=[tags])
    # the bytes alone, as a reader gets them from S3: no .aux.xml sidecar exists
    memfile, src = _open(data)
    with memfile, src:
        assert src.files == [memfile.name]
        assert cog_validate(memfile.name, quiet=True)[0]
        assert src.colorinterp[0] == rasterio.enums.ColorInterp.palette
        table = src.colormap(1)
        assert table[1] == (46, 139, 87, 255) and table[2] == (70, 130, 180, 255)
        assert table[0][3] == 0  # nodata is transparent
        assert src.tags(1) | tags == src.tags(1)
        assert src.descriptions == ("fill",) and src.nodata == 0
        assert src.overviews(1) == [2]
        np.testing.assert_array_equal(src.read(1), classes)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"array": np.zeros((2, 8, 8), np.uint8), "colormap": {1: (1, 2, 3)}}, "colormap"),
    ({"array": np.zeros((8, 8), np.float32), "colormap": {1: (1, 2, 3)}}, "colormap"),
    ({"array": np.zeros((2, 8, 8), np.uint8), "band_tags": [{}]}, "band_tags"),
])
def test_bad_class_metadata_is_a_clear_error(kwargs, name):
    with pytest.raises(InvalidParameterError, match=name):
        write_cog(transform=TRANSFORM, crs="EPSG:32633", nodata=0, **kwargs)


def test_write_tile_writes_gis_ready_cogs(tmp_path):
    """What write_tile puts on storage, read back with rasterio as QGIS would: overviews on
    a tile over one block, nodata, descriptions, the fill colour table and class names."""
    import xarray as xr

    from cloudfree.methods import FILL_CLASSES
    from cloudfree.publish import fill_colour
    from cloudfree.testing import make_tile
    from cloudfree.tile import MosaicParams, write_tile

    tile = make_tile(size=600)
    height, width = tile.shape
    rng = np.random.default_rng(5)
    bands = ("red", "green", "blue")
    result = xr.Dataset({
        "reflectance": (("band", "y", "x"), _dn((3, height, width))),
        "clear_count": (("y", "x"), rng.integers(0, 6, (height, width), dtype=np.uint16)),
        "source_date": (("y", "x"), rng.integers(19_800, 19_900, (height, width),
                                                 dtype=np.uint16)),
        "fill": (("y", "x"), rng.integers(0, 5, (height, width), dtype=np.uint8)),
    }, coords={"band": list(bands)})
    written = write_tile(result, tile, base_url=str(tmp_path), fs=None,
                         params=MosaicParams(bands=bands))
    assert {w.key for w in written} == {*bands, "clear_count", "source_date", "fill",
                                        "thumbnail"}
    for asset in written:
        if asset.kind == "thumbnail":
            continue
        assert cog_validate(asset.href, quiet=True)[0]
        with rasterio.open(asset.href) as src:
            assert src.overviews(1) == [2], asset.key
            assert src.descriptions == (asset.key,)
            assert src.nodata == (None if asset.key == "clear_count" else 0)
    with rasterio.open(tmp_path / "fill.tif") as src:
        table = src.colormap(1)
        for code, (name, _) in FILL_CLASSES.items():
            assert table[code][:3] == fill_colour(name)
        assert src.tags(1)["flag_meanings"].split() == [n for n, _ in FILL_CLASSES.values()]
        assert src.tags(1)["flag_values"].split() == [str(c) for c in FILL_CLASSES]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{b}.tif" for b in bands] + ["clear_count.tif", "source_date.tif", "fill.tif",
                                       "thumbnail.png"])  # no .aux.xml sidecars
