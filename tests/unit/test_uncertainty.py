"""The corrected methods' 90 % interval: split-conformal on the self-validation's held-out
errors, mergeable over chunks, calibrated, and reported by the evaluation."""

import math

import dask
import numpy as np
import pytest

from cloudfree.errors import MethodOutputError
from cloudfree.evaluation.harness import Case, evaluate_cases
from cloudfree.methods import corrected_interval, interpolate_corrected
from cloudfree.methods._provenance import Reconstruction
from cloudfree.methods.corrected import UNCERTAINTY_NODATA
from cloudfree.methods.corrected_interval import (
    DISTANCE_EDGES_PX,
    ERROR_EDGES,
    MIN_CALIBRATION,
    calibration_histogram,
    conformal_quantile,
    interval_table,
)
from cloudfree.methods.correction import kernel_radius
from cloudfree.methods.interpolate_corrected import interpolation_candidate
from cloudfree.methods.interpolate_corrected import mosaic as interpolate_corrected_mosaic
from cloudfree.testing import reflectance_cube

SMALL_SIGMAS = (2.0, 4.0)
N_DISTANCE = len(DISTANCE_EDGES_PX) + 1
N_ERROR = len(ERROR_EDGES) - 1


def noisy_series(size=96, n_dates=8, n_bands=2, seed=0, noise=0.01):
    """A landscape with a per-date offset, i.i.d. Gaussian noise and round clouds: (T, C, H,
    W) truth, (T, H, W) clear. The noise makes the errors of held-out and of hidden pixels
    exchangeable, as the conformal interval assumes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    land = 0.2 + 0.1 * np.sin(yy / 7.0) * np.cos(xx / 9.0)
    truth = np.stack([np.stack([land * (1 + 0.05 * c) + 0.02 * t
                                + rng.normal(0, noise, (size, size)) for c in range(n_bands)])
                      for t in range(n_dates)]).astype(np.float32)
    clear = np.ones((n_dates, size, size), bool)
    for t in range(1, n_dates, 2):
        for _ in range(3):
            cy, cx = rng.integers(0, size, 2)
            clear[t] &= (yy - cy) ** 2 + (xx - cx) ** 2 > rng.uniform(0.08, 0.2) ** 2 * size ** 2
    return truth, clear


def as_case(truth, clear, name="noisy"):
    dates = tuple(str(np.datetime64("2020-05-01") + np.timedelta64(10 * t, "D"))
                  for t in range(len(truth)))
    return Case(bands=truth, band_names=("B04", "B03")[:truth.shape[1]], dates=dates,
                cloud_mask=~clear, paste_masks=None, name=name)


def test_histogram_quantile_is_the_conformal_rank_within_one_bin():
    """The histogram's quantile is the upper edge of the bin that holds the exact
    ``ceil((n + 1) 0.9)``-th smallest error: never below it, at most one bin above."""
    rng = np.random.default_rng(1)
    for n in (120, 1000, 5001):
        errors = np.exp(rng.normal(np.log(0.02), 1.0, n)).clip(max=0.99)
        counts = np.bincount(np.searchsorted(ERROR_EDGES, errors, side="right") - 1,
                             minlength=N_ERROR)
        exact = np.sort(errors)[math.ceil((n + 1) * 0.9) - 1]
        assert exact == np.quantile(errors, math.ceil((n + 1) * 0.9) / n, method="inverted_cdf")
        got = conformal_quantile(counts)
        position = int(np.searchsorted(ERROR_EDGES, exact, side="right")) - 1
        assert ERROR_EDGES[position] <= exact < got == ERROR_EDGES[position + 1]
        assert got / exact < 10 ** 0.04 + 1e-9  # one bin: 25 per decade
    assert conformal_quantile(np.eye(N_ERROR)[5] * 8) == corrected_interval.MAX_HALF_WIDTH  # n < 9


def test_sparse_bins_pool_their_neighbours_then_all_bands():
    counts = np.zeros((2, N_DISTANCE, N_ERROR))
    counts[0, 0, 10] = MIN_CALIBRATION  # band 0: enough near pixels (errors in bin 10)
    counts[0, 2, 30] = MIN_CALIBRATION // 2  # too few alone (errors in bin 30)
    counts[1, 1, 50] = MIN_CALIBRATION - 1  # band 1: too few in all
    layers = np.stack([counts[None], np.zeros_like(counts)[None]])  # one mask, nothing its own
    table, level = interval_table(layers.ravel(), n_bands=2, masks=1)
    assert level == corrected_interval.COVERAGE  # no mask's own pixels to test a level on
    assert table[0, 0] == ERROR_EDGES[11]  # its own: the upper edge of bin 10
    # the others widen (farther first on a tie) until they reach bin 0: 150 pixels, the
    # 136th smallest error in bin 30
    assert (table[0, 1:] == ERROR_EDGES[31]).all()
    # band 1 pools every band: 249 pixels, the 225th in bin 50
    assert (table[1] == ERROR_EDGES[51]).all()
    assert conformal_quantile(counts.sum(axis=(0, 1))) == ERROR_EDGES[51]


def _frame_inputs(size=64, seed=0):
    truth, clear = noisy_series(size=size, seed=seed)
    days = np.arange(len(truth)) * 10.0
    frame = 3  # a cloudy date: real gaps
    values = np.where(clear[:, None], truth, np.nan)
    candidates = interpolation_candidate(values, clear, days, frame)[None]
    return truth, clear, frame, candidates


def test_per_chunk_counts_add_up_to_the_whole_image_exactly():
    """Counts over chunk cores (with halos) add up to the whole image's, distances beyond
    the halo (16 px here) included: they are capped at it on both."""
    size = 96
    truth, usable, frame, candidates = _frame_inputs(size=size)
    fraction = (~usable).mean(axis=(1, 2))
    depth = kernel_radius(max(SMALL_SIGMAS))
    kw = dict(frame=frame, shape=(size, size), seed=0, masks=4, index=0,
              sigma=SMALL_SIGMAS[-1], cap=float(depth))
    whole = calibration_histogram(truth[frame], usable, candidates, fraction, np.arange(size),
                                  np.arange(size), None, **kw)
    total = np.zeros_like(whole)
    for y0 in range(0, size, 20):
        for x0 in range(0, size, 24):
            ys = slice(max(0, y0 - depth), min(size, y0 + 20 + depth))
            xs = slice(max(0, x0 - depth), min(size, x0 + 24 + depth))
            rows, cols = np.arange(size)[ys], np.arange(size)[xs]
            core = (((rows >= y0) & (rows < y0 + 20))[:, None]
                    & ((cols >= x0) & (cols < x0 + 24))[None, :])
            total += calibration_histogram(truth[frame][:, ys, xs], usable[:, ys, xs],
                                           candidates[:, :, ys, xs], fraction, rows, cols,
                                           core, **kw)
    np.testing.assert_array_equal(total, whole)
    assert whole.sum() > 2 * MIN_CALIBRATION
    # every distance bin up to the cap's (16 px: the third) is populated
    layers = whole.reshape(2, 4, 2, N_DISTANCE, N_ERROR)
    per_distance = layers[0].sum(axis=(0, 1, 3))
    assert (per_distance[:3] > 0).all() and per_distance[3] == 0
    # each mask's own pixels are some of its pixels, and some masks overlap
    assert (layers[1] <= layers[0]).all() and 0 < layers[1].sum() < layers[0].sum()


def test_chunked_mosaic_states_the_whole_mosaics_interval():
    truth, clear = noisy_series(size=96)
    days = 19850.0 + 10 * np.arange(len(truth))
    truth[:, :, :6, :6] = np.nan  # never clear: nodata
    clear[:, :6, :6] = False
    reflectance, clear = reflectance_cube(truth, days, bands=("red", "green"), clear=clear)
    whole = interpolate_corrected_mosaic(reflectance, clear, sigmas_px=SMALL_SIGMAS)
    lazy = interpolate_corrected_mosaic(reflectance.chunk({"y": 24, "x": 24}),
                                        clear.chunk({"y": 24, "x": 24}), sigmas_px=SMALL_SIGMAS)
    with dask.config.set(scheduler="threads"):
        out = lazy.compute()
    np.testing.assert_array_equal(out["uncertainty"].values, whole["uncertainty"].values)
    width = whole["uncertainty"].values
    assert width.dtype == np.uint16
    frame = int(np.argmin(np.abs(days - days.mean())))
    visible = clear.values[frame]
    assert (width[:, visible] == 0).all()  # observed: exact
    assert (width[:, :6, :6] == UNCERTAINTY_NODATA).all()  # no value, no interval
    gaps = ~visible
    gaps[:6, :6] = False
    assert gaps.any() and ((width[:, gaps] > 0) & (width[:, gaps] < 1000)).all()


def test_the_evaluation_interval_covers_about_90_percent_and_is_0_where_observed():
    truth, clear = noisy_series(size=96)
    case = as_case(truth, clear)
    [record] = evaluate_cases([case], ["interpolate_corrected"], seed=0)
    assert 0.85 <= record["coverage_90"] <= 0.95
    assert 0.01 < record["interval_width"] < 0.1
    series = np.where(clear[:, None], truth, np.nan).astype(np.float32)
    series[0][:, 30:50, 30:50] = np.nan
    out = interpolate_corrected.evaluate(series, case.days, 0)
    visible = np.isfinite(series[0]).all(axis=0)
    assert (out.half_width[:, visible] == 0).all()
    assert (out.half_width[:, ~visible] > 0).all()
    inside = np.abs(out.values - truth[0]) <= out.half_width
    assert 0.8 <= inside[:, ~visible].mean() <= 0.99  # one sample: a looser band


def test_the_harness_records_coverage_and_width():
    truth = np.full((4, 2, 16, 16), 0.3, np.float32)
    cloud = np.zeros((4, 16, 16), bool)
    cloud[1, :8] = True  # a 50 % cloud to paste
    case = Case(bands=truth, band_names=("B04", "B03"), dates=tuple(
        f"2020-05-0{d}" for d in range(1, 5)), cloud_mask=cloud, paste_masks=None, name="flat")
    width = np.stack([np.full((16, 16), 0.5, np.float32), np.full((16, 16), 0.1, np.float32)])

    def stated(series, days, target):  # band 0 holds 0.3 (within 0.5), band 1 does not
        return Reconstruction(np.zeros_like(series[target]), width)

    def bare(series, days, target):
        return np.zeros_like(series[target])

    def unstated(series, days, target):
        return Reconstruction(np.zeros_like(series[target]))

    records = {r["method"]: r for r in evaluate_cases(
        [case], {"stated": stated, "bare": bare, "unstated": unstated}, seed=0)}
    assert records["stated"]["coverage_90"] == 0.5
    assert records["stated"]["interval_width"] == pytest.approx(0.3)
    for name in ("bare", "unstated"):
        assert records[name]["coverage_90"] is None and records[name]["interval_width"] is None
        assert records[name]["mae"] == pytest.approx(0.3)

    def negative(series, days, target):
        return Reconstruction(np.zeros_like(series[target]), -width)

    with pytest.raises(MethodOutputError, match="negative half-width"):
        evaluate_cases([case], {"negative": negative}, seed=0)


def test_the_generator_states_an_interval_and_the_ablation_none():
    import torch

    from cloudfree.methods.generator import reconstruct_target
    from cloudfree.testing import model_card, tiny_generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        truth, clear = noisy_series(size=48, n_bands=3)
        series = np.where(clear[:, None], truth, np.nan).astype(np.float32)
        series[0][:, 10:30, 10:30] = np.nan
        days = np.arange(len(truth)) * 10.0
        model, card = tiny_generator(), model_card()
        out = reconstruct_target(model, card, series, days, 0, ("B04", "B03", "B02"))
    finally:
        torch.set_num_threads(threads)  # later tests keep the thread count they set
    visible = np.isfinite(series[0]).all(axis=0)
    assert (out.half_width[:, visible] == 0).all()
    assert (out.half_width[:, ~visible] > 0).all()
    np.testing.assert_array_equal(out.values[:, visible], series[0][:, visible])
    bare = reconstruct_target(model, card, series, days, 0, ("B04", "B03", "B02"), adapt=False)
    assert bare.half_width is None


def _cross_validated_level(counts, masks, n_bands):
    """The level of :func:`corrected_interval.interval_level`, brute force: for each level, each
    mask's own errors (drawn back out of the histogram, at their bins' upper edges) against
    the interval of the other masks' errors."""
    counts = counts.reshape(2, masks, n_bands, N_DISTANCE, N_ERROR)
    upper = ERROR_EDGES[1:]
    for level in corrected_interval.LEVELS:
        inside = total = 0
        for m in range(masks):
            rest = counts[0].sum(axis=0) - counts[0, m]  # the other masks, pooled
            table = corrected_interval._quantile_table(rest, level)
            for band in range(n_bands):
                for d in range(N_DISTANCE):
                    errors = np.repeat(upper, counts[1, m, band, d].astype(int))
                    inside += np.count_nonzero(errors <= table[band, d])
                    total += errors.size
        if inside >= 0.9 * total:
            return level
    return corrected_interval.LEVELS[-1]


