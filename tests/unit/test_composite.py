import json
import warnings

import numpy as np
import pytest
import xarray as xr

from cloudfree.errors import GeomedianNotConvergedWarning, InvalidParameterError
from cloudfree.methods import (
    FILL_CLASSES,
    FILL_COMPOSITED,
    FILL_INTERPOLATED,
    FILL_NODATA,
    FILL_OBSERVED,
    composite,
    composite_array,
)
from cloudfree.methods.median import nanmedian_time
from cloudfree.testing import make_cube

#: The per-pixel composites of the registry.
METHODS = ("median", "bap", "geomedian", "interpolate")


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


# --------------------------------------------------------------------------- all methods

DAYS = np.array([19000.0, 19010.0, 19020.0, 19030.0, 19040.0])


def _stack(n_dates=5, n_bands=3, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.5, (n_dates, n_bands, size, size)).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_pixel_clear_on_one_date_only(method):
    values = _stack()
    values[[0, 1, 3, 4], :, 2, 1] = np.nan  # only date 2 is clear there
    out = composite_array(values, DAYS, method=method, target_day=19027.0)
    np.testing.assert_allclose(out.reflectance[:, 2, 1], values[2, :, 2, 1], rtol=1e-6)
    assert out.clear_count[2, 1] == 1
    assert out.source_day[2, 1] == DAYS[2]
    assert out.fill[2, 1] == FILL_OBSERVED


@pytest.mark.parametrize("method", METHODS)
def test_all_dates_cloudy_is_nodata(method):
    values = _stack()
    values[:, :, 0, 3] = np.nan
    values[2, 1, 1, 1] = np.nan  # one band missing makes the whole observation unusable
    out = composite_array(values, DAYS, method=method)
    assert np.isnan(out.reflectance[:, 0, 3]).all()
    assert np.isnan(out.source_day[0, 3])
    assert out.fill[0, 3] == FILL_NODATA and out.clear_count[0, 3] == 0
    assert out.clear_count[1, 1] == 4 and out.fill[1, 1] != FILL_NODATA
    assert out.reflectance.dtype == np.float32 and out.clear_count.dtype == np.uint16
    assert out.fill.dtype == np.uint8 and out.source_day.dtype == np.float32


def test_linear_change_in_time():
    # value = 0.1 + 0.01 * (day - 19000) / 10 on every pixel and band
    ramp = 0.1 + 0.01 * (DAYS - DAYS[0]) / 10
    values = np.broadcast_to(ramp[:, None, None, None], (5, 2, 3, 3)).astype(np.float32).copy()
    values[2, :, 0, 0] = np.nan
    target = 19025.0
    interp = composite_array(values, DAYS, method="interpolate", target_day=target)
    np.testing.assert_allclose(interp.reflectance, 0.1 + 0.01 * 2.5, rtol=1e-6)
    assert (interp.fill == FILL_INTERPOLATED).all() and (interp.source_day == target).all()
    # with date 2 hidden at (0, 0), it interpolates between dates 1 and 3
    interp_hole = composite_array(values, DAYS, method="interpolate", target_day=19020.0)
    np.testing.assert_allclose(interp_hole.reflectance[:, 0, 0], 0.12, rtol=1e-6)
    assert interp_hole.fill[0, 0] == FILL_INTERPOLATED and interp_hole.fill[1, 1] == FILL_OBSERVED
    assert interp_hole.source_day[1, 1] == 19020.0  # exact date: the observation itself
    median = composite_array(values, DAYS, method="median")
    np.testing.assert_allclose(median.reflectance[:, 1, 1], 0.12, rtol=1e-6)
    assert median.source_day[1, 1] == DAYS[2] and median.fill[1, 1] == FILL_COMPOSITED
    # at (0, 0) dates 0, 1, 3, 4 remain: median 0.12 between dates 1 and 3 -> nearest is date 1
    np.testing.assert_allclose(median.reflectance[:, 0, 0], 0.12, rtol=1e-6)
    assert median.source_day[0, 0] == DAYS[1]
    bap = composite_array(values, DAYS, method="bap", target_day=19032.0)
    np.testing.assert_allclose(bap.reflectance, 0.13, rtol=1e-6)  # date 3, nearest in time
    assert (bap.source_day == DAYS[3]).all() and (bap.fill == FILL_OBSERVED).all()


