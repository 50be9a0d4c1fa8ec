"""The cloud-removal generator: a shared per-frame U-Net encoder, temporal attention, a decoder.

U-TILISE / L-TAE in spirit, kept small enough for CPU: every frame of a series goes through
the same convolutional encoder; at the bottleneck each pixel attends across the frames of
its series (day-of-year positional encoding, keys weighted by how clear a frame is there);
the decoder mixes the attended features back up with skip connections.

The network predicts a *residual* on a temporal prior: per pixel and band, the linear
interpolation in time between the nearest clear observations of the other frames (the
``interpolate`` baseline, inside the graph). Observed pixels pass through unchanged:
``out = clear * values + (1 - clear) * generated`` exactly, per present band.

Everything is local in space (no normalisation over the image, attention only over time),
so chunked inference with a halo of :attr:`Generator.receptive_radius_px` pixels is exact up
to float error when chunk offsets are multiples of :attr:`Generator.downsample_factor`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

DAYS_PER_YEAR = 365.25


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GELU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GELU())


def series_days(doy: torch.Tensor) -> torch.Tensor:
    """(B, T) day of year of frames in time order -> days since the first frame.

    Consecutive frames are taken to be less than a year apart (day-of-year wraps)."""
    step = torch.remainder(doy[:, 1:] - doy[:, :-1], DAYS_PER_YEAR)
    return torch.cat([torch.zeros_like(doy[:, :1]), torch.cumsum(step, dim=1)], dim=1)


def temporal_prior(values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
    """Per frame, linear interpolation in time between the nearest clear observations of
    the *other* frames (the nearest one when only one side has any, else 0 = band mean).

    values (B, T, C, H, W), clear (B, T, H, W), doy (B, T) -> (B, T, C, H, W)."""
    days = series_days(doy)
    dt = days[:, None, :] - days[:, :, None]  # (B, T target, S source)
    dt = dt[..., None, None]
    usable = clear[:, None] > 0.5  # (B, 1, S, H, W)
    inf = torch.finfo(values.dtype).max
    dt = dt.expand(-1, -1, -1, *clear.shape[-2:])
    before = torch.where(usable & (dt < 0), dt, -inf)
    after = torch.where(usable & (dt > 0), dt, inf)
    d_before, i_before = before.max(dim=2)  # (B, T, H, W)
    d_after, i_after = after.min(dim=2)
    has_before, has_after = d_before > -inf, d_after < inf

    def gather(index: torch.Tensor) -> torch.Tensor:  # (B, T, H, W) -> (B, T, C, H, W)
        b, t, c, h, w = values.shape
        idx = index[:, :, None].expand(b, t, c, h, w)
        return torch.gather(values, 1, idx)

    v_before, v_after = gather(i_before), gather(i_after)
    span = (d_after - d_before).clamp_min(1e-6)
    w_after = torch.where(has_before & has_after, -d_before / span,
                          has_after.to(values.dtype))[:, :, None]
    w_before = torch.where(has_before & has_after, d_after / span,
                           has_before.to(values.dtype))[:, :, None]
    return w_before * torch.nan_to_num(v_before) + w_after * torch.nan_to_num(v_after)


class TemporalAttention(nn.Module):
    """Multi-head self-attention across the frames of each pixel's series."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                 nn.Linear(2 * channels, channels))

    def forward(self, x: torch.Tensor, clear_frac: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # x (B, T, F, h, w), clear_frac (B, T, h, w), pos (B, T, F)
        b, t, f, h, w = x.shape
        seq = (x + pos[..., None, None]).permute(0, 3, 4, 1, 2).reshape(b * h * w, t, f)
        q, k, v = self.qkv(self.norm(seq)).chunk(3, dim=-1)
        d = f // self.heads
        q, k, v = (z.reshape(-1, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        logits = q @ k.transpose(-1, -2) / math.sqrt(d)
        bias = torch.log(clear_frac.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, t) + 1e-3)
        attn = torch.softmax(logits + bias, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(-1, t, f)
        # nn.Module calls are typed as returning Any; the results are tensors.
        projected: torch.Tensor = self.proj(out)
        seq = seq + projected
        mixed: torch.Tensor = self.mlp(self.norm(seq))
        seq = seq + mixed
        return seq.reshape(b, h, w, t, f).permute(0, 3, 4, 1, 2)

    def forward_query(self, x: torch.Tensor, clear_frac: torch.Tensor, pos: torch.Tensor,
                      query: int) -> torch.Tensor:
        """:meth:`forward`'s output for frame ``query`` alone: (B, F, h, w).

        Keys and values come from every frame, the query, the projection and the MLP only
        from ``query``: the same weights and arithmetic as row ``query`` of :meth:`forward`
        (each frame's output depends on the other frames only through the keys and
        values), at a ``T``-th of the cost of all but the key/value projection."""
        b, t, f, h, w = x.shape
        seq = (x + pos[..., None, None]).permute(0, 3, 4, 1, 2).reshape(b * h * w, t, f)
        normed = self.norm(seq)
        weight, bias_qkv = self.qkv.weight, self.qkv.bias
        q = F.linear(normed[:, query:query + 1], weight[:f], bias_qkv[:f])
        k, v = F.linear(normed, weight[f:], bias_qkv[f:]).chunk(2, dim=-1)
        d = f // self.heads
        q, k, v = (z.reshape(b * h * w, -1, self.heads, d).transpose(1, 2) for z in (q, k, v))
        logits = q @ k.transpose(-1, -2) / math.sqrt(d)  # (bhw, heads, 1, t)
        bias = torch.log(clear_frac.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, t) + 1e-3)
        attn = torch.softmax(logits + bias, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(-1, 1, f)
        projected: torch.Tensor = self.proj(out)
        row = seq[:, query:query + 1] + projected
        mixed: torch.Tensor = self.mlp(self.norm(row))
        row = row + mixed
        return row.reshape(b, h, w, f).permute(0, 3, 1, 2)


class Generator(nn.Module):
    """Temporal U-Net generator (see the module docstring).

    Args:
        bands: the band set it is trained with; inputs always carry ``len(bands)`` channels,
            absent bands 0 and flagged in ``band_present``.
        base_channels: feature channels at full resolution (doubled per level).
        depth: number of 2x downsamplings.
        heads: attention heads at the bottleneck.
    """

    def __init__(self, *, bands: Sequence[str], base_channels: int = 32, depth: int = 3,
                 heads: int = 4) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.base_channels, self.depth, self.heads = base_channels, depth, heads
        n = len(self.bands)
        widths = [base_channels * 2 ** level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c_in = 3 * n + 3  # values, band_present, prior, clear, doy sin/cos
        for width in widths:
            self.encoders.append(_block(c_in, width))
            c_in = width
        self.pos = nn.Linear(2, widths[-1])
        self.attention = TemporalAttention(widths[-1], heads)
        self.decoders = nn.ModuleList(
            _block(widths[level + 1] + widths[level], widths[level]) for level in range(depth))
        self.head = nn.Conv2d(widths[0], n, 1)
        assert self.head.bias is not None  # Conv2d has a bias unless bias=False
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def downsample_factor(self) -> int:
        return int(2**self.depth)  # int ** int is typed Any (a negative power is a float)

    @property
    def receptive_radius_px(self) -> int:
        # two 3x3 convs per block at every level, down and up, plus pooling alignment
        return int(4 * (2 ** (self.depth + 1) - 1) + 2 ** (self.depth + 1))

    def _encode(self, values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor,
                band_present: torch.Tensor, target: int | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """The shared encoder on every frame: ``(skips (B*T, F_l, h_l, w_l) per level, the
        bottleneck's clear fraction (B*T, 1, h, w), the prior (B, T, C, H, W), the seasonal
        encoding (B, T, 2))``. Absent bands are zero in all three of their input channels,
        so the first convolution skips them (the same sum without its zero terms).

        With ``target``, only what the target-only decoder needs is kept: the skips above
        the bottleneck of that frame alone (B, F_l, h_l, w_l), and its prior (B, C, H, W)."""
        b, t, c, h, w = values.shape
        present = band_present[:, None, :, None, None].to(values.dtype)
        angle = 2 * math.pi * doy / DAYS_PER_YEAR
        season = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)  # (B, T, 2)
        keep = torch.nonzero(band_present.amax(dim=0) > 0).flatten()  # present in any item
        if 0 < len(keep) < c:
            present_in = present[:, :, keep]
            values = torch.nan_to_num(values[:, :, keep]) * present_in * clear[:, :, None]
            prior_in = temporal_prior(values, clear, doy) * present_in
            own = prior_in if target is None else prior_in[:, target:target + 1]
            prior = own.new_zeros((b, own.shape[1], c, h, w))
            prior[:, :, keep] = own
            channels = torch.cat([keep, keep + c, keep + 2 * c,
                                  torch.arange(3 * c, 3 * c + 3, device=keep.device)])
            band_in = present_in.expand(b, t, len(keep), h, w)
        else:
            values = torch.nan_to_num(values) * present * clear[:, :, None]
            prior = prior_in = temporal_prior(values, clear, doy) * present
            channels, band_in = None, present.expand(b, t, c, h, w)
            if target is not None:
                prior = prior[:, target:target + 1].clone()
        x = torch.cat([values, band_in, prior_in, clear[:, :, None],
                       season[..., None, None].expand(b, t, 2, h, w)], dim=2)
        del values, band_in, prior_in  # the inputs live on in x (and prior) only
        if target is not None:
            prior = prior[:, 0]
        # channels-last: oneDNN's convolutions on CPU run about 3x faster on it (measured:
        # a 21->16 3x3 convolution of 8 frames of 328 px, 0.66 s -> 0.22 s on 2 cores)
        x = x.reshape(b * t, -1, h, w).contiguous(memory_format=torch.channels_last)
        skips, frac = [], clear.reshape(b * t, 1, h, w)
        for level, encoder in enumerate(self.encoders):
            if level:
                x = F.avg_pool2d(x, 2)
                frac = F.avg_pool2d(frac, 2)
            if level == 0 and channels is not None:
                block = cast(nn.Sequential, encoder)
                first = cast(nn.Conv2d, block[0])
                x = F.conv2d(x, first.weight[:, channels], first.bias, padding=first.padding)
                x = block[1:](x)
            else:
                x = encoder(x)
            # item i's frames are rows i*t .. i*t+t-1; the bottleneck keeps every frame
            last = level == len(self.encoders) - 1
            skips.append(x if target is None or last else x[target::t].clone())
        return skips, frac, prior, season

    def _decode(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        for level in reversed(range(self.depth)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.decoders[level](torch.cat([x, skips[level]], dim=1))
        residual: torch.Tensor = self.head(x)
        return residual

    def generate(self, values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor,
                 band_present: torch.Tensor) -> torch.Tensor:
        """The generated frames (B, T, C, H, W), before observed pixels are passed through."""
        b, t, c, h, w = values.shape
        skips, frac, prior, season = self._encode(values, clear, doy, band_present)
        x = skips[-1]
        hh, ww = x.shape[-2:]
        x = self.attention(x.reshape(b, t, -1, hh, ww), frac.reshape(b, t, hh, ww),
                           self.pos(season)).reshape(b * t, -1, hh, ww)
        residual = self._decode(x, skips).reshape(b, t, c, h, w)
        present = band_present[:, None, :, None, None].to(values.dtype)
        return (prior + residual) * present

    def generate_target(self, values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor,
                        band_present: torch.Tensor, target: int) -> torch.Tensor:
        """Frame ``target`` of :meth:`generate` alone: (B, C, H, W).

        The encoder runs on every frame (they are the attention's keys and values), the
        attention's query and the decoder on ``target`` only: the same weights and the
        same result up to float rounding, at about ``1/T`` of the decoder's cost."""
        b, t, c, h, w = values.shape
        if not -t <= target < t:
            raise IndexError(f"target frame {target} of a series of {t}")
        target %= t
        skips, frac, prior, season = self._encode(values, clear, doy, band_present, target)
        x = skips.pop()
        hh, ww = x.shape[-2:]
        x = self.attention.forward_query(x.reshape(b, t, -1, hh, ww),
                                         frac.reshape(b, t, hh, ww), self.pos(season), target)
        residual = self._decode(x, skips)
        present = band_present[:, :, None, None].to(values.dtype)
        return (prior + residual) * present

    def forward_target(self, values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor,
                       band_present: torch.Tensor, target: int) -> torch.Tensor:
        """Frame ``target`` of :meth:`forward` alone: (B, C, H, W) normalised, its
        observed pixels exact (see :meth:`generate_target`)."""
        generated = self.generate_target(values, clear, doy, band_present, target)
        keep = clear[:, target, None]
        present = band_present[:, :, None, None].to(values.dtype)
        return (keep * torch.nan_to_num(values[:, target]) + (1 - keep) * generated) * present

    def forward(self, values: torch.Tensor, clear: torch.Tensor, doy: torch.Tensor,
                band_present: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """values (B,T,C,H,W) normalised (0 where missing), clear (B,T,H,W) 0/1, doy (B,T)
        1..366, band_present (B,C) 0/1 -> (B,T,C,H,W) normalised; observed pixels exact.

        ``target``: frame ``target`` alone, (B,C,H,W) (:meth:`forward_target`), through
        the module call, so that hooks see it."""
        if target is not None:
            return self.forward_target(values, clear, doy, band_present, target)
        generated = self.generate(values, clear, doy, band_present)
        keep = clear[:, :, None]
        present = band_present[:, None, :, None, None].to(values.dtype)
        return (keep * torch.nan_to_num(values) + (1 - keep) * generated) * present
