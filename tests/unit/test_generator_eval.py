"""The generator as a method of the evaluation harness."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cloudfree.evaluation import harness as evaluate
from cloudfree.evaluation.harness import Case, evaluate_cases, resolve_methods
from cloudfree.methods.generator import fill_target, select_frames
from cloudfree.models.weights import WEIGHTS_DIR
from cloudfree.testing import model_card, shared_data_dir, tiny_generator

torch.set_num_threads(2)
SHIPPED = (WEIGHTS_DIR / "default.pt").exists()


def tiny_model():
    return tiny_generator(), model_card()


def small_case(n_bands=3, size=24, n_dates=6, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = 0.1 + 0.2 * (np.sin(yy / 4.0) * np.cos(xx / 5.0) + 1) / 2
    bands = np.stack([np.stack([base * (1 + 0.1 * t + 0.05 * c) for c in range(n_bands)])
                      for t in range(n_dates)]).astype(np.float32)
    cloud = np.zeros((n_dates, size, size), bool)
    for t in (1, 2, 4):
        cy, cx = rng.integers(0, size, 2)
        cloud[t] = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 3) ** 2
    dates = tuple(str(np.datetime64("2020-05-01") + np.timedelta64(10 * t, "D"))
                  for t in range(n_dates))
    names = ("B04", "B03", "B02")[:n_bands]
    return Case(bands=bands, band_names=names, dates=dates, cloud_mask=cloud,
                paste_masks=None, name="small")


def test_fill_target_keeps_observed_pixels():
    model, card = tiny_model()
    case = small_case()
    series = np.where(case.cloud_mask[:, None], np.nan, case.bands)
    series[0][:, 5:15, 5:15] = np.nan
    out = fill_target(model, card, series, case.days, 0, case.band_names)
    visible = np.isfinite(series[0])
    assert np.array_equal(out[visible], series[0][visible])
    assert np.isfinite(out).all() and out.shape == series[0].shape


def test_select_frames_nearest_in_time():
    series = np.ones((6, 1, 4, 4), np.float32)
    series[2] = np.nan  # no clear pixel: never chosen
    days = np.arange(6) * 10.0
    assert select_frames(series, days, 3, 3).tolist() == [1, 3, 4]


def test_harness_passes_band_names():
    seen = []

    def method(series, days, target, *, band_names=None):
        seen.append(band_names)
        return np.nan_to_num(series[target])

    evaluate_cases([small_case()], {"probe": method}, seed=0, pastes_per_target=1)
    assert seen and all(names == ("B04", "B03", "B02") for names in seen)
    assert "generator" in resolve_methods("median,generator")
    with pytest.raises(evaluate.InvalidParameterError):
        resolve_methods("median,nonsense")


@pytest.mark.skipif(not SHIPPED, reason="no shipped weights")
def test_generator_method_on_small_case():
    records = evaluate_cases([small_case()], ["interpolate", "generator"], seed=0,
                             pastes_per_target=1)
    by_method = {r["method"]: r for r in records}
    assert by_method["generator"]["psnr"] is not None
    assert np.isfinite(by_method["generator"]["psnr"])


L1C = (shared_data_dir() or Path("/nonexistent")) / "s2_slovenia_2015.npz"


@pytest.mark.skipif(not SHIPPED or not L1C.exists(), reason="needs weights and the real case")
def test_generator_beats_the_best_non_learned_method_on_real_l1c_case():
    records = evaluate_cases([L1C], ["interpolate", "interpolate_corrected", "generator",
                                     "network"], seed=0, pastes_per_target=1)
    by_method = {r["method"]: r for r in records}
    best = by_method["interpolate_corrected"]
    assert by_method["generator"]["psnr"] >= best["psnr"] + 1.0
    assert by_method["generator"]["ssim"] >= best["ssim"]
    # the network alone, without head or correction, must not lose to plain interpolation
    assert by_method["network"]["psnr"] >= by_method["interpolate"]["psnr"]


def test_each_width_and_the_candidate_are_chosen_with_the_margin():
    """A candidate's width is the one it would get alone (its widest, unless another is 5 %
    better); the first candidate stays unless another, at its width, is 5 % better."""
    from cloudfree.methods.correction import best_pair

    sigmas = (4.0, 8.0, 16.0, 32.0)
    near_ties = [1.0, 0.97, 0.99, 1.0]  # 3 % at best: the widest
    assert best_pair(np.array([near_ties]), sigmas) == (0, 32.0)
    assert best_pair(np.array([[0.9, 1.0, 1.0, 1.0]]), sigmas) == (0, 4.0)
    # the second candidate: 4 px by its own margin, and 15 % below the first's widest
    assert best_pair(np.array([near_ties, [0.85, 0.95, 0.96, 0.95]]), sigmas) == (1, 4.0)
    # 3 % below the first: the first stays, at its own width
    assert best_pair(np.array([near_ties, [0.99, 0.98, 0.97, 0.97]]), sigmas) == (0, 32.0)
    # no usable held-out mask for the first: the second is the default
    assert best_pair(np.array([[0.0] * 4, near_ties]), sigmas) == (1, 32.0)


def _cloudy_target(size=48):
    """A series whose target date (2) carries a fine pattern no other date shows."""
    case = small_case(size=size, n_dates=8, seed=3)
    case.bands[2] += 0.05 * (np.random.default_rng(1).random((size, size)) < 0.5)
    series = np.where(case.cloud_mask[:, None], np.nan, case.bands).astype(np.float32)
    days = np.array([np.datetime64(d, "D").astype(np.int64) for d in case.dates], np.float64)
    return series, days, case.bands[2].astype(np.float64)


@pytest.mark.parametrize("head_kind", ["noise", "oracle"])
def test_a_head_worse_than_its_prior_gives_way_to_interpolate_corrected(head_kind):
    """Point 3 of issue 15: where the head that fills cannot learn, the self-validation
    (visible pixels only) picks the prior, and the generator's frame is
    interpolate_corrected's exactly; a head that predicts the target well is kept. The
    prior is scored as itself, beside the head's out-of-sample prediction
    (``head_and_prior``), whatever the tile's size."""
    from cloudfree.methods import interpolate_corrected
    from cloudfree.methods.corrected import correct_frame
    from cloudfree.methods.correction import fill_with_series_median
    from cloudfree.methods.interpolate_corrected import interpolation_candidate

    series, days, truth = _cloudy_target()
    usable = np.isfinite(series).all(axis=1)
    assert (~usable[2]).any() and usable[2].any()
    prior = fill_with_series_median(interpolation_candidate(series, usable, days, 2), series)
    noise = np.random.default_rng(0).normal(0.0, 0.05, prior.shape).astype(np.float32)
    # (an exact oracle would have no held-out error at all, which reads as no usable mask)
    head = (truth + noise / 25).astype(np.float32) if head_kind == "oracle" else prior + noise
    observed = np.asarray(series[2], np.float64)
    filled, index, _ = correct_frame(
        observed, usable, np.stack([head, prior]), frame=2,
        scoring=np.stack([head, prior]))
    if head_kind != "noise":
        assert index == 0
        if head_kind == "oracle":
            assert np.abs(filled - truth).max() < 0.02
        return
    assert index == 1
    expected = interpolate_corrected.evaluate(series, days, 2).values
    np.testing.assert_array_equal(np.nan_to_num(filled).astype(np.float32), expected)
