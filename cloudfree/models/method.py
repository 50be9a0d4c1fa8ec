"""The generator as an evaluation method, with test-time adaptation on the series itself.

For a target frame: the nearest frames in time (a window of up to ``max_frames``) go
through the generator with the target hidden entirely, so its prediction of the target
uses no target pixel. Test-time adaptation then uses only the target's *visible* pixels:
the residual (observed - generated) there is spread into the gaps by normalised Gaussian
convolution, which removes the per-date bias (atmosphere, phenology) the generator cannot
know. The width of that spreading is chosen per call by self-validation on the visible
pixels (the series' own cloud masks, and discs, pasted onto them) — never on hidden truth;
so is the share of the network's learned residual over its temporal prior (0, 0.5 or 1),
which guards against a network that does worse than its prior on an unfamiliar series.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage

from cloudfree.models.generator import Generator, temporal_prior
from cloudfree.models.registry import ModelCard, load_generator, prepare_inputs, restore_outputs

SIGMAS_PX = (4.0, 8.0, 16.0, 32.0)
#: Shares of the network's residual (on the temporal prior) tried by the adaptation.
ALPHAS = (0.0, 0.5, 1.0)


@lru_cache(maxsize=4)
def _cached_model(name: str) -> tuple[Generator, ModelCard]:
    return load_generator(name)


def select_frames(series: np.ndarray, days: np.ndarray, target: int, max_frames: int) -> np.ndarray:
    """The target and the nearest frames in time that have clear pixels, in time order."""
    usable = np.isfinite(series).all(axis=1).mean(axis=(1, 2)) > 0.02
    usable[target] = True
    candidates = np.flatnonzero(usable)
    order = candidates[np.argsort(np.abs(days[candidates] - days[target]), kind="stable")]
    chosen = np.sort(order[:max_frames])
    return chosen[np.argsort(days[chosen], kind="stable")]


def _pad(array: np.ndarray, factor: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = array.shape[-2:]
    ph, pw = -h % factor, -w % factor
    widths = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(array, widths, mode="reflect") if (ph or pw) else array, (h, w)


def generate_frame(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                   target: int, band_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The generator's (C, H, W) reflectance for frame ``target``, hiding all of it, and
    the temporal prior the generator starts from (its input, before the network)."""
    hidden = series.copy()
    hidden[target] = np.nan
    padded, (h, w) = _pad(hidden, model.downsample_factor)
    inputs = prepare_inputs(padded, days, band_names, card)
    with torch.no_grad():
        out = model(**inputs)
        present = inputs["band_present"][:, None, :, None, None]
        prior = temporal_prior(inputs["values"] * present, inputs["clear"], inputs["doy"])
    return (restore_outputs(out, band_names, card)[target, :, :h, :w],
            restore_outputs(prior, band_names, card)[target, :, :h, :w])


def _spread(residual: np.ndarray, visible: np.ndarray, sigma: float) -> np.ndarray:
    weight = ndimage.gaussian_filter(visible.astype(np.float64), sigma, mode="reflect")
    out = np.stack([ndimage.gaussian_filter(np.where(visible, r, 0.0), sigma, mode="reflect")
                    for r in residual])
    return np.where(weight > 1e-8, out / np.maximum(weight, 1e-8), 0.0)


def validation_errors(residual: np.ndarray, visible: np.ndarray, masks: Sequence[np.ndarray],
                      sigmas: Sequence[float] = SIGMAS_PX) -> np.ndarray:
    """Per sigma, the squared error of spreading ``residual`` onto visible pixels hidden by
    ``masks`` from the other visible pixels (the residual there is the error left)."""
    errors = np.zeros(len(sigmas))
    for mask in masks:
        held = mask & visible
        if held.sum() < 20:
            continue
        keep = visible & ~held
        for i, sigma in enumerate(sigmas):
            errors[i] += float(((_spread(residual, keep, sigma) - residual)[:, held] ** 2).sum())
    return errors


