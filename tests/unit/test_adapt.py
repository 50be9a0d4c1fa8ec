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
    baseline = getattr(baseline, "values", baseline)  # a Reconstruction, or an array
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


def test_the_adamw_step_is_torchs_bit_for_bit():
    """The head's own AdamW update (no torch.optim, whose first step imports dynamo) is
    torch's: the same parameters after steps at a changing learning rate, exactly."""
    import torch

    torch.manual_seed(0)
    ours, theirs = adapt.SeriesHead(5, 2), adapt.SeriesHead(5, 2)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(300, 45)
    target = torch.randn(300, 2)
    reference = torch.optim.AdamW(theirs.parameters(), lr=1.0,
                                  weight_decay=adapt.WEIGHT_DECAY)
    params = list(ours.parameters())
    before = [p.detach().clone() for p in params]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    with adapt.torch_threads():
        for step, rate in enumerate(adapt.learning_rates(12), start=1):
            for group in reference.param_groups:
                group["lr"] = float(rate)
            reference.zero_grad(set_to_none=True)
            (theirs.forward_standardised(x) - target).abs().mean().backward()
            reference.step()
            for p in params:
                p.grad = None
            (ours.forward_standardised(x) - target).abs().mean().backward()
            adapt.adamw_step(params, moments, step=step, lr=float(rate))
    assert not any(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    for mine, torchs in zip(params, theirs.parameters(), strict=True):
        assert torch.equal(mine, torchs)


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


def _held_out(usable, frame=2, seed=0, masks=4):
    height, width = usable.shape[1:]
    return adapt.held_out_union(usable, (~usable).mean(axis=(1, 2)), np.arange(height),
                                np.arange(width), frame=frame, shape=(height, width),
                                seed=seed, masks=masks)


def test_held_out_union_is_the_correction_masks_and_the_same_in_any_chunk():
    from cloudfree.methods.corrected import held_out_masks

    values, _, days, _ = two_kinds_of_land(size=48, n_dates=6, seed=3)
    values[4][:, :20, :15] = np.nan  # a partly cloudy date: its mask is one of the masks
    usable = np.isfinite(values).all(axis=1)
    whole = _held_out(usable)
    masks = held_out_masks(usable, (~usable).mean(axis=(1, 2)), np.arange(48), np.arange(48),
                           frame=2, shape=(48, 48), seed=0, masks=4)
    np.testing.assert_array_equal(whole, np.logical_or.reduce(masks))
    assert whole[:20, :15].all() and 0.2 < whole.mean() < 0.9
    part = adapt.held_out_union(usable[:, 10:30, 25:], (~usable).mean(axis=(1, 2)),
                                np.arange(10, 30), np.arange(25, 48), frame=2,
                                shape=(48, 48), seed=0, masks=4)
    np.testing.assert_array_equal(part, whole[10:30, 25:])


def test_held_out_pixels_do_not_train_the_head():
    """The target's values on the excluded pixels reach no part of the head: changing
    them changes nothing; without the exclusion the same change moves the prediction."""
    values, _, days, cloud = two_kinds_of_land(size=48, seed=5)
    usable = np.isfinite(values).all(axis=1)
    exclude = _held_out(usable)
    assert (exclude & usable[2]).sum() > 100 and (~exclude & usable[2]).sum() > 100
    changed = values.copy()
    changed[2][:, exclude & usable[2]] += 0.05
    kept = adapt.adapted_frame(values, days, 2, exclude=exclude)
    np.testing.assert_array_equal(adapt.adapted_frame(changed, days, 2, exclude=exclude), kept)
    moved = adapt.adapted_frame(changed, days, 2) - adapt.adapted_frame(values, days, 2)
    assert np.abs(moved[:, cloud]).max() > 0.01


def test_too_few_pixels_outside_the_held_out_union_train_on_all():
    values, _, days, _ = two_kinds_of_land(size=32, seed=2)
    everything = np.ones(values.shape[-2:], bool)
    np.testing.assert_array_equal(adapt.adapted_frame(values, days, 2, exclude=everything),
                                  adapt.adapted_frame(values, days, 2))
    rows, cols = np.arange(1), np.arange(61)
    trainable = np.ones((1, 61), bool)
    held = np.zeros((1, 61), bool)
    held[0, 50:] = True  # 50 outside: enough
    picked = adapt.training_pixels(trainable, held, rows, cols,
                                   adapt.training_counts(trainable, held), max_samples=100, seed=0)
    np.testing.assert_array_equal(picked, ~held)
    held[0, 49] = True  # 49 outside: too few, all train
    picked = adapt.training_pixels(trainable, held, rows, cols,
                                   adapt.training_counts(trainable, held), max_samples=100, seed=0)
    np.testing.assert_array_equal(picked, trainable)


def test_about_max_samples_train_whatever_the_cloud_cover():
    """The sampling rate follows the tile's count of pixels that may train, not its size:
    a cloudier tile, or a larger held-out union, still gives about ``max_samples`` pairs."""
    rng = np.random.default_rng(0)
    rows, cols = np.arange(200), np.arange(300)
    for clear_share in (0.9, 0.3):
        trainable = rng.random((200, 300)) < clear_share
        held = rng.random((200, 300)) < 0.5
        counts = adapt.training_counts(trainable, held)
        picked = adapt.training_pixels(trainable, held, rows, cols, counts, max_samples=5000,
                                       seed=1)
        assert not (picked & (held | ~trainable)).any()
        assert abs(picked.sum() - 5000) < 300


def test_exclude_of_the_wrong_shape_is_refused():
    from cloudfree.errors import InvalidParameterError

    values, _, days, _ = two_kinds_of_land(size=16)
    with pytest.raises(InvalidParameterError, match="exclude"):
        adapt.adapted_frame(values, days, 2, exclude=np.zeros((16, 15), bool))


def _cube_with_held_out_union():
    """A DN cube with one partly cloudy date among the masks: (DN, clear, a network
    prediction, usable, reflectance (NaN where unusable), the held-out union, days)."""
    from cloudfree.methods._driver import to_reflectance, usable_block

    values, _, days, _ = two_kinds_of_land(size=48, n_dates=6, seed=5)
    values[4][:, 30:, 10:40] = np.nan
    reflectance, clear = reflectance_cube(values, days)
    dn, clear = reflectance.values, clear.values
    network = np.nan_to_num(values[1])
    usable = usable_block(dn, clear, nodata=0)
    refl = np.where(usable[:, None], to_reflectance(dn), np.float32(np.nan))
    return dn, clear, network, usable, refl, _held_out(usable, seed=7), days


def test_cube_head_excludes_the_correction_masks_as_the_array_head_does():
    """``head_candidate`` on a DN cube, whole and chunked, trains outside the correction's
    held-out union exactly as ``adapted_frame(..., exclude=union)`` does on reflectance;
    the target's values on the union do not reach it in either."""
    dn, clear, network, usable, refl, exclude, days = _cube_with_held_out_union()
    kw = dict(days=days, frame=2, seed=7, max_samples=900)
    whole = head_candidate(dn, clear, network, **kw)[0]
    array = adapt.adapted_frame(refl, days, 2, extra=network, seed=7, max_samples=900,
                                exclude=exclude)
    np.testing.assert_allclose(whole, array, atol=1e-5)

    changed = dn.copy()
    changed[2][:, exclude & usable[2]] += 500  # 0.05 reflectance, still usable

    with dask.config.set(scheduler="synchronous"):
        import dask.array as da

        def lazy(cube, **extra):
            out = head_candidate(da.from_array(cube, chunks=(-1, -1, 17, 17)),
                                 da.from_array(clear, chunks=(-1, 17, 17)), network,
                                 **kw, **extra)
            return out.compute()[0]

        base = lazy(dn)
        np.testing.assert_array_equal(lazy(changed), base)
        assert np.abs(base - whole).max() < 1e-3
        moved = lazy(changed, masks=0) - lazy(dn, masks=0)
    assert np.abs(moved).max() > 0.01


def _folds(usable, frame=2, seed=7):
    from cloudfree.methods.head_folds import SCORING_FOLDS, held_out_folds

    height, width = usable.shape[1:]
    folds = held_out_folds(usable, (~usable).mean(axis=(1, 2)), np.arange(height),
                           np.arange(width), frame=frame, shape=(height, width), seed=seed,
                           masks=4)
    assert len(folds) == SCORING_FOLDS
    return folds


def test_held_out_folds_split_the_union_and_their_codes_say_which():
    from cloudfree.methods.head_folds import fold_bit, fold_codes

    _, _, _, usable, _, exclude, _ = _cube_with_held_out_union()
    folds = _folds(usable)
    np.testing.assert_array_equal(np.any(folds, axis=0), exclude)
    assert all(fold.any() for fold in folds)
    assert not np.array_equal(folds[0], folds[1])
    code = fold_codes(folds)
    for f, fold in enumerate(folds):
        np.testing.assert_array_equal(fold_bit(code, f), fold)
    np.testing.assert_array_equal(code > 0, exclude)


def test_the_head_pair_fills_with_all_pixels_and_scores_heads_cross_fitted_on_the_folds():
    """``head_pair`` on a tile without pixels to spare: the filling head is
    ``adapted_frame`` on every usable pixel; what is scored is the filling head outside
    the held-out union and, on each fold of the masks, ``adapted_frame`` outside that fold.
    Chunked equals whole, and no scored value on a fold moves when the target's values on
    that fold do, while the filling head's do."""
    import dask.array as da

    from cloudfree.methods._head_stage import head_pair
    from cloudfree.methods.generator import head_pair_frame

    dn, clear, network, usable, refl, exclude, days = _cube_with_held_out_union()
    folds = _folds(usable)
    # more samples than pixels outside the union: the filling head has more to learn from
    kw = dict(days=days, frame=2, seed=7, max_samples=4000)
    filling, scoring = (c[0] for c in head_pair(dn, clear, network, **kw))
    array = adapt.adapted_frame(refl, days, 2, extra=network, seed=7, max_samples=4000)
    np.testing.assert_allclose(filling, array, atol=1e-5)
    np.testing.assert_array_equal(scoring[:, ~exclude], filling[:, ~exclude])
    first = folds[0]
    for fold, only in ((folds[0], first), (folds[1], folds[1] & ~first)):
        crossed = adapt.adapted_frame(refl, days, 2, extra=network, seed=7, max_samples=4000,
                                      exclude=fold)
        assert only.any()
        np.testing.assert_allclose(scoring[:, only], crossed[:, only], atol=1e-5)
    assert np.abs(filling - scoring)[:, exclude].max() > 1e-3  # other heads there
    frame_pair = head_pair_frame(refl, days, 2, extra=network, seed=7, max_samples=4000)
    assert frame_pair[2] is False
    np.testing.assert_allclose(frame_pair[0], filling, atol=1e-5)
    np.testing.assert_allclose(frame_pair[1], scoring, atol=1e-5)

    with dask.config.set(scheduler="synchronous"):
        def lazy(cube):
            pair = head_pair(da.from_array(cube, chunks=(-1, -1, 17, 17)),
                             da.from_array(clear, chunks=(-1, 17, 17)), network, **kw)
            return [c.compute()[0] for c in pair]

        lazy_filling, lazy_scoring = lazy(dn)
        assert np.abs(lazy_filling - filling).max() < 1e-3
        assert np.abs(lazy_scoring - scoring).max() < 1e-3
        for fold, only in ((folds[0], first), (folds[1], folds[1] & ~first)):
            changed = dn.copy()
            changed[2][:, fold & usable[2]] += 500  # 0.05 reflectance, still usable
            moved_filling, moved_scoring = lazy(changed)
            # the head scored there never saw them
            np.testing.assert_array_equal(moved_scoring[:, only], lazy_scoring[:, only])
            assert np.abs(moved_filling - lazy_filling).max() > 0.01


@pytest.mark.parametrize("network_input", [True, False])
def test_the_twin_fills_when_the_tile_has_pixels_to_spare(network_input):
    """With at least ``max_samples`` candidates outside the held-out union both heads
    would train on that many: ``head_pair`` trains the twin alone and it fills too, whole
    and chunked, as ``head_pair_frame`` does on reflectance; the network is an input only
    when given."""
    import dask.array as da

    from cloudfree.methods._head_stage import head_pair
    from cloudfree.methods.generator import head_pair_frame
    from cloudfree.methods.head_folds import twin_fills
    from cloudfree.models.head import training_counts

    dn, clear, network, usable, refl, exclude, days = _cube_with_held_out_union()
    network = network if network_input else None
    outside = training_counts(usable[2], exclude)[1]
    assert 300 < outside < 4000
    assert twin_fills(training_counts(usable[2], exclude), 300)
    assert not twin_fills(training_counts(usable[2], exclude), 4000)
    kw = dict(days=days, frame=2, seed=7, max_samples=300)
    filling, scoring = (c[0] for c in head_pair(dn, clear, network, **kw))
    np.testing.assert_array_equal(filling, scoring)
    array = adapt.adapted_frame(refl, days, 2, extra=network, seed=7, max_samples=300,
                                exclude=exclude)
    np.testing.assert_allclose(scoring, array, atol=1e-5)
    frame_pair = head_pair_frame(refl, days, 2, extra=network, seed=7, max_samples=300)
    np.testing.assert_array_equal(frame_pair[0], frame_pair[1])
    assert frame_pair[2] is True  # the twin fills
    np.testing.assert_allclose(frame_pair[1], array, atol=1e-5)
    with dask.config.set(scheduler="synchronous"):
        lazy = head_pair(da.from_array(dn, chunks=(-1, -1, 17, 17)),
                         da.from_array(clear, chunks=(-1, 17, 17)), network, **kw)
        lazy_filling, lazy_scoring = (c.compute()[0] for c in lazy)
    np.testing.assert_array_equal(lazy_filling, lazy_scoring)
    assert np.abs(lazy_scoring - scoring).max() < 1e-3


def test_a_training_is_the_same_beside_torch_work_at_another_thread_count():
    """torch's thread count is the process's: a one-thread task in another thread used to
    change a head trained on two threads beside it. Now the other waits, and the head is
    the one trained alone."""
    import threading

    import torch

    rng = np.random.default_rng(0)
    # big enough that torch splits the products over its threads
    inputs = rng.random((8000, 42, 3, 3), dtype=np.float32)
    prior = rng.random((8000, 6), dtype=np.float32)
    observed = prior + 0.1 * rng.random((8000, 6), dtype=np.float32)

    def fit():
        head = adapt.fit_head(inputs, prior, observed, seed=0, steps=40)
        return torch.cat([p.detach().flatten() for p in head.parameters()])

    alone = fit()
    done = threading.Event()
    products = []

    def beside():
        while not done.is_set() and len(products) < 100_000:  # bounded, whatever happens
            with adapt.torch_threads(1):
                products.append(float(torch.mm(torch.rand(500, 500), torch.rand(500, 500)).sum()))

    other = threading.Thread(target=beside)
    other.start()
    try:
        with_other = fit()
    finally:
        done.set()
        other.join()
    assert products  # the other thread did run
    assert torch.equal(alone, with_other)


@pytest.mark.parametrize("max_samples", [300, 4000])
def test_the_prior_is_scored_as_itself_beside_the_scored_head(max_samples):
    """``head_and_prior``: the candidates are the filling head and the head's own prior
    (interpolation from the other dates); what is scored is ``head_pair``'s scored
    prediction and the prior itself, both out-of-sample, whether the twin fills (300) or
    not (4000), whole and chunked alike."""
    import dask.array as da

    from cloudfree.methods._head_stage import head_and_prior, head_pair
    from cloudfree.methods.interpolate_corrected import interpolation_candidates

    dn, clear, _, _, _, _, days = _cube_with_held_out_union()
    kw = dict(days=days, frame=2, seed=7, max_samples=max_samples)
    candidates, scoring, fills = head_and_prior(dn, clear, None, **kw)
    assert fills == (max_samples == 300)
    filling, scored = (c[0] for c in head_pair(dn, clear, None, **kw))
    prior = interpolation_candidates(dn, clear, days=days, frame=2)[0]
    np.testing.assert_array_equal(candidates[0], filling)
    np.testing.assert_array_equal(candidates[1], prior)
    np.testing.assert_array_equal(scoring[0], scored)
    np.testing.assert_array_equal(scoring[1], prior)
    assert fills == np.array_equal(scored, filling)
    with dask.config.set(scheduler="synchronous"):
        lazy = head_and_prior(da.from_array(dn, chunks=(-1, -1, 17, 17)),
                              da.from_array(clear, chunks=(-1, 17, 17)), None, **kw)
        lazy_candidates, lazy_scoring, lazy_fills = (c.compute() for c in lazy)
    assert bool(lazy_fills) == fills
    np.testing.assert_array_equal(lazy_candidates[1], prior)
    assert np.abs(lazy_scoring - scoring).max() < 1e-3
