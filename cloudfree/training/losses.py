"""Losses: masked L1, SSIM, hinge adversarial (PatchGAN), temporal consistency, cycle."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def masked_l1(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - truth| where ``mask`` (broadcastable) is 1."""
    mask = mask.expand_as(pred)
    return ((pred - truth).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def ssim_loss(pred: torch.Tensor, truth: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - mean SSIM (box window) over (N, C, H, W) frames in normalised units."""
    c1, c2 = 0.01 ** 2 * 36, 0.03 ** 2 * 36  # data range ~6 normalised units
    pad = window // 2

    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, window, stride=1, padding=pad, count_include_pad=False)

    mu_p, mu_t = mean(pred), mean(truth)
    var_p = mean(pred * pred) - mu_p ** 2
    var_t = mean(truth * truth) - mu_t ** 2
    cov = mean(pred * truth) - mu_p * mu_t
    ssim = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) *
                                                         (var_p + var_t + c2))
    return 1 - ssim.mean()


def temporal_consistency(out: torch.Tensor, truth: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """L1 between the frame-to-frame changes of the output and of the truth, on gaps."""
    d_out, d_truth = out[:, 1:] - out[:, :-1], truth[:, 1:] - truth[:, :-1]
    mask = torch.maximum(gap[:, 1:], gap[:, :-1])
    return masked_l1(d_out, d_truth, mask)


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()
