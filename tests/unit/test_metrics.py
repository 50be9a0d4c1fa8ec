import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from cloudfree.errors import InvalidParameterError
from cloudfree.evaluation.metrics import mae, psnr, rmse, sam_degrees, ssim_hidden_mean, ssim_map


def _pair(shape=(3, 40, 48), seed=0):
    rng = np.random.default_rng(seed)
    true = rng.random(shape)
    pred = np.clip(true + rng.normal(0, 0.05, shape), 0, 1)
    mask = rng.random(shape[-2:]) < 0.3
    return true, pred, mask


def test_psnr_mae_rmse_match_independent_implementations():
    true, pred, mask = _pair()
    t, p = true[:, mask], pred[:, mask]
    assert psnr(true, pred, mask) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1))
    assert rmse(true, pred, mask) == pytest.approx(np.sqrt(mean_squared_error(t, p)))
    assert mae(true, pred, mask) == pytest.approx(np.mean(np.abs(t - p)))
    # unmasked pixels do not count
    worse = pred.copy()
    worse[:, ~mask] = 0
    assert psnr(true, worse, mask) == psnr(true, pred, mask)
    assert psnr(true, true, mask) == np.inf


def test_ssim_map_matches_skimage_gaussian():
    true, pred, _ = _pair(shape=(37, 52))
    _, expected = structural_similarity(true, pred, data_range=1.0, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, full=True)
    np.testing.assert_allclose(ssim_map(true, pred), expected, rtol=1e-10, atol=1e-12)


def test_ssim_map_matches_skimage_uniform():
    true, pred, _ = _pair(shape=(30, 33), seed=2)
    _, expected = structural_similarity(true, pred, data_range=1.0, full=True)
    np.testing.assert_allclose(ssim_map(true, pred, window="uniform"), expected, rtol=1e-10,
                               atol=1e-12)


def test_ssim_hidden_mean_is_the_masked_mean_of_skimage_map():
    true, pred, mask = _pair(shape=(4, 32, 32), seed=3)
    _, full = structural_similarity(true, pred, data_range=1.0, gaussian_weights=True,
                                    use_sample_covariance=False, channel_axis=0, full=True)
    expected = np.mean([full[b][mask].mean() for b in range(4)])
    assert ssim_hidden_mean(true, pred, mask) == pytest.approx(expected, rel=1e-10)
    assert ssim_hidden_mean(true, true, mask) == pytest.approx(1.0)


def test_batched_frames_pool_hidden_pixels():
    true, pred, mask = _pair(shape=(2, 3, 24, 24), seed=5)
    mask = np.stack([mask, np.roll(mask, 3, axis=1)])
    n = mask.sum(axis=(1, 2))
    per_frame = [ssim_hidden_mean(true[k], pred[k], mask[k]) for k in range(2)]
    assert ssim_hidden_mean(true, pred, mask) == pytest.approx(np.average(per_frame, weights=n))
    sq = [rmse(true[k], pred[k], mask[k]) ** 2 for k in range(2)]
    assert rmse(true, pred, mask) == pytest.approx(np.sqrt(np.average(sq, weights=n)))


def test_sam_degrees():
    true = np.zeros((2, 1, 3))
    pred = np.zeros((2, 1, 3))
    true[:, 0, 0], pred[:, 0, 0] = (1, 0), (0, 1)  # 90 degrees
    true[:, 0, 1], pred[:, 0, 1] = (1, 1), (2, 2)  # parallel: 0
    true[:, 0, 2], pred[:, 0, 2] = (1, 0), (1, 1)  # 45
    mask = np.ones((1, 3), bool)
    assert sam_degrees(true, pred, mask) == pytest.approx((90 + 0 + 45) / 3)
    mask[0, 0] = False
    assert sam_degrees(true, pred, mask) == pytest.approx(22.5)
    assert np.isnan(sam_degrees(true[:1], pred[:1], mask))  # one band: no angle


def test_single_band_without_band_axis_and_empty_mask():
    true, pred, mask = _pair(shape=(20, 20))
    assert psnr(true, pred, mask) == pytest.approx(psnr(true[None], pred[None], mask))
    assert np.isnan(mae(true, pred, np.zeros_like(mask)))
    assert np.isnan(ssim_hidden_mean(true, pred, np.zeros_like(mask)))


def test_shape_mismatch_is_refused():
    true, pred, mask = _pair()
    with pytest.raises(InvalidParameterError, match="mask"):
        psnr(true, pred, mask[:-1])
    with pytest.raises(InvalidParameterError, match="pred"):
        mae(true, pred[:2], mask)
