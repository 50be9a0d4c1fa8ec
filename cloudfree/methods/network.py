"""``network``: the generator network's own prediction of the target date, nothing added.

What the learned model is worth by itself, with no per-tile head and no residual
correction (the ``generator`` method adds both). The network predicts a *residual* on its
temporal prior (linear interpolation in time from the other dates, inside the graph,
:func:`cloudfree.models.generator.temporal_prior`); this method adds that residual to the
``interpolate`` baseline of the whole series, scaled per band by a factor ``alpha`` in
[0, 1] fitted on the target date's own visible pixels:

    network = interpolate + alpha * (generated - prior)

``alpha`` is the one thing fitted to the series. It is chosen by self-validation: the
cloud masks of the series' other partly cloudy dates (the residual correction's held-out
masks, :func:`cloudfree.methods.corrected.held_out_masks`, moved by half a frame:
:func:`held_out_pixels`) are pasted onto the target's visible pixels, the network runs
again without them, and ``alpha`` is the least-squares
scale of its residual on those pixels (clipped to [0, 1]). Where the network cannot learn
(a band set it was never good at, a single index) the fit says so and ``alpha`` goes to
0: the method then *is* its prior, never worse than it by more than the fit's noise. The
hidden pixels are never used; the visible pixels of the target are the network's spatial
context (it is conditioned on the target's cloud mask and changes only the cloudy pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudfree.errors import InvalidParameterError

if TYPE_CHECKING:
    from cloudfree.models.generator import Generator
    from cloudfree.models.weights import ModelCard

#: The dates the network sees: the target and the nearest ones with clear pixels.
MAX_FRAMES = 8
#: Fewer held-out pixels than this and ``alpha`` is 0 (the prior stands).
MIN_FIT_PIXELS = 50
#: The residual is used only where it lowers the prior's held-out squared error by at
#: least this share: a small gain on the held-out pixels is as likely a chance
#: correlation (the residual follows the land cover, and so may the prior's error there)
#: as skill, and would not carry over to the gaps.
MIN_GAIN = 0.05


def network_residual(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                     target: int, band_names: Sequence[str], *,
                     max_frames: int = MAX_FRAMES) -> np.ndarray:
    """(C, H, W) reflectance: the network's change from its own temporal prior on frame
    ``target``, given the series as it is (NaN = unusable; the target's finite pixels are
    its context). 0 where the network has no prior (no other date saw the pixel)."""
    import torch

    from cloudfree.methods.generator import _pad, select_frames
    from cloudfree.models.generator import temporal_prior
    from cloudfree.models.threads import torch_threads
    from cloudfree.models.weights import prepare_inputs, restore_outputs

    frames = select_frames(series, days, target, max_frames)
    local = int(np.flatnonzero(frames == target)[0])
    padded, (h, w) = _pad(series[frames], model.downsample_factor)
    inputs = prepare_inputs(padded, days[frames], band_names, card)
    with torch.no_grad(), torch_threads():  # the same result whatever the thread count
        generated = model.generate(**inputs)
        present = inputs["band_present"][:, None, :, None, None]
        prior = temporal_prior(inputs["values"] * present * inputs["clear"][:, :, None],
                               inputs["clear"], inputs["doy"]) * present
    out = restore_outputs(generated, band_names, card)[local, :, :h, :w]
    base = restore_outputs(prior, band_names, card)[local, :, :h, :w]
    others = np.isfinite(np.delete(series[frames], local, axis=0)).all(axis=1).any(axis=0)
    return np.where(others[None], out - base, 0.0).astype(np.float32)


def fit_alpha(residual: np.ndarray, error: np.ndarray, held: np.ndarray) -> np.ndarray:
    """(C,) least-squares scale in [0, 1] of ``residual`` (C, H, W) to ``error`` (C, H, W)
    (observed minus prior) on the ``held`` (H, W) pixels where both are finite; 0 where
    it lowers their squared error by less than :data:`MIN_GAIN`."""
    alpha = np.zeros(residual.shape[0])
    for band in range(residual.shape[0]):
        r, e = residual[band][held], error[band][held]
        ok = np.isfinite(r) & np.isfinite(e)
        if ok.sum() < MIN_FIT_PIXELS:
            continue
        power = float(np.dot(r[ok], r[ok]))
        if power == 0:
            continue
        scale = float(np.clip(np.dot(r[ok], e[ok]) / power, 0.0, 1.0))
        before = float(np.dot(e[ok], e[ok]))
        after = float(np.sum((e[ok] - scale * r[ok]) ** 2))
        if before > 0 and after <= (1 - MIN_GAIN) * before:
            alpha[band] = scale
    return alpha


def held_out_pixels(usable: np.ndarray, target: int, *, seed: int = 0) -> np.ndarray:
    """(H, W) bool: the target's visible pixels that the fit of ``alpha`` hides.

    The union of the residual correction's held-out masks (real cloud shapes of the other
    dates), moved by half the frame in both directions. Where a mask lies unmoved, its own
    date is cloudy, so the prior there interpolates across a longer span than in a gap of
    the target's own (whose clouds are not the other dates'): a fit on those pixels learns
    how to correct long spans and overdoes it elsewhere. Moved, the shapes stay real and
    the pixels under them are like any other."""
    from cloudfree.methods.corrected import HELD_OUT_MASKS, held_out_masks

    height, width = usable.shape[1:]
    held = np.zeros((height, width), bool)
    for mask in held_out_masks(usable, (~usable).mean(axis=(1, 2)), np.arange(height),
                               np.arange(width), frame=target, shape=(height, width),
                               seed=seed, masks=HELD_OUT_MASKS):
        held |= mask
    moved: np.ndarray = np.roll(held, (height // 2, width // 2), axis=(0, 1)) & usable[target]
    return moved


def network_frame(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                  target: int, band_names: Sequence[str], *, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(reconstruction (C, H, W), alpha (C,))`` of ``series[target]``: its visible pixels
    as observed, its gaps ``interpolate + alpha * residual`` (see the module docstring);
    NaN where no date saw the pixel."""
    from cloudfree.methods.interpolate import interpolate_at

    series = np.asarray(series, np.float32)
    days = np.asarray(days, np.float64)
    usable = np.isfinite(series).all(axis=1)
    visible = usable[target]
    others = usable.copy()
    others[target] = False
    prior = interpolate_at(np.where(others[:, None], series, np.nan), others, days,
                           float(days[target]))
    residual = network_residual(model, card, series, days, target, band_names)
    held = held_out_pixels(usable, target, seed=seed)
    alpha = np.zeros(series.shape[1])
    if held.sum() >= MIN_FIT_PIXELS and (visible & ~held).any():
        trial = series.copy()
        trial[target][:, held] = np.nan
        trial_residual = network_residual(model, card, trial, days, target, band_names)
        alpha = fit_alpha(trial_residual, series[target] - prior, held)
    filled = prior + alpha[:, None, None].astype(np.float32) * residual
    return np.where(visible[None], series[target], filled).astype(np.float32), alpha


