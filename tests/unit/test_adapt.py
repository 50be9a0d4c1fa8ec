"""The test-time head: it learns what the target date's clear pixels show, chunked equals
whole, and the pairs it trains on are the same whichever chunk a pixel is in."""

import dask
import numpy as np
import pytest

from cloudfree.masking import dilate
from cloudfree.methods._head_stage import head_candidate
from cloudfree.methods.interpolate_corrected import evaluate as interpolate_corrected
from cloudfree.models import head as adapt
from cloudfree.testing import reflectance_cube


def two_kinds_of_land(size=64, n_dates=5, seed=0):
    """Two land covers in a fine random pattern (too fine for a smooth correction), told
    apart by their spectra. Between dates each kind changes its own way; on the target
    date (index 2) one kind brightened, the other darkened. Returns (values (T, 3, H, W)
    with a cloud on the target, truth of the target, days, cloud mask)."""
    rng = np.random.default_rng(seed)
    kind = rng.random((size, size)) < 0.5
    base = np.where(kind, 0.30, 0.12)[None] * np.array([1.0, 0.8, 0.6])[:, None, None]
    days = 19000.0 + 12 * np.arange(n_dates)
    values = np.stack([base + 0.01 * t * np.where(kind, 1, -1)
                       + 0.005 * rng.standard_normal((3, size, size))
                       for t in range(n_dates)]).astype(np.float32)
    target = 2
    values[target] = base + np.where(kind, 0.08, -0.05) + 0.005 * rng.standard_normal(
        (3, size, size))
    truth = values[target].copy()
    yy, xx = np.mgrid[:size, :size]
    cloud = (yy - 30) ** 2 + (xx - 26) ** 2 < 14 ** 2
    values[target][:, cloud] = np.nan
    return values, truth, days, cloud


def test_the_head_learns_how_the_target_date_differs():
    """Interpolation in time, even corrected by the target's own residual, cannot know
    that the two kinds of land moved apart on the target date; the head learns it from
    the target's clear pixels and fills the gap to within the noise."""
    values, truth, days, cloud = two_kinds_of_land()
    head = adapt.adapted_frame(values, days, 2)
    baseline = interpolate_corrected(values, days, 2)
    rmse = lambda pred: float(np.sqrt(((pred - truth)[:, cloud] ** 2).mean()))  # noqa: E731
    assert rmse(baseline) > 0.04
    assert rmse(head) < 0.015
    assert rmse(head) < rmse(baseline) / 3


def test_unfamiliar_land_keeps_the_prior():
    """Land under the cloud unlike any clear pixel of the target (a bright third kind
    found nowhere else) would be extrapolated: there the head's change is weighted to 0
    and the prior stands exactly, while familiar land under the same cloud is learnt."""
    values, truth, days, cloud = two_kinds_of_land()
    third = np.zeros(cloud.shape, bool)
    third[24:36, 20:32] = True  # inside the cloud
    assert (cloud & third).sum() == third.sum()
    values[:, :, third] = 0.6 * np.array([1.0, 1.2, 1.4])[:, None]
    values[2][:, cloud] = np.nan
    usable = np.isfinite(values).all(axis=1)
    prior = adapt.prior_frame(values, usable, days, 2)
    head = adapt.adapted_frame(values, days, 2)
    np.testing.assert_array_equal(head[:, third], prior[:, third])
    familiar = cloud & ~dilate(third, radius_px=2)
    assert np.abs(head - prior)[:, familiar].mean() > 0.02


def test_familiarity_is_one_near_the_training_pixels_and_zero_far_away():
    import torch

    rng = np.random.default_rng(4)
    centre = torch.from_numpy(rng.standard_normal((500, 3)).astype(np.float32))
    head = adapt.SeriesHead(3, 1)
    adapt._set_reference(head, centre, seed=0)
    assert 0 < float(head.radius) < 1
    weight = head.familiarity(torch.cat([centre[:5], torch.full((2, 3), 50.0)]))
    np.testing.assert_array_equal(weight.numpy(), [1, 1, 1, 1, 1, 0, 0])


