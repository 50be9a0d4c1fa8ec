import warnings

import numpy as np
import pytest
import xarray as xr

from cloudfree.composite import composite, nanmedian_time
from cloudfree.errors import InvalidParameterError
from cloudfree.testing import make_cube


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_nanmedian_matches_numpy(n):
    rng = np.random.default_rng(n)
    values = rng.random((n, 6, 5)).astype(np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_allclose(nanmedian_time(values), expected, rtol=1e-6)


def test_median_of_clear_observations_only():
    cube = make_cube(n_dates=5, size=8)
    clear = xr.DataArray(np.ones((5, 8, 8), bool), dims=("time", "y", "x"))
    clear[1:3] = False
    cube[1:3] = 60000  # bright clouds on the masked dates must not leak
    out = composite(cube, clear)
    expected = np.median(cube.values[[0, 3, 4]].astype(np.float32), axis=0).round()
    np.testing.assert_array_equal(out["reflectance"].values, expected.astype(np.uint16))
    assert (out["clear_count"].values == 3).all()
    assert out["reflectance"].dtype == np.uint16


def test_all_cloudy_pixel_is_nodata_and_counted_zero():
    cube = make_cube(n_dates=3, size=4)
    clear = xr.DataArray(np.ones((3, 4, 4), bool), dims=("time", "y", "x"))
    clear[:, 0, 0] = False
    out = composite(cube, clear)
    assert (out["reflectance"].values[:, 0, 0] == 0).all()
    assert out["clear_count"].values[0, 0] == 0
    assert (out["reflectance"].values[:, 1:, 1:] > 0).all()


def test_nodata_observation_is_not_clear():
    cube = make_cube(n_dates=3, size=4)
    cube[0, :, 0, 0] = 0  # nodata (swath edge) on date 0
    clear = xr.DataArray(np.ones((3, 4, 4), bool), dims=("time", "y", "x"))
    out = composite(cube, clear)
    assert out["clear_count"].values[0, 0] == 2
    expected = np.median(cube.values[1:, :, 0, 0].astype(np.float32), axis=0).round()
    np.testing.assert_array_equal(out["reflectance"].values[:, 0, 0], expected)


def test_lazy_equals_eager():
    cube = make_cube(n_dates=6, size=40, seed=3)
    rng = np.random.default_rng(0)
    clear = xr.DataArray(rng.random((6, 40, 40)) > 0.3, dims=("time", "y", "x"))
    eager = composite(cube, clear)
    lazy = composite(cube.chunk({"time": -1, "band": 1, "y": 16, "x": 16}),
                     clear.chunk({"y": 16, "x": 16}))
    assert lazy["reflectance"].chunks is not None
    xr.testing.assert_equal(eager["reflectance"], lazy["reflectance"].compute())
    xr.testing.assert_equal(eager["clear_count"], lazy["clear_count"].compute())


def test_unknown_method():
    cube = make_cube(n_dates=2, size=2)
    with pytest.raises(InvalidParameterError, match="median"):
        composite(cube, xr.ones_like(cube.isel(band=0), dtype=bool), method="mean")
