"""Test-time training: a small network fitted to the target date's own clear pixels.

The generator fills a target date from the other dates. How a pixel's reflectance on the
target date follows from its reflectance on the neighbouring dates (phenology since then,
harvest, haze, a different sun angle) is particular to that date and that place, and the
target date's clear pixels show it: every clear pixel is a training pair, *other dates ->
target date*, of exactly the mapping the gaps need. So for every tile and target date a
small convolutional network (:class:`SeriesHead`: 3 x 3, then two 1 x 1 layers, ReLU-like
GELU) is trained from scratch on those pairs, and predicts the gaps. The issue's protocol
allows it: it uses only what the method is given, and no hidden pixel takes part.

**Inputs** (:func:`features`): the ``FEATURE_FRAMES`` dates nearest the target with at
least ``MIN_CLEAR`` of the tile usable, every band (their own gaps filled by linear
interpolation in time among them, else the prior), and the *prior*: linear interpolation
in time at the target date from all other dates. None of them contains a target pixel.
**Output**: ``prior + w * head(inputs)``, a residual on the prior, clipped to the range of
the residuals it was trained on, and weighted by the pixel's *familiarity* ``w``: 1 where
its inputs are near those of a training pixel, falling to 0 (the prior) where they are unlike
every one (a forest under cloud in a tile whose clear pixels are all fields), for there the
head extrapolates and is worse than the prior (:meth:`SeriesHead.familiarity`).

**Training** (:func:`fit_head`): full-batch AdamW on the L1 error over about
``MAX_SAMPLES`` clear pixels, picked by a hash of their global (row, column) at a rate
fixed by the whole tile's count of candidates (:func:`training_pixels`), so a chunked run
picks the same pixels as a whole-array run and trains the same network (samples in the
same order, the same seed). ``STEPS`` steps.
With ``exclude``, the pixels of the residual correction's held-out masks
(:func:`held_out_union`) are left out of training (unless fewer than ``MIN_SAMPLES`` pixels
are left outside them in the tile; then it trains on them too), so that the correction's
self-validation errors, and the interval calibrated on them, are out-of-sample. Where the
tile has clear pixels to spare, one head trained outside them fills and is scored; where
it has not, a head trained on every clear pixel fills, and heads *cross-fitted* on folds
of the masks, each trained outside its fold, are scored in its stead
(:func:`cloudfree.methods._head_stage.head_pair`).

Measured on the real cases (``cloudfree evaluate``, seeds 0-2; see the README), this is
what makes the generator better than every non-learned method: the pretrained temporal
network's prediction, given as one more input, did not improve it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from cloudfree.errors import InvalidParameterError
from cloudfree.methods.interpolate import interpolate_at
from cloudfree.models.threads import torch_threads

Float32 = NDArray[np.float32]
Bool = NDArray[np.bool_]

#: Dates (other than the target) the head sees: the nearest in time that are usable enough.
FEATURE_FRAMES = 6
#: A date is an input when at least this share of the tile is usable on it.
MIN_CLEAR = 0.3
#: Width of the head's hidden layers.
HIDDEN = 64
#: Full-batch training steps, and the AdamW settings: the learning rate rises linearly
#: to LEARNING_RATE over the first WARMUP share of the steps, then falls to 0 on a cosine
#: (:func:`learning_rates`). Measured on s2_slovenia_2015 (``cloudfree evaluate``, seeds
#: 0 and 1, held-out masks excluded): 200 such steps scored 39.31 and 39.20 dB, against
#: 39.12 and 39.07 for 300 at a constant 3e-3 (SSIM and SAM the same); 150 scored 39.18 and
#: 39.13 but lost 0.003 SSIM and 0.1 degree SAM; 100 lost 0.3-0.4 dB.
STEPS = 200
LEARNING_RATE = 5e-3
WARMUP = 0.1
SCHEDULE = "cosine"
WEIGHT_DECAY = 1e-4
#: About this many clear pixels train the head of one tile (all of them when fewer): the
#: training's cost grows with it (a step on 40 000 pairs took 3-4 times one on 16 000).
MAX_SAMPLES = 16_000
#: A prediction's change from the prior is clipped to the quantiles RANGE_Q and 1 - RANGE_Q
#: of the changes the head was trained on: on land unlike any clear pixel of the tile it
#: would otherwise extrapolate freely (a forest under cloud in a tile of fields).
RANGE_Q = 0.005
#: Familiarity: a pixel's distance, in standardised input features, to the nearest of up to
#: REFERENCE_PIXELS training pixels, in units of the training pixels' own leave-one-out
#: distance quantile RADIUS_Q. Up to NEAR the head's change applies in full; from FAR on
#: the prior stands (linear between): where the inputs are unlike every pixel it was
#: trained on, the head extrapolates, and is worse than the prior (measured on a demo
#: tile: beyond 2 radii its error was 1.5-8 times the prior's, below 1 it was lower).
REFERENCE_PIXELS = 2048
#: Familiarity first compares a pixel with this many of the reference pixels (a shortcut,
#: same result: :meth:`SeriesHead.familiarity`).
SCREEN = 256
RADIUS_Q = 0.99
NEAR, FAR = 1.0, 2.0
#: Fewer training pixels than this and there is no head: the prior stands.
MIN_SAMPLES = 50
#: The head's reach (its 3 x 3 layer): the halo a chunked run needs.
HALO_PX = 1


#: torch CPU threads of the head's training: a fixed count, whatever the machine's.
#: torch splits a CPU kernel's work by the thread count, and its result changes with the
#: count in the last bit (sums reduced in another order); the head's full-batch steps
#: amplify such a change to about 1e-2 of reflectance in its prediction (the generator's
#: scores moved by up to 0.06 dB between machines that ran it on their own counts). At a
#: fixed count a training is the same bit for bit on any machine (of one kind of CPU). Two,
#: not one: the training is one task that the rest of the tile waits on, and on two
#: threads it took 2.7-3.1 s for 100 steps on 16 000 pairs, against 4.2-4.5 s on one.
TRAIN_THREADS = 2


def head_parameters() -> dict[str, Any]:
    """The head's settings, for ``processing:*`` of the items it made."""
    return {"input_dates": FEATURE_FRAMES, "min_clear": MIN_CLEAR, "hidden": HIDDEN,
            "kernel_px": 2 * HALO_PX + 1, "steps": STEPS, "learning_rate": LEARNING_RATE,
            "train_threads": TRAIN_THREADS,
            "schedule": SCHEDULE, "warmup": WARMUP, "weight_decay": WEIGHT_DECAY,
            "max_samples": MAX_SAMPLES,
            "loss": "L1 on the target date's clear pixels (a scored head: those outside "
                    "the correction's held-out masks, or outside its fold of them)",
            "residual_range_q": RANGE_Q, "reference_pixels": REFERENCE_PIXELS,
            "familiar_radii": [NEAR, FAR], "radius_q": RADIUS_Q}