def test_the_level_rises_until_each_mask_is_covered_by_the_others():
    """Masks with errors of different scales (a tile's gaps are not exchangeable with each
    mask): calibrated on the other masks, a mask of larger errors is under-covered at 90 %,
    so the level rises until, pooled, 90 % of the masks' own pixels are covered; masks of
    one scale keep 0.9. Brute force agrees."""
    rng = np.random.default_rng(3)
    masks, n_bands = 4, 2

    def histogram(scales):
        counts = np.zeros((2, masks, n_bands, N_DISTANCE, N_ERROR))
        for m, scale in enumerate(scales):
            for band in range(n_bands):
                errors = np.abs(rng.normal(0, scale, 3000))
                bins = np.clip(np.searchsorted(ERROR_EDGES, errors, side="right") - 1, 0,
                               N_ERROR - 2)
                distance = rng.integers(0, N_DISTANCE, errors.size)
                alone = rng.random(errors.size) < 0.7
                np.add.at(counts[0, m, band], (distance, bins), 1)
                np.add.at(counts[1, m, band], (distance[alone], bins[alone]), 1)
        return counts.ravel()

    same = histogram([0.02] * masks)
    assert corrected_interval.interval_level(same, n_bands=n_bands, masks=masks) == 0.9
    mixed = histogram([0.01, 0.02, 0.03, 0.05])
    level = corrected_interval.interval_level(mixed, n_bands=n_bands, masks=masks)
    assert 0.9 < level < corrected_interval.LEVELS[-1]
    assert level == _cross_validated_level(mixed, masks, n_bands)
    table, stated = interval_table(mixed, n_bands=n_bands, masks=masks)
    nominal, fixed = interval_table(mixed, n_bands=n_bands, masks=masks, select_level=False)
    assert stated == level and fixed == 0.9 and (table >= nominal).all()
    assert (table > nominal).any()