def test_without_enough_clear_pixels_the_prior_stands():
    values, _, days, _ = two_kinds_of_land(size=16)
    values[2] = np.nan
    values[2][:, 0, :5] = 0.2  # 5 clear pixels: under MIN_SAMPLES
    usable = np.isfinite(values).all(axis=1)
    prior = adapt.prior_frame(values, usable, days, 2)
    np.testing.assert_array_equal(adapt.adapted_frame(values, days, 2), prior)


def test_feature_frames_nearest_usable_dates_in_time_order():
    days = np.array([0.0, 10, 20, 30, 40, 50, 60, 70, 80, 90])
    fraction = np.zeros(10)
    fraction[4] = 0.9  # too cloudy to be an input
    chosen = adapt.feature_frames(fraction, days, 5, count=4)
    np.testing.assert_array_equal(chosen, [2, 3, 6, 7])  # 4 too cloudy; 2 and 8 tie: the earlier


@pytest.mark.parametrize("rate", [1.0, 0.3])
def test_sampling_is_the_same_in_any_chunk(rate):
    rng = np.random.default_rng(1)
    train = rng.random((50, 70)) < 0.8
    rows, cols = np.arange(50), np.arange(70)
    whole = adapt.sample_mask(train, rows, cols, rate=rate, seed=3)
    part = adapt.sample_mask(train[10:30, 40:], rows[10:30], cols[40:], rate=rate, seed=3)
    np.testing.assert_array_equal(part, whole[10:30, 40:])
    assert abs(whole.sum() / train.sum() - rate) < 0.05
    other_seed = adapt.sample_mask(train, rows, cols, rate=rate, seed=4)
    assert (rate == 1.0) == np.array_equal(other_seed, whole)


def test_patches_and_convolution_agree():
    """The head trains on 3 x 3 windows as matrix products and predicts by convolution:
    the same numbers at every pixel, the image edge reflected in both."""
    rng = np.random.default_rng(2)
    feats = rng.random((8, 12, 15)).astype(np.float32)
    prior = rng.random((2, 12, 15)).astype(np.float32)
    head = adapt.SeriesHead(8, 2)
    picked = np.ones((12, 15), bool)
    inputs, base, _ = adapt.samples(feats, prior, prior, picked)
    import torch

    with torch.no_grad():
        pairs = (torch.from_numpy(base) + head.forward_patches(torch.from_numpy(inputs))).numpy()
    image = adapt.predict(head, feats, prior)
    np.testing.assert_allclose(pairs.T.reshape(2, 12, 15), image, atol=1e-5)


@pytest.mark.parametrize("chunk", [17])
def test_chunked_head_equals_whole(chunk):
    """One head per tile, trained on the same pairs in the same order: the chunked
    prediction equals the whole-array one (max difference under 1e-3 reflectance)."""
    values, _, days, _ = two_kinds_of_land(size=48, seed=5)
    reflectance, clear = reflectance_cube(values, days)
    network = np.nan_to_num(values[1])  # any (C, H, W) input will do here
    kw = dict(days=days, frame=2, max_samples=900)  # sampled, not every pixel
    whole = head_candidate(reflectance.values, clear.values, network, **kw)
    lazy = head_candidate(reflectance.chunk({"y": chunk, "x": chunk}).data,
                                clear.chunk({"y": chunk, "x": chunk}).data, network, **kw)
    assert hasattr(lazy, "dask")
    with dask.config.set(scheduler="synchronous"):
        chunked = lazy.compute()
    assert chunked.shape == whole.shape == (1, 3, 48, 48)
    assert np.abs(chunked - whole).max() < 1e-3
    # and it did learn: not the prior
    usable = np.isfinite(values).all(axis=1)
    prior = adapt.prior_frame(values, usable, days, 2)
    assert np.abs(whole[0] - prior).max() > 0.02