def feature_frames(cloud_fraction: np.ndarray, days: np.ndarray, target: int, *,
                   count: int = FEATURE_FRAMES, min_clear: float = MIN_CLEAR) -> np.ndarray:
    """Indices of the input dates, in time order: the ``count`` dates nearest ``target``
    in time (ties: the earlier) whose usable share of the tile is at least ``min_clear``.

    Decided from per-frame cloud fractions of the whole tile, so every chunk decides the
    same."""
    fraction = np.asarray(cloud_fraction, np.float64)
    days = np.asarray(days, np.float64)
    pool = [i for i in range(len(days)) if i != target and 1.0 - fraction[i] >= min_clear]
    pool.sort(key=lambda i: (abs(days[i] - days[target]), days[i]))
    chosen = np.asarray(sorted(pool[:count], key=lambda i: (days[i], i)), dtype=int)
    return chosen


def prior_frame(values: np.ndarray, usable: np.ndarray, days: np.ndarray,
                target: int) -> np.ndarray:
    """(C, H, W) linear interpolation in time at ``days[target]`` from the other dates (NaN
    where none is usable): :func:`cloudfree.methods.interpolate_corrected.interpolation_candidate`."""
    from cloudfree.methods.interpolate_corrected import interpolation_candidate

    return interpolation_candidate(values, usable, days, target)


