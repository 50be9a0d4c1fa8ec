"""Residual correction (cloudfree.methods.correction) and the non-learned interpolate_corrected."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cloudfree.evaluation.harness import BASELINES, evaluate_cases
from cloudfree.methods import correction
from cloudfree.methods.corrected import correct_frame
from cloudfree.methods.interpolate_corrected import evaluate as interpolate_corrected_fn
from cloudfree.testing import shared_data_dir


def interpolate_corrected(series, days, target):
    """The evaluation function's values (it may return a Reconstruction with an interval)."""
    out = interpolate_corrected_fn(series, days, target)
    return np.asarray(getattr(out, "values", out))


def disc(size, cy, cx, radius):
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def test_spread_carries_a_constant_residual_into_the_gap():
    visible = ~disc(40, 20, 20, 6)
    residual = np.where(visible, 0.03, 0.0)[None]
    out = correction.spread(residual, visible, 8.0)
    assert np.allclose(out[0][~visible], 0.03, atol=1e-9)


def test_spread_leaves_pixels_out_of_reach_uncorrected():
    visible = np.zeros((200, 10), bool)
    visible[:5] = True
    out = correction.spread(np.full((1, 200, 10), 0.05) * visible, visible, 4.0)
    reach = correction.kernel_radius(4.0)
    assert np.allclose(out[0, :5], 0.05)
    assert (out[0, 5 + reach + 1:] == 0).all()


def direct_spread(residual, visible, sigma):
    """The definition, with scipy's direct Gaussian filter (what spread computed before the
    FFT): normalised convolution, 0 where the weight is below 1e-8."""
    def gauss(x):
        return ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=correction.TRUNCATE)
    weight = gauss(visible.astype(np.float64))
    out = np.stack([gauss(np.where(visible, r, 0.0)) for r in residual])
    return np.where(weight > 1e-8, out / np.maximum(weight, 1e-8), 0.0)


