"""Reconstruction metrics on the hidden pixels of a frame: PSNR, SSIM, MAE, RMSE, SAM, and
for a stated interval its coverage and mean half-width.

Every metric takes ``true`` and ``pred`` of shape (..., C, H, W), or (H, W) for one band,
and a boolean ``mask`` of shape (..., H, W), True on the pixels to score (the hidden
ones). Leading axes are frames: the result pools every masked pixel of every frame.
An empty mask gives NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from cloudfree.errors import InvalidParameterError

#: Gaussian SSIM window as in Wang et al. (2004) and skimage's ``gaussian_weights=True``.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
#: Uniform window side, as skimage's default.
SSIM_UNIFORM_SIZE = 7
K1, K2 = 0.01, 0.03


Float64 = NDArray[np.float64]


def _prepare(true: ArrayLike, pred: ArrayLike, mask: ArrayLike
             ) -> tuple[Float64, Float64, NDArray[np.bool_]]:
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if true.shape != pred.shape:
        raise InvalidParameterError("pred", pred.shape, f"give the shape of true {true.shape}")
    if true.ndim == mask.ndim:  # one band without a band axis
        true, pred = true[..., None, :, :], pred[..., None, :, :]
    if true.ndim < 3 or true.shape[:-3] + true.shape[-2:] != mask.shape:
        raise InvalidParameterError(
            "mask", mask.shape,
            f"give (..., H, W) matching true {true.shape} without its band axis")
    return true, pred, mask


def _masked_errors(true: ArrayLike, pred: ArrayLike, mask: ArrayLike) -> Float64:
    """(n_pixels, C) errors on the masked pixels."""
    true_, pred_, mask_ = _prepare(true, pred, mask)
    errors: Float64 = np.moveaxis(pred_ - true_, -3, -1)[mask_]
    return errors


def mae(true: ArrayLike, pred: ArrayLike, mask: ArrayLike) -> float:
    """Mean absolute error over the masked pixels and all bands."""
    err = _masked_errors(true, pred, mask)
    return float(np.abs(err).mean()) if err.size else float("nan")


def rmse(true: ArrayLike, pred: ArrayLike, mask: ArrayLike) -> float:
    """Root mean squared error over the masked pixels and all bands."""
    err = _masked_errors(true, pred, mask)
    return float(np.sqrt((err ** 2).mean())) if err.size else float("nan")


def psnr(true: ArrayLike, pred: ArrayLike, mask: ArrayLike, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)`` over the masked
    pixels and all bands; ``inf`` for a perfect reconstruction."""
    err = _masked_errors(true, pred, mask)
    if not err.size:
        return float("nan")
    mse = float((err ** 2).mean())
    return float(10 * np.log10(data_range ** 2 / mse)) if mse > 0 else float("inf")


def interval_coverage(true: ArrayLike, pred: ArrayLike, half_width: ArrayLike,
                      mask: ArrayLike) -> float:
    """The share of masked pixel-band values inside ``pred ± half_width`` (a NaN
    half-width holds nothing)."""
    err = _masked_errors(true, pred, mask)
    _, width, mask_ = _prepare(true, half_width, mask)
    widths = np.moveaxis(width, -3, -1)[mask_]
    if not err.size:
        return float("nan")
    return float((np.abs(err) <= widths).mean())


def mean_half_width(half_width: ArrayLike, mask: ArrayLike) -> float:
    """The mean half-width of an interval over the masked pixels and all bands (NaN ones
    left out)."""
    width, _, mask_ = _prepare(half_width, half_width, mask)
    widths = np.moveaxis(width, -3, -1)[mask_]
    finite = widths[np.isfinite(widths)]
    return float(finite.mean()) if finite.size else float("nan")


def ssim_map(
    true: ArrayLike, pred: ArrayLike, *, data_range: float = 1.0,
    window: Literal["gaussian", "uniform"] = "gaussian",
) -> Float64:
    """Per-pixel SSIM of each 2-D frame over its last two axes, the same shape as the input.

    ``window="gaussian"``: σ = 1.5 truncated at 3.5 σ (11 × 11) with population
    covariances, as Wang et al. (2004) and ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, use_sample_covariance=False)``. ``"uniform"``: 7 × 7 mean with
    sample covariances, skimage's default. Borders are reflected.
    """
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape or true.ndim < 2:
        raise InvalidParameterError("pred", pred.shape, f"give the shape of true {true.shape}")
    lead = (0,) * (true.ndim - 2)
    if window == "gaussian":
        sigma = (*lead, SSIM_SIGMA, SSIM_SIGMA)

        def smooth(a: Float64) -> Float64:
            smoothed: Float64 = ndimage.gaussian_filter(a, sigma, truncate=SSIM_TRUNCATE,
                                                        mode="reflect")
            return smoothed

        cov_norm = 1.0
    elif window == "uniform":
        size = (*(1 for _ in lead), SSIM_UNIFORM_SIZE, SSIM_UNIFORM_SIZE)

        def smooth(a: Float64) -> Float64:
            smoothed: Float64 = ndimage.uniform_filter(a, size, mode="reflect")
            return smoothed

        n = SSIM_UNIFORM_SIZE ** 2
        cov_norm = n / (n - 1)
    else:
        raise InvalidParameterError("window", window, "choose 'gaussian' or 'uniform'")
    mu_x, mu_y = smooth(true), smooth(pred)
    var_x = cov_norm * (smooth(true * true) - mu_x * mu_x)
    var_y = cov_norm * (smooth(pred * pred) - mu_y * mu_y)
    cov = cov_norm * (smooth(true * pred) - mu_x * mu_y)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
            / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))


def ssim_hidden_mean(
    true: ArrayLike, pred: ArrayLike, mask: ArrayLike, data_range: float = 1.0,
    window: Literal["gaussian", "uniform"] = "gaussian",
) -> float:
    """SSIM map of the whole frames (see :func:`ssim_map`), averaged over the masked
    pixels; several bands: the mean over bands of those averages (equal weights)."""
    true, pred, mask = _prepare(true, pred, mask)
    if not mask.any():
        return float("nan")
    ssim = ssim_map(true, pred, data_range=data_range, window=window)
    return float(np.moveaxis(ssim, -3, -1)[mask].mean())


def sam_degrees(true: ArrayLike, pred: ArrayLike, mask: ArrayLike) -> float:
    """Spectral angle in degrees between the true and predicted spectra, averaged over the
    masked pixels; pixels where either spectrum is all zero are left out. NaN for one band
    (an angle needs at least two)."""
    true, pred, mask = _prepare(true, pred, mask)
    if true.shape[-3] < 2 or not mask.any():
        return float("nan")
    a = np.moveaxis(true, -3, -1)[mask]
    b = np.moveaxis(pred, -3, -1)[mask]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    keep = norms > 0
    if not keep.any():
        return float("nan")
    cosine = np.clip((a[keep] * b[keep]).sum(axis=1) / norms[keep], -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)).mean())
