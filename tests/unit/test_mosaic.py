import numpy as np

from cloudfree.quicklook import rgb_uint8, side_by_side
from cloudfree.testing import make_items, make_tile
from cloudfree.tile import MosaicParams, compute_tile, items_for_tile

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")


def test_compute_tile_removes_a_masked_cloud(tmp_path):
    rng = np.random.default_rng(0)
    n, size = 5, 48
    surface = rng.integers(1200, 3000, size=(len(BANDS), size, size), dtype=np.uint16)
    noise = rng.integers(0, 50, size=(n, len(BANDS), size, size), dtype=np.uint16)
    stack = surface[None] + noise
    scl = np.full((n, size // 2, size // 2), 4, np.uint16)
    stack[2, :, 10:30, 10:30] = 9000  # a cloud on date 2 ...
    scl[2, 5:15, 5:15] = 9  # ... flagged by the (20 m) SCL
    tile = make_tile(size=size)
    arrays = {b: stack[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    items = make_items(tmp_path, arrays, tile=tile)
    assert len(items_for_tile(items, tile)) == n
    result = compute_tile(items, tile, MosaicParams(dilation_m=0, chunksize=32))
    refl = result["reflectance"].values
    assert refl.shape == (len(BANDS), size, size)
    assert refl.max() < 4000  # the cloud is gone
    count = result["clear_count"].values
    assert (count[10:30, 10:30] == n - 1).all() and count[0, 0] == n
    keep = [0, 1, 3, 4]
    expected = np.median(stack[keep, :, 20, 20].astype(np.float32), axis=0).round()
    np.testing.assert_array_equal(refl[:, 20, 20], expected)


def test_rgb_stretch_and_panels():
    dn = np.array([[0, 1000, 4000]], np.uint16)  # nodata, reflectance 0, 0.3
    img = rgb_uint8(dn, dn, dn)
    assert img.shape == (1, 3, 3)
    assert img[0, 0].tolist() == [0, 0, 0] and img[0, 1].tolist() == [0, 0, 0]
    assert img[0, 2].tolist() == [255, 255, 255]
    panel = side_by_side([("a", np.zeros((10, 20, 3), np.uint8)), ("b", img)])
    assert panel.size == (20 + 8 + 3, 10 + 18)