def default_band_names(n_bands: int, card: ModelCard) -> tuple[str, ...]:
    """The bands of a case given without names: 1 is ``ndvi`` (0..1), 3 RGB, 6 the L2A
    set, 13 L1C B01..B12 with B8A; any other count is an error naming what to pass."""
    defaults = {1: ("ndvi",), 3: ("B04", "B03", "B02"),
                6: ("B02", "B03", "B04", "B08", "B11", "B12"), 13: tuple(card.bands[:13])}
    if n_bands not in defaults:
        raise InvalidParameterError("band_names", None, f"a series of {n_bands} bands needs "
                                    "its band names (ESA ids such as B04, or ndvi)")
    return defaults[n_bands]


def evaluate(series: np.ndarray, days: np.ndarray, target: int, *,
             band_names: Sequence[str] | None = None, model_name: str = "default",
             seed: int = 0) -> np.ndarray:
    """Evaluation :data:`~cloudfree.evaluation.harness.MethodFn`: :func:`network_frame`
    with the shipped weights; where no date saw a pixel, the per-band median of the
    series (as the baselines fall back)."""
    from cloudfree.methods.correction import fill_with_series_median
    from cloudfree.methods.generator import _cached_model

    series = np.asarray(series, np.float32)
    if series.ndim != 4:
        raise InvalidParameterError("series", series.shape, "give a (T, C, H, W) array")
    model, card = _cached_model(model_name)
    if band_names is None:
        band_names = default_band_names(series.shape[1], card)
    filled, _ = network_frame(model, card, series, np.asarray(days, np.float64), target,
                              band_names, seed=seed)
    out: np.ndarray = fill_with_series_median(filled, series)
    return out


def parameters() -> dict[str, Any]:
    """What decides the pixels besides the weights."""
    return {"max_frames": MAX_FRAMES, "alpha": "per band in [0, 1], least squares on the "
            "target's visible pixels under the other dates' cloud masks, network re-run "
            "without them", "min_fit_pixels": MIN_FIT_PIXELS, "min_gain": MIN_GAIN}