def test_interpolate_one_side_takes_the_nearest():
    values = _stack()
    values[3:, :, 1, 2] = np.nan  # nothing after the target at (1, 2)
    values[:3, :, 0, 0] = np.nan  # nothing before the target at (0, 0)
    out = composite_array(values, DAYS, method="interpolate", target_day=19025.0)
    np.testing.assert_array_equal(out.reflectance[:, 1, 2], values[2, :, 1, 2])
    assert out.source_day[1, 2] == DAYS[2] and out.fill[1, 2] == FILL_OBSERVED
    np.testing.assert_array_equal(out.reflectance[:, 0, 0], values[3, :, 0, 0])
    assert out.source_day[0, 0] == DAYS[3] and out.fill[0, 0] == FILL_OBSERVED
    both = composite_array(values, DAYS, method="interpolate", target_day=19025.0)
    expected = (values[2, :, 3, 3] + values[3, :, 3, 3]) / 2
    np.testing.assert_allclose(both.reflectance[:, 3, 3], expected, rtol=1e-6)


def test_bap_prefers_dates_far_from_clouds():
    values = _stack(n_dates=2, size=16, n_bands=2)
    days = np.array([19000.0, 19020.0])
    values[0, :, 8, 10] = np.nan  # a cloud pixel on date 0, two pixels from (8, 8)
    out = composite_array(values, days, method="bap", target_day=19010.0,
                          cloud_distance_px=5.0)
    # equally near in time: date 1 is clear around (8, 8), date 0 has a cloud 2 px away
    assert out.source_day[8, 8] == days[1]
    np.testing.assert_array_equal(out.reflectance[:, 8, 8], values[1, :, 8, 8])
    # 5 px or more from the cloud both saturate; the tie goes to the earliest date
    assert out.source_day[0, 0] == days[0]
    # without the cloud term, (8, 8) is a tie again
    no_cloud = composite_array(values, days, method="bap", target_day=19010.0,
                               cloud_weight=0.0)
    assert no_cloud.source_day[8, 8] == days[0]


def test_bap_haze_and_day_of_year():
    values = _stack(n_dates=3, n_bands=2, size=2)
    days = np.array([19000.0, 19020.0, 19000.0 + 365.0])
    values[0, 0] = 0.30  # hazy: bright in band 0
    values[1, 0] = 0.05
    hazy = composite_array(values, days, method="bap", target_day=19000.0, haze_band=0,
                           haze_weight=1.0, day_weight=0.1, cloud_weight=0.0)
    assert (hazy.source_day == days[1]).all()
    near = composite_array(values, days, method="bap", target_day=19000.0, cloud_weight=0.0)
    assert (near.source_day == days[0]).all()
    # a year later on the same day of year counts as near unless seasonal=False
    values[0] = np.nan
    seasonal = composite_array(values, days, method="bap", target_day=19002.0)
    assert (seasonal.source_day == days[2]).all()
    absolute = composite_array(values, days, method="bap", target_day=19002.0,
                               seasonal=False)
    assert (absolute.source_day == days[1]).all()


def _reference_geomedian(points, tol=1e-12, max_iter=200_000):
    """Slow per-pixel Weiszfeld with the Vardi-Zhang rule in float64, from the mean."""
    y = points.mean(axis=0)
    for _ in range(max_iter):
        dist = np.linalg.norm(points - y, axis=1)
        on = dist == 0
        if on.all():
            return y
        inv = 1 / dist[~on]
        mean = (inv[:, None] * points[~on]).sum(axis=0) / inv.sum()
        if on.any():
            pull = np.linalg.norm((mean - y) * inv.sum())
            rinv = on.sum() / pull if pull > 0 else np.inf
            nxt = max(0.0, 1 - rinv) * mean + min(1.0, rinv) * y
        else:
            nxt = mean
        if np.linalg.norm(nxt - y) < tol:
            return nxt
        y = nxt
    return y


