import dask.array as da
import numpy as np
import pytest
import xarray as xr

from cloudfree.errors import InvalidParameterError
from cloudfree.masking import dilate, scl_clear_mask


def _scl(frames):
    return xr.DataArray(np.asarray(frames, dtype=np.uint16), dims=("time", "y", "x"))


def test_classes_map_to_clear():
    scl = _scl([[[4, 5, 6, 7, 11, 2], [0, 1, 3, 8, 9, 10]]])
    clear = scl_clear_mask(scl, resolution_m=10, dilation_m=0).values[0]
    assert clear[0].tolist() == [True] * 6
    assert clear[1].tolist() == [False] * 6


def test_configurable_classes():
    scl = _scl([[[4, 7]]])
    clear = scl_clear_mask(scl, resolution_m=10, invalid_classes=[7], dilation_m=0).values
    assert clear[0, 0].tolist() == [True, False]


def test_dilation_radius_in_metres():
    frame = np.full((1, 41, 41), 4, dtype=np.uint16)
    frame[0, 20, 20] = 9
    clear = scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=50).values[0]
    yy, xx = np.mgrid[:41, :41]
    dist = np.hypot(yy - 20, xx - 20)
    assert not clear[dist <= 5].any()
    assert clear[dist > 5].all()
    # 20 m pixels: the same 50 m is 2.5 px
    clear20 = scl_clear_mask(_scl(frame), resolution_m=20, dilation_m=50).values[0]
    assert not clear20[dist <= 2.5].any() and clear20[dist > 2.5].all()


def test_water_is_not_dilated():
    frame = np.full((1, 11, 11), 4, dtype=np.uint16)
    frame[0, 5, 5] = 6
    assert scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=100).values.all()


def test_chunked_equals_whole():
    rng = np.random.default_rng(1)
    frames = rng.choice([4, 5, 9, 3], p=[0.6, 0.3, 0.05, 0.05], size=(3, 90, 70)).astype(np.uint16)
    whole = scl_clear_mask(_scl(frames), resolution_m=10, dilation_m=60).values
    lazy = xr.DataArray(da.from_array(frames, chunks=(3, 25, 20)), dims=("time", "y", "x"))
    chunked = scl_clear_mask(lazy, resolution_m=10, dilation_m=60).values
    np.testing.assert_array_equal(whole, chunked)


def test_unknown_class_is_rejected():
    with pytest.raises(InvalidParameterError, match="unknown SCL classes"):
        scl_clear_mask(_scl([[[4]]]), resolution_m=10, invalid_classes=[42])


def test_dilate_empty_mask_is_empty():
    assert not dilate(np.zeros((2, 5, 5), bool), radius_px=3).any()
