"""The generator as an evaluation method: the pretrained network, then test-time training.

For a target frame: the nearest frames in time (a window of up to ``max_frames``) go
through the pretrained generator with the target hidden entirely, so its prediction of
the target uses no target pixel. Then a small head (:mod:`cloudfree.models.head`) is
trained on the target's *visible* pixels to predict the target from the nearest dates,
the interpolation prior and that prediction, and predicts the gaps; no hidden pixel takes
part. Last, the correction of :mod:`cloudfree.methods.correction` (the one the non-learned
``interpolate_corrected`` gets) spreads what is left of the residual on the visible pixels
into the gaps. ``generator_no_tta`` is the pretrained network alone, for the ablation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from cloudfree.methods import correction
from cloudfree.models import head as adapt_module
from cloudfree.models.generator import Generator
from cloudfree.models.weights import ModelCard, load_generator, prepare_inputs, restore_outputs


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
                   target: int, band_names: Sequence[str]) -> np.ndarray:
    """The pretrained network's (C, H, W) reflectance for frame ``target``, hiding all of it."""
    hidden = series.copy()
    hidden[target] = np.nan
    padded, (h, w) = _pad(hidden, model.downsample_factor)
    inputs = prepare_inputs(padded, days, band_names, card)
    with torch.no_grad():
        out = model(**inputs)
    return restore_outputs(out, band_names, card)[target, :, :h, :w]


def fill_target(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                target: int, band_names: Sequence[str], *, max_frames: int = 8,
                adapt: bool = True, seed: int = 0) -> np.ndarray:
    """(C, H, W) reconstruction of ``series[target]``; its finite pixels pass through.

    ``adapt``: test-time training (:mod:`cloudfree.models.head`) on the target's visible
    pixels, then the residual correction; without it, the pretrained network alone."""
    series = np.asarray(series, np.float32)
    days = np.asarray(days, np.float64)
    visible = np.isfinite(series[target]).all(axis=0)
    frames = select_frames(series, days, target, max_frames)
    local = int(np.flatnonzero(frames == target)[0])
    generated = generate_frame(model, card, series[frames], days[frames], local, band_names)
    if not adapt:
        return np.nan_to_num(np.where(visible[None], series[target], generated)).astype(np.float32)
    adapted = correction.fill_with_series_median(
        adapt_module.adapted_frame(series, days, target, extra=generated, seed=seed), series)
    filled, _, _ = correction.correct_target([adapted], series, target, seed=seed)
    return np.nan_to_num(filled).astype(np.float32)


def generator_method(series: np.ndarray, days: np.ndarray, target: int, *,
                     band_names: Sequence[str] | None = None, model_name: str = "default",
                     adapt: bool = True) -> np.ndarray:
    """Evaluation :data:`~cloudfree.evaluation.harness.MethodFn` of the shipped generator.

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