@pytest.mark.parametrize(("n_dates", "n_bands"), [(9, 4), (20, 6), (3, 13), (7, 2)])
def test_geomedian_matches_slow_reference(n_dates, n_bands):
    rng = np.random.default_rng(n_dates * n_bands)
    values = rng.random((n_dates, n_bands, 12, 12)).astype(np.float32)
    values.transpose(0, 2, 3, 1)[rng.random((n_dates, 12, 12)) < 0.4] = np.nan
    values[:, :, 5, 5] = values[0, :, 5, 5]  # all observations equal
    values[:2, :, 6, 6] = values[:2, :, 6, 7]  # a duplicated point
    days = 19000.0 + 10 * np.arange(n_dates)
    out = composite_array(values, days, method="geomedian")
    worst = 0.0
    for i, j in np.ndindex(12, 12):
        ok = np.isfinite(values[:, :, i, j]).all(axis=1)
        if not ok.any():
            assert np.isnan(out.reflectance[:, i, j]).all() and out.fill[i, j] == FILL_NODATA
            continue
        expected = _reference_geomedian(values[ok, :, i, j].astype(np.float64))
        worst = max(worst, np.abs(out.reflectance[:, i, j] - expected).max())
        assert out.fill[i, j] == (FILL_OBSERVED if ok.sum() == 1 else FILL_COMPOSITED)
        assert days[ok].min() <= out.source_day[i, j] <= days[ok].max()
    assert worst < 1e-4
    np.testing.assert_allclose(out.reflectance[:, 5, 5], values[0, :, 5, 5], rtol=1e-6)


def test_geomedian_of_one_band_is_the_median():
    # in 1-D the geometric median is the median (for an even count, any point between the
    # two middle values; the midpoint is taken)
    values = _stack(n_dates=6, n_bands=1, size=8, seed=4)
    values[4:, :, :4] = np.nan
    out = composite_array(values, np.arange(6.0), method="geomedian")
    np.testing.assert_allclose(out.reflectance, nanmedian_time(values), rtol=1e-6)


def test_geomedian_is_the_minimiser():
    rng = np.random.default_rng(7)
    values = rng.random((8, 3, 6, 6)).astype(np.float32)
    out = composite_array(values, np.arange(8.0), method="geomedian").reflectance

    def cost(y):
        return np.linalg.norm(values.astype(np.float64) - y[None], axis=1).sum(axis=0)

    best = cost(out.astype(np.float64))
    for _ in range(20):
        nudged = out + rng.normal(0, 1e-3, out.shape)
        assert (cost(nudged) >= best - 1e-9).all()


def test_geomedian_warns_when_not_converged():
    values = _stack(n_dates=7, n_bands=3, size=4, seed=1)
    with pytest.warns(GeomedianNotConvergedWarning, match="max_iter"):
        composite_array(values, np.arange(7.0), method="geomedian", max_iter=1, tol=1e-15)


@pytest.mark.parametrize(("params", "name"), [
    ({"tol": -1}, "tol"), ({"max_iter": 0}, "max_iter"), ({"alpha": 1}, "alpha"),
    ({"cloud_distance_px": 0}, "cloud_distance_px"), ({"haze_band": 7}, "haze_band"),
    ({"seasonal": "yes"}, "seasonal"),
])
def test_invalid_parameters_are_named(params, name):
    method = "geomedian" if name in ("tol", "max_iter", "alpha") else "bap"
    with pytest.raises(InvalidParameterError, match=name):
        composite_array(_stack(), DAYS, method=method, **params)


def test_fill_classes_cover_every_code():
    assert sorted(FILL_CLASSES) == [0, 1, 2, 3, 4]
    assert [FILL_CLASSES[c][0] for c in sorted(FILL_CLASSES)] == [
        "nodata", "observed", "composited", "interpolated", "generated"]


def _cloudy_cube(size=40, n_dates=6, seed=3):
    cube = make_cube(n_dates=n_dates, size=size, seed=seed, bands=("blue", "green", "red"))
    rng = np.random.default_rng(seed)
    clear = rng.random((n_dates, size, size)) > 0.3
    clear[1, 10:30, 14:18] = False  # a cloud across the chunk border at x = 16
    clear[:, 0, 0] = False  # never clear
    return cube, xr.DataArray(clear, dims=("time", "y", "x"))