def choose_sigma(residual: np.ndarray, visible: np.ndarray, masks: Sequence[np.ndarray],
                 sigmas: Sequence[float] = SIGMAS_PX) -> float:
    """The spreading width that best predicts visible pixels hidden by ``masks``."""
    errors = validation_errors(residual, visible, masks, sigmas)
    return float(sigmas[int(np.argmin(errors))]) if errors.any() else float(sigmas[-1])


def _validation_masks(series: np.ndarray, target: int, rng: np.random.Generator,
                      count: int = 4) -> list[np.ndarray]:
    """Cloud masks of the series' own partly cloudy frames, else random discs."""
    cloudy = ~np.isfinite(series).all(axis=1)
    fraction = cloudy.mean(axis=(1, 2))
    pool = [cloudy[i] for i in np.flatnonzero((fraction > 0.05) & (fraction < 0.8)) if i != target]
    h, w = cloudy.shape[1:]
    masks = [pool[i] for i in rng.permutation(len(pool))[:count]]
    yy, xx = np.mgrid[:h, :w]
    while len(masks) < count:
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        radius = rng.uniform(0.1, 0.3) * min(h, w)
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)
    return masks


def fill_target(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                target: int, band_names: Sequence[str], *, max_frames: int = 8,
                adapt: bool = True, seed: int = 0) -> np.ndarray:
    """(C, H, W) reconstruction of ``series[target]``; its finite pixels pass through."""
    series = np.asarray(series, np.float32)
    days = np.asarray(days, np.float64)
    frames = select_frames(series, days, target, max_frames)
    local = int(np.flatnonzero(frames == target)[0])
    generated, prior = generate_frame(model, card, series[frames], days[frames], local,
                                      band_names)
    observed = series[target]
    visible = np.isfinite(observed).all(axis=0)
    if adapt and visible.sum() >= 20:
        # the share of the network's residual and the spreading width, chosen jointly on
        # visible pixels hidden by validation masks
        masks = _validation_masks(series, target, np.random.default_rng(seed))
        best = (np.inf, 1.0, SIGMAS_PX[-1])
        for alpha in ALPHAS:
            base = prior + alpha * (generated - prior)
            residual = np.where(visible, observed - base, 0.0)
            errors = validation_errors(residual, visible, masks)
            i = int(np.argmin(errors))
            if errors.any() and errors[i] < best[0]:
                best = (float(errors[i]), alpha, SIGMAS_PX[i])
        _, alpha, sigma = best
        base = prior + alpha * (generated - prior)
        residual = np.where(visible, observed - base, 0.0)
        generated = base + _spread(residual, visible, sigma)
    out = np.where(visible[None], observed, generated)
    return np.nan_to_num(out).astype(np.float32)


def generator_method(series: np.ndarray, days: np.ndarray, target: int, *,
                     band_names: Sequence[str] | None = None, model_name: str = "default",
                     adapt: bool = True) -> np.ndarray:
    """Evaluation :data:`~cloudfree.evaluate.MethodFn` of the shipped generator.

    ``band_names`` map the case's bands onto the model's; without them a 1-band series is
    taken as ``ndvi`` (0..1), 13 bands as L1C B01..B12, 6 as L2A, 3 as RGB."""
    model, card = _cached_model(model_name)
    if band_names is None:
        defaults = {1: ("ndvi",), 3: ("B04", "B03", "B02"), 6: ("B02", "B03", "B04", "B08", "B11",
                    "B12"), 13: card.bands[:13]}
        band_names = defaults[series.shape[1]]
    return fill_target(model, card, series, days, target, band_names, adapt=adapt)


def generator_method_no_tta(series: np.ndarray, days: np.ndarray, target: int, *,
                            band_names: Sequence[str] | None = None) -> np.ndarray:
    """The generator alone, without test-time adaptation (for ablations)."""
    return generator_method(series, days, target, band_names=band_names, adapt=False)
