"""The generator as an evaluation method, with the residual correction on the series itself.

For a target frame: the nearest frames in time (a window of up to ``max_frames``) go
through the generator with the target hidden entirely, so its prediction of the target
uses no target pixel. Then the correction of :mod:`cloudfree.correction` (the same one the
non-learned ``interpolate_corrected`` gets) fits that prediction to the target's *visible*
pixels: the residual is spread into the gaps, with a width chosen by self-validation on
visible pixels. The share of the network's learned residual over its temporal prior (0,
0.5 or 1) is chosen the same way, which guards against a network that does worse than its
prior on an unfamiliar series. With share 0 the result is the non-learned method; the
evaluation reports both side by side, so what the network adds is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from cloudfree import correction
from cloudfree.models.generator import Generator, temporal_prior
from cloudfree.models.registry import ModelCard, load_generator, prepare_inputs, restore_outputs

#: Shares of the network's residual (on the temporal prior) tried by the correction.
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
    if not adapt:
        visible = np.isfinite(series[target]).all(axis=0)
        return np.nan_to_num(np.where(visible[None], series[target], generated)).astype(np.float32)
    candidates = [prior + alpha * (generated - prior) for alpha in ALPHAS]
    filled, _, _ = correction.correct_target(candidates, series, target, seed=seed)
    return np.nan_to_num(filled).astype(np.float32)


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