def features(values: np.ndarray, usable: Bool, days: np.ndarray, target: int,
             frames: Sequence[int] | NDArray[np.integer[Any]], extra: np.ndarray | None = None,
             *, slots: int = FEATURE_FRAMES) -> tuple[Float32, np.ndarray]:
    """The head's inputs for a (T, C, H, W) stack (NaN exactly where not ``usable``):
    ``(features ((slots + 1 [+ 1]) * C, H, W) float32, prior (C, H, W))``: ``slots``
    input dates (fewer ``frames`` than that: zeros fill the rest, so the width is known
    before the frames are chosen), then the prior;
    ``extra`` (C, H, W) is one more input (the pretrained network's prediction of the
    target), NaN taken as the prior.

    Pixelwise, so a chunk computes exactly what the whole array does. The input dates'
    gaps are filled by interpolation among the other input dates, else by the prior; the
    prior's own gaps (no other date usable) are 0 in the features and NaN in ``prior``."""
    days = np.asarray(days, np.float64)
    prior = prior_frame(values, usable, days, target)
    fallback = np.nan_to_num(prior)
    frames = [int(f) for f in frames]
    parts = []
    for frame in frames:
        own = values[frame]
        gaps = ~usable[frame]
        if gaps.any():
            rest = [f for f in frames if f != frame]
            fill = (interpolate_at(values[rest], usable[rest], days[rest], float(days[frame]))
                    if rest else np.full_like(own, np.nan))
            fill = np.where(np.isfinite(fill), fill, fallback)
            own = np.where(gaps[None], fill, own)
        parts.append(own)
    # a fixed width; an empty slot is constant, so standardised it is 0 and adds nothing
    parts += [np.zeros_like(fallback)] * (slots - len(frames))
    parts.append(fallback)
    if extra is not None:
        parts.append(np.where(np.isfinite(extra), extra, fallback))
    return np.concatenate(parts).astype(np.float32), prior


