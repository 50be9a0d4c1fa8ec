"""PatchGAN discriminator conditioned on the generator's input frame."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches of a frame as real or generated, given its input.

    Input: the candidate frame (B, C, H, W), the observed frame with gaps zeroed (B, C, H, W),
    the clear mask (B, 1, H, W) and the band flags broadcast (B, C, H, W).
    Output: (B, 1, H/8, W/8) logits (hinge or least-squares losses).
    """

    def __init__(self, *, n_bands: int, base_channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        c_in, blocks = 3 * n_bands + 1, []
        width = base_channels
        for i in range(layers):
            conv = nn.Conv2d(c_in, width, 4, stride=2, padding=1)
            blocks += [nn.utils.spectral_norm(conv), nn.LeakyReLU(0.2)]
            c_in, width = width, width * 2 if i < layers - 1 else width
        blocks.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, frame: torch.Tensor, observed: torch.Tensor, clear: torch.Tensor,
                band_present: torch.Tensor) -> torch.Tensor:
        present = band_present[:, :, None, None].expand_as(frame)
        logits: torch.Tensor = self.net(torch.cat([frame, observed, clear, present], dim=1))
        return logits