@pytest.mark.parametrize("shape", [(7, 5), (40, 300), (130, 97)])
def test_spread_equals_the_direct_gaussian_filter(shape):
    """The FFT path equals scipy's direct filter (reflect edges, truncated kernel) up to
    float rounding, also on images smaller than the kernel, and reaches exactly as far."""
    rng = np.random.default_rng(3)
    residual = rng.normal(size=(2, *shape))
    visible = rng.random(shape) > 0.6
    visible[: shape[0] // 2, : shape[1] // 3] = False
    for sigma in (0.5, 4.0, 32.0):
        expected = direct_spread(residual, visible, sigma)
        out = correction.spread(residual, visible, sigma)
        assert np.allclose(out, expected, rtol=0, atol=1e-8)
        assert np.array_equal(out == 0, expected == 0)


def test_held_out_errors_equal_the_direct_filter_per_sigma():
    rng = np.random.default_rng(4)
    residual = rng.normal(size=(3, 90, 70))
    visible = rng.random((90, 70)) > 0.3
    held = disc(90, 40, 30, 15)[:, :70]
    scored = np.zeros((90, 70), bool)
    scored[10:80] = True
    errors = correction.held_out_errors(residual, visible, held, scored=scored)
    summed = held & scored
    for i, sigma in enumerate(correction.SIGMAS_PX):
        spread = direct_spread(residual, visible & ~held, sigma)
        expected = ((spread - residual)[:, summed] ** 2).sum(axis=1)
        assert np.allclose(errors[i], expected, rtol=1e-10, atol=0)
    assert not correction.held_out_errors(residual, visible, np.zeros_like(held)).any()


def test_correct_keeps_visible_pixels_bit_exact():
    rng = np.random.default_rng(0)
    observed = rng.random((3, 30, 30)).astype(np.float32)
    visible = ~disc(30, 15, 15, 7)
    out = correction.correct(np.zeros_like(observed), observed, visible, 8.0)
    assert np.array_equal(out[:, visible], observed[:, visible])


def test_choice_prefers_wide_sigma_for_smooth_residual_and_the_better_candidate():
    """The self-validation holds out the cloud of the other, partly cloudy date."""
    yy, _ = np.mgrid[:40, :40]
    truth = (0.2 + 0.01 * yy / 40.0)[None]
    usable = np.ones((2, 40, 40), bool)
    usable[1] = ~disc(40, 20, 20, 8)  # 13 % cloud: its mask is the held-out one
    rng = np.random.default_rng(1)
    noisy = truth + rng.normal(0, 0.02, truth.shape)
    candidates = np.stack([noisy, np.full_like(truth, 0.2)]).astype(np.float32)
    _, index, sigma = correct_frame(truth.astype(np.float64), usable, candidates, frame=0,
                                    masks=1)
    assert index == 1 and sigma >= 8


def bias_series(seed=0, size=48):
    """Six dates of one landscape; each date has its own smooth additive bias (haze)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    land = 0.1 + 0.2 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) + 1) / 2
    days = np.arange(6) * 10.0
    bias = [0.04 * rng.random() * (1 + yy / size) for _ in days]
    series = np.stack([np.stack([land + b, 1.2 * land + b]) for b in bias]).astype(np.float32)
    return series, days


def test_interpolate_corrected_removes_a_per_date_bias_that_interpolation_keeps():
    truth, days = bias_series()
    series = truth.copy()
    hidden = disc(48, 24, 24, 10)
    series[2][:, hidden] = np.nan
    series[[1, 3]][:, :, disc(48, 10, 30, 8)] = np.nan
    corrected = interpolate_corrected(series, days, 2)
    plain = BASELINES["interpolate"](series, days, 2)
    err_corrected = np.abs(corrected - truth[2])[:, hidden].mean()
    err_plain = np.abs(plain - truth[2])[:, hidden].mean()
    assert err_corrected < 0.25 * err_plain
    assert np.array_equal(corrected[:, ~hidden], truth[2][:, ~hidden])


def test_interpolate_corrected_with_nothing_visible_is_interpolation():
    truth, days = bias_series()
    series = truth.copy()
    series[2] = np.nan
    out = interpolate_corrected(series, days, 2)
    assert np.allclose(out, BASELINES["interpolate"](series, days, 2))


L1C = (shared_data_dir() or Path("/nonexistent")) / "s2_slovenia_2015.npz"


@pytest.mark.skipif(not L1C.exists(), reason="needs the real case")
def test_interpolate_corrected_beats_interpolate_on_real_l1c_case():
    records = evaluate_cases([L1C], ["interpolate", "interpolate_corrected"], seed=0)
    psnr = {r["method"]: r["psnr"] for r in records}
    assert psnr["interpolate_corrected"] >= psnr["interpolate"] + 1.0


def test_filtering_at_pixels_far_from_an_edge_pads_only_what_they_need():
    """At pixels a radius or more inside a side, that side is not padded (a chunk's core
    inside its halo): the values still equal scipy's on the whole image, near every side
    and far from all."""
    rng = np.random.default_rng(5)
    image = rng.random((150, 170))
    bank = correction._GaussianBank(image.shape, (2.0, 8.0))  # radius 32
    boxes = [(slice(32, 150), slice(0, 138)), (slice(0, 118), slice(32, 170)),
             (slice(40, 100), slice(50, 120)), (slice(0, 150), slice(0, 170))]
    for box in boxes:
        where = np.zeros(image.shape, bool)
        where[box] = rng.random(image[box].shape) < 0.4
        got = bank.filtered(image, where)
        for i, sigma in enumerate((2.0, 8.0)):
            expected = ndimage.gaussian_filter(image, sigma, mode="reflect",
                                               truncate=correction.TRUNCATE)[where]
            np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-12)
    assert bank.filtered(image, np.zeros(image.shape, bool)).shape == (2, 0)