def sample_mask(train: Bool, rows: np.ndarray, cols: np.ndarray, *, rate: float,
                seed: int) -> Bool:
    """The training pixels of ``train`` (h, w) picked at ``rate`` by a hash of their global
    ``rows`` and ``cols``: the same pixels whichever chunk they are in."""
    if rate >= 1.0:
        return train.copy()
    key = (rows.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
           ^ cols.astype(np.uint64)[None, :] * np.uint64(0xC2B2AE3D27D4EB4F)
           ^ np.uint64(seed) * np.uint64(0x165667B19E3779F9))
    key ^= key >> np.uint64(29)
    key *= np.uint64(0xBF58476D1CE4E5B9)
    key ^= key >> np.uint64(32)
    return train & ((key >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 < rate)


def held_out_union(usable: Bool, cloud_fraction: np.ndarray, rows: np.ndarray,
                   cols: np.ndarray, *, frame: int, shape: tuple[int, int], seed: int,
                   masks: int) -> Bool:
    """(h, w) bool: the union of the residual correction's held-out masks
    (:func:`cloudfree.methods.corrected.held_out_masks`, same arguments) on a chunk or the
    whole image. The correction scores the head's prediction on these pixels, so the head
    must not train on them; like the masks, the union is the same whichever chunk."""
    from cloudfree.methods.corrected import held_out_masks

    union = np.zeros(np.shape(usable)[1:], bool)
    for mask in held_out_masks(usable, cloud_fraction, rows, cols, frame=frame, shape=shape,
                               seed=seed, masks=masks):
        union |= mask
    return union


def training_counts(trainable: Bool, held: Bool) -> NDArray[np.float64]:
    """``[candidates, candidates outside the held-out union]``: the pixel counts (of a chunk's
    core, or the whole image) that :func:`training_pixels` needs summed over the tile."""
    return np.array([np.count_nonzero(trainable), np.count_nonzero(trainable & ~held)],
                    np.float64)


def training_pixels(trainable: Bool, held: Bool, rows: np.ndarray, cols: np.ndarray,
                    counts: np.ndarray, *, max_samples: int, seed: int) -> Bool:
    """The (h, w) pixels that train the head, of the ``trainable`` ones (the target and the
    prior usable): those outside the ``held``-out union (:func:`held_out_union`), unless
    fewer than :data:`MIN_SAMPLES` are outside it in the whole tile (a head trained on the
    held-out pixels is better than none, though the correction's self-validation is then
    in-sample for it); about ``max_samples`` of them, picked by :func:`sample_mask`.

    ``counts`` are the whole tile's :func:`training_counts`: every chunk decides the same,
    at the same rate, and a chunked run picks exactly the pixels a whole-array run does."""
    everything, outside = (float(c) for c in counts)
    if outside >= MIN_SAMPLES:
        pool, total = trainable & ~held, outside
    else:
        pool, total = trainable, everything
    return sample_mask(pool, rows, cols, rate=min(1.0, max_samples / max(total, 1.0)),
                       seed=seed)


def samples(feats: np.ndarray, prior: np.ndarray, observed: np.ndarray,
            picked: Bool) -> tuple[Float32, Float32, Float32]:
    """The training pairs at the ``picked`` pixels, in row-major order: ``(inputs (N, F, 3,
    3), prior (N, C), observed (N, C))``. ``feats`` must carry a halo of :data:`HALO_PX`
    around ``picked`` (or reach the image edge, which is reflected, as in :func:`predict`)."""
    padded = np.pad(feats, ((0, 0), (HALO_PX, HALO_PX), (HALO_PX, HALO_PX)), mode="reflect")
    rows, cols = np.nonzero(picked)
    window = np.stack([padded[:, rows + dy, cols + dx] for dy in range(3) for dx in range(3)],
                      axis=-1)  # (F, N, 9)
    inputs = window.transpose(1, 0, 2).reshape(len(rows), feats.shape[0], 3, 3)
    return (inputs.astype(np.float32), prior[:, rows, cols].T.astype(np.float32),
            observed[:, rows, cols].T.astype(np.float32))


class SeriesHead(nn.Module):
    """3 x 3 conv, GELU, 1 x 1, GELU, 1 x 1: a residual on the prior, from the features
    (standardised with the training samples' mean and standard deviation). A feature that
    was constant over the samples (an empty input slot) has std ``inf``: it is skipped,
    which is what a standardised 0 would contribute, at no cost."""

    # the buffers registered in __init__ (nn.Module's __getattr__ types them loosely)
    mean: torch.Tensor
    std: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    reference: torch.Tensor
    radius: torch.Tensor

    def __init__(self, n_features: int, n_bands: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        # the range of the residuals (target - prior) it was shown, per band
        self.register_buffer("low", torch.full((n_bands,), -torch.inf))
        self.register_buffer("high", torch.full((n_bands,), torch.inf))
        # training pixels' standardised centre features (NaN rows: unused), and the
        # distance quantile RADIUS_Q among them: what "familiar" inputs look like
        self.register_buffer("reference", torch.full((REFERENCE_PIXELS, n_features), torch.nan))
        self.register_buffer("radius", torch.ones(()))
        self.net = nn.Sequential(nn.Conv2d(n_features, hidden, 3), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.GELU(),
                                 nn.Conv2d(hidden, n_bands, 1))

    @property
    def _conv(self) -> nn.Conv2d:
        """The 3 x 3 layer, whose weights :meth:`_first` applies to the kept features."""
        return cast(nn.Conv2d, self.net[0])

    def _first(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.isfinite(self.std)
        x = (feats[:, keep] - self.mean[keep, None, None]) / self.std[keep, None, None]
        return x, self._conv.weight[:, keep]

    def standardise(self, centre: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> standardised; a skipped feature (std ``inf``) is 0."""
        return (centre - self.mean) / self.std

    def familiarity(self, centre: torch.Tensor, *, batch: int = 8192) -> torch.Tensor:
        """(N,) weight in [0, 1] of the head's change at pixels with (N, F) features: 1
        within :data:`NEAR` radii of a reference pixel, 0 beyond :data:`FAR`.

        Most pixels are within NEAR radii of one of the first :data:`SCREEN` reference
        pixels (a random subset: :func:`_set_reference` keeps them in a seeded random
        order); their weight is 1 whatever the rest, so only the others are compared with
        all of them (the same weights, at a fraction of the distances)."""
        reference = self.reference[torch.isfinite(self.reference).all(dim=1)]
        if len(reference) == 0:
            return torch.ones(len(centre))
        x = self.standardise(centre)
        screen, near = reference[:SCREEN], NEAR * self.radius
        parts = []
        for i in range(0, len(x), batch):
            nearest = torch.cdist(x[i:i + batch], screen).amin(dim=1)
            far = torch.nonzero(nearest > near).squeeze(1)
            if len(far) and len(reference) > len(screen):
                nearest[far] = torch.cdist(x[i:i + batch][far], reference).amin(dim=1)
            parts.append(nearest)
        return ((FAR - torch.cat(parts) / self.radius) / (FAR - NEAR)).clamp(0.0, 1.0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, F, h + 2, w + 2) features -> (B, C, h, w) residual."""
        x, weight = self._first(feats)
        residual: torch.Tensor = self.net[1:](nn.functional.conv2d(x, weight, self._conv.bias))
        return residual

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, F, 3, 3) windows -> (N, C) residual at their centres: :meth:`forward` as
        matrix products (the same weights; much faster than convolving 3 x 3 inputs)."""
        x, _ = self._first(patches)
        return self.forward_standardised(x.flatten(1))

    def forward_standardised(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_patches` on windows already standardised, the skipped features
        dropped and flattened ((N, kept F * 9)): what training repeats each step, so the
        standardisation is done once (:func:`fit_head`)."""
        weight = self._conv.weight[:, torch.isfinite(self.std)]
        x = nn.functional.linear(x, weight.flatten(1), self._conv.bias)
        for layer in list(self.net)[1:]:
            if isinstance(layer, nn.Conv2d):
                x = nn.functional.linear(x, layer.weight.flatten(1), layer.bias)
            else:
                x = layer(x)
        return x


def learning_rates(steps: int) -> NDArray[np.float64]:
    """The learning rate of each of ``steps`` steps: constant :data:`LEARNING_RATE`
    (:data:`SCHEDULE` ``"constant"``), or (``"cosine"``) a linear rise to it over the first
    :data:`WARMUP` share of the steps, then a cosine fall towards 0 at the last step."""
    step = np.arange(steps, dtype=np.float64)
    if SCHEDULE == "constant":
        return np.full(steps, LEARNING_RATE)
    warm = max(1, int(round(WARMUP * steps)))
    rise = np.minimum(1.0, (step + 1) / warm)
    fall = 0.5 * (1 + np.cos(np.pi * np.clip(step - warm + 1, 0, None) / max(1, steps - warm + 1)))
    return LEARNING_RATE * rise * fall


def fit_head(inputs: np.ndarray, prior: np.ndarray, observed: np.ndarray, *, seed: int = 0,
             steps: int | None = None, device: str = "cpu") -> SeriesHead | None:
    """Train a :class:`SeriesHead` on the pairs of :func:`samples` (L1 on ``prior + head``
    against ``observed``; ``steps`` full-batch steps, default :data:`STEPS`). ``None``
    with fewer than :data:`MIN_SAMPLES` pairs. On :data:`TRAIN_THREADS` CPU threads
    (:func:`torch_threads`): the same head whatever the machine's thread count."""
    if len(inputs) < MIN_SAMPLES:
        return None
    with torch_threads(TRAIN_THREADS):
        return _fit(inputs, prior, observed, seed=seed, steps=STEPS if steps is None else steps,
                    device=device)


def _fit(inputs: np.ndarray, prior: np.ndarray, observed: np.ndarray, *, seed: int,
         steps: int, device: str) -> SeriesHead:
    torch.manual_seed(seed)
    head = SeriesHead(inputs.shape[1], observed.shape[1])
    x = torch.from_numpy(inputs).to(device)
    centre = x[:, :, 1, 1]
    std = centre.std(dim=0)
    head.mean.copy_(centre.mean(dim=0).cpu())
    head.std.copy_(torch.where(std > 0, std.clamp_min(1e-4), torch.inf).cpu())
    head = head.to(device)
    base = torch.from_numpy(prior).to(device)
    target = torch.from_numpy(observed).to(device)
    shown = torch.quantile((target - base).cpu(), torch.tensor([RANGE_Q, 1 - RANGE_Q]), dim=0)
    head.low.copy_(shown[0].to(device))
    head.high.copy_(shown[1].to(device))
    _set_reference(head, centre, seed=seed)
    # standardised once, not at every step (as forward_patches would)
    with torch.no_grad():
        z = head._first(x)[0].flatten(1).contiguous()
    del x, centre
    params = [p for p in head.parameters() if p.requires_grad]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for step, rate in enumerate(learning_rates(steps), start=1):
        for p in params:
            p.grad = None
        out = base + head.forward_standardised(z)
        loss = (out - target).abs().mean()
        loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
        adamw_step(params, moments, step=step, lr=float(rate))
    return head.cpu().eval()


#: AdamW's moment decays and epsilon (torch's defaults).
BETAS = (0.9, 0.999)
EPS = 1e-8


@torch.no_grad()
def adamw_step(params: Sequence[torch.Tensor],
               moments: Sequence[tuple[torch.Tensor, torch.Tensor]], *, step: int,
               lr: float, weight_decay: float = WEIGHT_DECAY) -> None:
    """One AdamW update of ``params`` in place from their ``.grad`` (``moments``: each
    parameter's running first and second moments, updated too; ``step`` counts from 1).

    The operations, in order, of ``torch.optim.AdamW``'s single-tensor update (what it
    runs on CPU), so on CPU the result is the same bit for bit
    (``tests/unit/test_head.py``). Not ``torch.optim`` itself: its first ``step()`` imports
    ``torch._dynamo``, 2.6 s on our machine, on the critical path of every mosaic's first
    tile (the head trains in one task that the rest waits on)."""
    beta1, beta2 = BETAS
    correction1 = 1 - beta1 ** step
    correction2_sqrt = (1 - beta2 ** step) ** 0.5
    for param, (mean, square) in zip(params, moments, strict=True):
        grad = param.grad
        if grad is None:
            continue
        param.mul_(1 - lr * weight_decay)
        mean.lerp_(grad, 1 - beta1)
        square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (square.sqrt() / correction2_sqrt).add_(EPS)
        param.addcdiv_(mean, denominator, value=-(lr / correction1))


def _set_reference(head: SeriesHead, centre: torch.Tensor, *, seed: int) -> None:
    """Keep up to :data:`REFERENCE_PIXELS` of the (N, F) training features (a seeded pick,
    so a chunked run keeps the same) and their leave-one-out nearest-neighbour distance
    quantile :data:`RADIUS_Q` as the radius."""
    with torch.no_grad():
        pick = torch.randperm(len(centre), generator=torch.Generator().manual_seed(seed))
        kept = head.standardise(centre[pick[:REFERENCE_PIXELS].to(centre.device)])
        distance = torch.cdist(kept, kept)
        distance.fill_diagonal_(torch.inf)
        radius = torch.quantile(distance.amin(dim=1).cpu(), RADIUS_Q)
        head.reference[:len(kept)] = kept
        head.radius.fill_(float(radius.clamp_min(1e-6)))


def predict(head: SeriesHead | None, feats: np.ndarray, prior: np.ndarray) -> Float32:
    """(C, H, W) float32 ``prior + head(features)``: the residual clipped to the range the
    head was shown (:data:`RANGE_Q`) and weighted by the pixel's familiarity
    (:meth:`SeriesHead.familiarity`); the image edge reflected (a chunk with a halo of
    :data:`HALO_PX` gets its core exactly). Without a head: the prior."""
    if head is None:
        return prior.astype(np.float32)
    padded = np.pad(feats, ((0, 0), (HALO_PX, HALO_PX), (HALO_PX, HALO_PX)), mode="reflect")
    with torch.inference_mode(), torch_threads():
        residual = head(torch.from_numpy(np.ascontiguousarray(padded))[None])[0]
        residual = torch.clamp(residual, head.low[:, None, None], head.high[:, None, None])
        centre = torch.from_numpy(feats.reshape(len(feats), -1).T)
        weight = head.familiarity(centre).reshape(1, *feats.shape[1:])
    prediction: Float32 = (prior + (weight * residual).numpy()).astype(np.float32)
    return prediction


def adapted_frame(values: np.ndarray, days: np.ndarray, target: int, *,
                  extra: np.ndarray | None = None, seed: int = 0,
                  max_samples: int = MAX_SAMPLES, device: str = "cpu",
                  exclude: Bool | None = None) -> Float32:
    """The whole-array run: (C, H, W) prediction of ``values[target]`` from the other
    dates of a (T, C, H, W) reflectance stack (NaN = unusable), by a head trained on the
    target's usable pixels; ``extra`` as in :func:`features`. NaN where no other date was usable.

    ``exclude`` (H, W) bool: pixels not to train on (the correction's held-out union,
    :func:`held_out_union`), unless fewer than :data:`MIN_SAMPLES` usable ones are left
    (:func:`training_pixels`); None: every usable pixel may train."""
    values = np.asarray(values, np.float32)
    usable = np.isfinite(values).all(axis=1)
    frames = feature_frames((~usable).mean(axis=(1, 2)), days, target)
    feats, prior = features(values, usable, days, target, frames, extra)
    pick = usable[target]
    height, width = pick.shape
    if exclude is None:
        exclude = np.zeros(pick.shape, bool)
    elif np.shape(exclude) != pick.shape:
        raise InvalidParameterError("exclude", np.shape(exclude),
                                    f"give an (H, W) = {pick.shape} bool mask")
    trainable = pick & np.isfinite(prior).all(axis=0)
    held = np.asarray(exclude, bool)
    picked = training_pixels(trainable, held, np.arange(height), np.arange(width),
                             training_counts(trainable, held), max_samples=max_samples,
                             seed=seed)
    head = fit_head(*samples(feats, prior, values[target], picked), seed=seed, device=device)
    return predict(head, feats, prior)