@pytest.mark.parametrize(("method", "params"), [(m, {}) for m in METHODS] + [
    ("bap", {"cloud_distance_px": 3.0}), ("bap", {"cloud_distance_px": 6.5, "day_sigma": 500.0}),
])
def test_every_method_lazy_equals_eager(method, params):
    cube, clear = _cloudy_cube()
    kwargs = {"target_date": "2024-05-20", **params}
    eager = composite(cube, clear, method=method, **kwargs)
    lazy = composite(cube.chunk({"time": -1, "band": 1, "y": 16, "x": 16}),
                     clear.chunk({"y": 16, "x": 16}), method=method, **kwargs)
    assert all(lazy[name].chunks is not None for name in lazy.data_vars)
    computed = lazy.compute()
    # median, bap and interpolate do the same per-pixel arithmetic in any chunk: equal.
    # geomedian iterates a block's pixels together (einsum and sums over the pixels still
    # iterating, a vertex test on objective differences), so a pixel's last float bits
    # depend on its block: equal up to one DN, and its weighted mean date up to one day.
    inexact = {"reflectance", "source_date"} if method == "geomedian" else set()
    for name in ("reflectance", "clear_count", "source_date", "fill"):
        if name in inexact:
            assert eager[name].dims == computed[name].dims, name
            diff = np.abs(eager[name].values.astype(int) - computed[name].values.astype(int))
            assert diff.max() <= 1, name
        else:
            xr.testing.assert_equal(eager[name], computed[name])
    assert eager["reflectance"].dtype == np.uint16 and eager["clear_count"].dtype == np.uint16
    assert eager["source_date"].dtype == np.uint16 and eager["fill"].dtype == np.uint8
    assert eager["reflectance"].values[:, 0, 0].tolist() == [0, 0, 0]
    assert eager["source_date"].values[0, 0] == 0 and eager["fill"].values[0, 0] == FILL_NODATA
    days = cube.time.values.astype("datetime64[D]").astype(int)
    inside = eager["source_date"].values[1:, 1:]
    assert (inside >= days.min()).all() and (inside <= days.max()).all()
    assert eager.attrs["method"] == method
    json.dumps(eager.attrs["parameters"])


def test_bap_source_date_is_the_chosen_date_and_dn_values():
    cube, clear = _cloudy_cube(size=8)
    out = composite(cube, clear, method="bap", target_date="2024-05-21")
    assert out.attrs["parameters"]["haze_band"] == "blue"
    assert out.attrs["parameters"]["target_date"] == "2024-05-21"
    days = cube.time.values.astype("datetime64[D]").astype(int)
    for i, j in [(3, 4), (7, 7), (2, 6)]:
        t = int(np.flatnonzero(days == out["source_date"].values[i, j])[0])
        assert clear.values[t, i, j]
        np.testing.assert_array_equal(out["reflectance"].values[:, i, j], cube.values[t, :, i, j])


def test_composite_rejects_bad_target_date_and_dims():
    cube, clear = _cloudy_cube(size=4)
    with pytest.raises(InvalidParameterError, match="target_date"):
        composite(cube, clear, method="interpolate", target_date="not a date")
    with pytest.raises(InvalidParameterError, match="clear"):
        composite(cube, clear.rename(y="row"))
    with pytest.raises(InvalidParameterError, match="haze_band"):
        composite(cube, clear, method="bap", haze_band="B99")


def test_geomedian_known_answers():
    # an equilateral triangle: the centroid; a triangle with a 174° angle: that vertex
    values = np.zeros((3, 2, 1, 2), np.float32)
    values[:, :, 0, 0] = [[0.2, 0.2], [1.2, 0.2], [0.7, 0.2 + np.sqrt(3) / 2]]
    values[:, :, 0, 1] = [[0.5, 0.5], [1.5, 0.5], [-0.5, 0.6]]
    out = composite_array(values, np.arange(3.0), method="geomedian")
    np.testing.assert_allclose(out.reflectance[:, 0, 0], [0.7, 0.2 + np.sqrt(3) / 6], atol=1e-5)
    np.testing.assert_array_equal(out.reflectance[:, 0, 1], [0.5, 0.5])
    assert out.source_day[0, 0] == pytest.approx(1.0, abs=1e-3)  # equal weights
    assert out.source_day[0, 1] == pytest.approx(0.0, abs=1e-3)  # the vertex's date


def test_interpolate_at_is_the_interpolate_core():
    """The corrected methods start from exactly what ``interpolate`` makes."""
    from cloudfree.methods.interpolate import interpolate_at

    rng = np.random.default_rng(5)
    values = rng.random((5, 3, 6, 7)).astype(np.float32)
    values[rng.random((5, 6, 7))[:, None].repeat(3, axis=1) < 0.4] = np.nan
    usable = np.isfinite(values).all(axis=1)
    values = np.where(usable[:, None], values, np.nan)
    days = 19000.0 + 10 * np.arange(5)
    expected = composite_array(values, days, method="interpolate", target_day=19023.0)
    np.testing.assert_array_equal(interpolate_at(values, usable, days, 19023.0),
                                  expected.reflectance)
