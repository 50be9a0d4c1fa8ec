"""The residual correction on cubes: one real date, its gaps fitted to its own clear pixels.

A *corrected* method (the registry's ``corrected``) shows one real date, the *target frame*
(the date nearest ``target_date``; ties: the earlier). Its clear pixels are kept as
observed; its gaps are filled from *candidates*, predictions of that frame made from the
other dates only (linear interpolation in time, or the generator with the target hidden).
Then the residual correction of :mod:`cloudfree.methods.correction` fits the prediction to
the frame: the residual ``observed - predicted`` on the frame's clear pixels is spread into
the gaps. The width ``sigma`` and the candidate are chosen by self-validation: the cloud
masks of the tile's other partly cloudy dates (5-80 % cloud; deterministic discs when there
are too few) are pasted onto clear pixels, and the pair that best predicts them wins.

One numpy core (:func:`validation_sums`, :func:`choose_from_sums`, :func:`corrected_frame`)
serves both callers: :func:`correct_frame` runs it on a whole frame (the evaluation), and
:func:`correct_stack` runs it through the dask driver in three stages over spatial chunks,
each with an overlap of ``kernel_radius(max(sigmas))`` pixels:

1. **Validation sums** (the per-tile reduction). Per chunk, the squared errors per (mask,
   candidate, sigma) summed over the chunk's *core* pixels only, with the held-out pixel
   counts. Sums add across chunks: their total is exactly the whole image's table.
2. **Calibration counts.** Per chunk, with the tile's choice from that total: the held-out
   absolute errors of the chosen pair over the core, counted in fixed bins per (band,
   distance to the nearest known residual, error). Counts add across chunks too.
3. **Correction.** Every chunk takes those totals, picks the same (candidate, sigma), corrects
   its core, and states each gap pixel's 90 % interval from the one table of the tile. One
   choice and one table per tile: no seams.

The 90 % interval (split-conformal, Mondrian by distance) is
:mod:`cloudfree.methods.corrected_interval`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from cloudfree import sentinel2 as s2bands
from cloudfree.errors import InvalidParameterError
from cloudfree.methods import correction
from cloudfree.methods._driver import (
    aligned_chunks,
    global_index,
    halo_depths,
    meta,
    to_reflectance,
    trim_halo,
    usable_block,
    with_halo,
)
from cloudfree.methods._provenance import (
    FILL_COMPOSITED,
    FILL_NODATA,
    FILL_OBSERVED,
    stacked_to_dataset,
)
from cloudfree.methods.corrected_interval import (
    COVERAGE,
    DISTANCE_EDGES_PX,
    ERROR_BINS_PER_DECADE,
    INTERVAL_CALIBRATION,
    LEVEL_SELECTION,
    LEVELS,
    UNCERTAINTY_DESCRIPTION,
    _histogram_length,
    calibration_histogram,
    half_width_frame,
    interval_table,
)
from cloudfree.methods.correction import SIGMAS_PX, kernel_radius

#: Held-out masks per tile in the self-validation (as the evaluation's correction).
HELD_OUT_MASKS = 4
#: Overlap between chunks for the default sigmas: the Gaussian's reach at the widest.
DEPTH_PX = kernel_radius(max(SIGMAS_PX))
SELECTION = ("per tile, by self-validation: the cloud masks of the tile's other partly "
             "cloudy dates (5-80 % cloud; else seeded discs) pasted onto the target date's "
             "clear pixels; each candidate's sigma is the widest unless another beats it by 5 % "
             "or more of squared error on them, and the first candidate is used unless another "
             "(at its sigma) beats it by 5 % or more")


def correction_parameters(candidates: Sequence[str], *, sigmas: Sequence[float], seed: int,
                          masks: int) -> dict[str, Any]:
    """The correction's part of a mosaic's ``parameters`` (JSON-able)."""
    return {"candidates": list(candidates), "sigmas_px": [float(s) for s in sigmas],
            "sigma_selection": SELECTION, "held_out_masks": int(masks), "seed": int(seed),
            "interval": {"coverage": COVERAGE, "calibration": INTERVAL_CALIBRATION,
                         "error_bins_per_decade": ERROR_BINS_PER_DECADE,
                         "distance_edges_px": list(DISTANCE_EDGES_PX),
                         "level_selection": LEVEL_SELECTION, "levels": list(LEVELS)}}


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(s) for s in sigmas)
    if not out or not all(np.isfinite(s) and s > 0 for s in out):
        raise InvalidParameterError("sigmas_px", sigmas, "give one or more widths > 0 pixels")
    return out


def _sums_length(masks: int, n_candidates: int, n_sigmas: int) -> int:
    return masks * n_candidates * n_sigmas + masks + 1


def held_out_masks(usable: np.ndarray, cloud_fraction: np.ndarray, rows: np.ndarray,
                   cols: np.ndarray, *, frame: int, shape: tuple[int, int], seed: int,
                   masks: int) -> list[np.ndarray]:
    """The self-validation's held-out masks on one chunk (or the whole image): (h, w) bool
    each, ``masks`` in all. The cloud masks of other partly cloudy frames, else discs
    (:func:`cloudfree.methods.correction.held_out_plan`), decided from the whole tile's
    ``cloud_fraction`` (T,) and ``seed`` alone, so every chunk draws the same masks;
    ``rows``/``cols`` are the chunk's global pixel indices. Whatever is fitted to the
    target frame's visible pixels and judged by the self-validation must not train on
    their union."""
    frames, discs = correction.held_out_plan(cloud_fraction, frame,
                                             np.random.default_rng(seed), masks, shape)
    return [~usable[t] for t in frames] + [correction.disc_mask(rows, cols, d) for d in discs]


def validation_sums(observed: np.ndarray, usable: np.ndarray, candidates: np.ndarray,
                    cloud_fraction: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    scored: np.ndarray | None, *, frame: int, shape: tuple[int, int],
                    seed: int, masks: int, sigmas: Sequence[float]) -> np.ndarray:
    """One chunk's (or the whole image's) self-validation sums, as a flat vector.

    Args:
        observed: (C, h, w) reflectance of the target frame (anything where not usable).
        usable: (T, h, w) usable observations; ``usable[frame]`` is the target's visible.
        candidates: (K, C, h, w) predictions of the target frame from the other dates.
        cloud_fraction: (T,) share of unusable pixels of each frame over the *whole* tile.
        rows, cols: the chunk's global pixel rows and columns (for the discs).
        scored: (h, w) the pixels whose errors count (the chunk's core); None: all.
        frame, shape, seed, masks, sigmas: the target frame, the whole tile's (H, W), and
            the held-out plan (:func:`cloudfree.methods.correction.held_out_plan`).
    """
    n_candidates, n_bands = candidates.shape[:2]
    support = usable[frame] & np.isfinite(candidates).all(axis=(0, 1))
    residual = np.where(support, observed[None] - candidates, 0.0)
    residual = residual.reshape(n_candidates * n_bands, *support.shape)
    held_masks = held_out_masks(usable, cloud_fraction, rows, cols, frame=frame, shape=shape,
                                seed=seed, masks=masks)
    scored = np.ones(support.shape, bool) if scored is None else scored
    errors = np.zeros((masks, n_candidates, len(sigmas)))
    counts = np.zeros(masks)
    for m, mask in enumerate(held_masks):
        held = mask & support
        counts[m] = np.count_nonzero(held & scored)
        if not held.any():
            continue
        per_channel = correction.held_out_errors(residual, support, held, sigmas, scored=scored)
        errors[m] = per_channel.reshape(len(sigmas), n_candidates, n_bands).sum(axis=2).T
    return np.concatenate([errors.ravel(), counts, [np.count_nonzero(support & scored)]])


def choose_from_sums(sums: np.ndarray, *, n_candidates: int, masks: int,
                     sigmas: Sequence[float]) -> tuple[int, float]:
    """``(candidate index, sigma)`` from a tile's validation sums, as
    :func:`cloudfree.methods.correction.choose` decides on a whole image: held-out masks with
    fewer than :data:`~cloudfree.methods.correction.MIN_PIXELS` pixels are skipped; with fewer
    known residual pixels than that, the first candidate uncorrected (sigma NaN)."""
    sums = np.asarray(sums, np.float64).ravel()
    size = masks * n_candidates * len(sigmas)
    errors = sums[:size].reshape(masks, n_candidates, len(sigmas))
    counts, known = sums[size:size + masks], sums[size + masks]
    if known < correction.MIN_PIXELS:
        return 0, float("nan")
    table = errors[counts >= correction.MIN_PIXELS].sum(axis=0)
    return correction.best_pair(table, sigmas)


def heldout_rmse(sums: np.ndarray, *, index: int, sigma: float, n_candidates: int,
                 n_bands: int, masks: int, sigmas: Sequence[float]) -> float:
    """The chosen pair's root-mean-square error on the held-out pixels (reflectance, over
    bands): what the self-validation measured, an estimate of the error of the filled
    pixels. NaN when nothing was corrected."""
    if not np.isfinite(sigma):
        return float("nan")
    sums = np.asarray(sums, np.float64).ravel()
    size = masks * n_candidates * len(sigmas)
    errors = sums[:size].reshape(masks, n_candidates, len(sigmas))
    counts = sums[size:size + masks]
    used = counts >= correction.MIN_PIXELS
    pixels = counts[used].sum() * n_bands
    if not pixels:
        return float("nan")
    column = int(np.argmin(np.abs(np.asarray(sigmas, np.float64) - sigma)))
    return float(np.sqrt(errors[used, index, column].sum() / pixels))


def interval_frame(observed: np.ndarray, usable: np.ndarray, candidates: np.ndarray, *,
                   frame: int, index: int, sigma: float, seed: int = 0,
                   masks: int = HELD_OUT_MASKS, sigmas: Sequence[float] = SIGMAS_PX,
                   select_level: bool = True) -> np.ndarray:
    """(C, H, W) half-widths of the 90 % interval of the whole-array correction's result
    (:func:`correct_frame`'s ``index``/``sigma``, the same ``seed``, ``masks`` and
    ``sigmas``): split-conformal on its own held-out errors
    (:func:`cloudfree.methods.corrected_interval.calibration_histogram`,
    :func:`cloudfree.methods.corrected_interval.interval_table` with ``select_level``,
    :func:`cloudfree.methods.corrected_interval.half_width_frame`)."""
    height, width = usable.shape[1:]
    cap = float(kernel_radius(max(_check_sigmas(sigmas))))
    histogram = calibration_histogram(observed, usable, candidates, (~usable).mean(axis=(1, 2)),
                                      np.arange(height), np.arange(width), None, frame=frame,
                                      shape=(height, width), seed=seed, masks=masks,
                                      index=index, sigma=sigma, cap=cap)
    table, _ = interval_table(histogram, n_bands=candidates.shape[1], masks=masks,
                              select_level=select_level)
    return half_width_frame(usable, candidates, table, frame=frame, cap=cap)


def corrected_frame(observed: np.ndarray, usable: np.ndarray, candidates: np.ndarray, *,
                    frame: int, index: int, sigma: float) -> np.ndarray:
    """(C, h, w) float64: candidate ``index`` plus its residual spread at ``sigma`` (NaN:
    none); the target's visible pixels as observed, NaN where the candidate is."""
    predicted = np.asarray(candidates[index], np.float64)
    visible = usable[frame]
    if not np.isfinite(sigma):
        return np.where(visible[None], observed, predicted)
    support = visible & np.isfinite(candidates).all(axis=(0, 1))
    filled = correction.correct(predicted, observed, support, sigma)
    return np.where(visible[None], observed, filled)


def correct_frame(observed: np.ndarray, usable: np.ndarray, candidates: np.ndarray, *,
                  frame: int, seed: int = 0, masks: int = HELD_OUT_MASKS,
                  sigmas: Sequence[float] = SIGMAS_PX, scoring: np.ndarray | None = None
                  ) -> tuple[np.ndarray, int, float]:
    """The whole-array correction (what one chunk without neighbours does): ``(filled (C,
    H, W) float64, candidate index, sigma)``. Arguments as :func:`validation_sums`;
    ``scoring`` as in :func:`correct_stack` (what the self-validation scores)."""
    sigmas = _check_sigmas(sigmas)
    height, width = usable.shape[1:]
    scored = candidates if scoring is None else scoring
    sums = validation_sums(observed, usable, scored, (~usable).mean(axis=(1, 2)),
                           np.arange(height), np.arange(width), None, frame=frame,
                           shape=(height, width), seed=seed, masks=masks, sigmas=sigmas)
    index, sigma = choose_from_sums(sums, n_candidates=len(candidates), masks=masks,
                                    sigmas=sigmas)
    filled = corrected_frame(observed, usable, candidates, frame=frame, index=index, sigma=sigma)
    return filled, index, sigma


def _sums_block(observed_dn: Any, usable: Any, candidates: Any, cloud_fraction: Any, rows: Any,
                cols: Any, row_core: Any, col_core: Any, **kw: Any) -> np.ndarray:
    """Stage 1 on one chunk with its halo -> (1, 1, n) sums over its core."""
    scored = row_core[:, None] & col_core[None, :]
    sums = validation_sums(to_reflectance(observed_dn), usable, candidates, cloud_fraction,
                           rows, cols, scored, **kw)
    return sums[None, None]


def _histogram_block(observed_dn: Any, usable: Any, candidates: Any, cloud_fraction: Any,
                     rows: Any, cols: Any, row_core: Any, col_core: Any, sums: Any, *,
                     masks: int, sigmas: Sequence[float], **kw: Any) -> np.ndarray:
    """Stage 1b on one chunk with its halo -> (1, 1, n) calibration counts of the tile's
    choice over its core (:func:`cloudfree.methods.corrected_interval.calibration_histogram`)."""
    index, sigma = choose_from_sums(sums, n_candidates=candidates.shape[0], masks=masks,
                                    sigmas=sigmas)
    scored = row_core[:, None] & col_core[None, :]
    counts = calibration_histogram(to_reflectance(observed_dn), usable, candidates,
                                   cloud_fraction, rows, cols, scored, masks=masks, index=index,
                                   sigma=sigma, cap=float(kernel_radius(max(sigmas))), **kw)
    return counts[None, None]


def _interval_block(histogram: np.ndarray, select_level: Any, *, n_bands: int,
                    masks: int) -> np.ndarray:
    """Once per tile: :func:`cloudfree.methods.corrected_interval.interval_table`'s table,
    flat, then its level."""
    table, level = interval_table(histogram, n_bands=n_bands, masks=masks,
                                  select_level=bool(select_level))
    return np.append(table.ravel(), level)


def _corrected_block(observed_dn: np.ndarray, usable: np.ndarray, candidates: np.ndarray,
                     sums: np.ndarray, interval: np.ndarray, *, frame: int, day: float,
                     fill: int, masks: int, sigmas: Sequence[float]) -> np.ndarray:
    """Stage 2 on one chunk with its halo -> (2 C + 3, h, w): DN, clear count, source day,
    fill (the layout of :func:`cloudfree.methods._composite.stacked_to_dataset`), then the
    C half-widths of the 90 % interval (reflectance; 0 where observed, NaN where nodata)."""
    index, sigma = choose_from_sums(sums, n_candidates=candidates.shape[0], masks=masks,
                                    sigmas=sigmas)
    filled = corrected_frame(to_reflectance(observed_dn), usable, candidates, frame=frame,
                             index=index, sigma=sigma)
    visible = usable[frame]
    count = usable.sum(axis=0)
    dn = (filled - s2bands.OFFSET) / s2bands.SCALE
    # no date observed it, or no candidate reaches it: nodata, as the composites say
    gap = ~visible & ((count == 0) | ~np.isfinite(dn).all(axis=0))
    n_bands = observed_dn.shape[0]
    out = np.empty((2 * n_bands + 3, *visible.shape), np.float32)
    out[:n_bands] = np.where(visible, observed_dn, np.where(gap, np.nan, dn))  # observed: exact DN
    out[n_bands] = count
    out[n_bands + 1] = np.where(gap, np.nan, np.floor(day + 1e-6))
    out[n_bands + 2] = np.select([visible, gap], [FILL_OBSERVED, FILL_NODATA], fill)
    table = np.asarray(interval[:-1]).reshape(n_bands, -1)
    width = half_width_frame(usable, candidates, table, frame=frame,
                             cap=float(kernel_radius(max(sigmas))))
    out[n_bands + 3:] = np.where(gap, np.nan, width)
    return out


def _choice_block(sums: np.ndarray, interval: np.ndarray, *, n_bands: int, **kw: Any
                  ) -> np.ndarray:
    index, sigma = choose_from_sums(sums, **kw)
    rmse = heldout_rmse(sums, index=index, sigma=sigma, n_bands=n_bands, **kw)
    return np.array([index, sigma, rmse, interval[-1]], np.float64)


def correct_stack(reflectance: Any, clear: Any, candidates: Any, *, frame: int, day: float,
                  nodata: int = 0, fill: int = FILL_COMPOSITED, seed: int = 0,
                  masks: int = HELD_OUT_MASKS, sigmas: Sequence[float] = SIGMAS_PX,
                  scoring: Any = None, select_level: Any = True) -> tuple[Any, Any]:
    """The corrected target frame of a cube, as the composites' float stack with the
    interval's half-widths.

    Args:
        reflectance: (T, C, H, W) uint16 DN, ``nodata`` where there is no data.
        clear: (T, H, W) bool.
        candidates: (K, C, H, W) float reflectance, predictions of frame ``frame`` made
            without it (NaN where they have nothing).
        frame: the target frame; ``day``: its day since 1970 (the source date written).
        fill: the ``FILL_*`` code of corrected pixels.
        seed, masks, sigmas: the self-validation (:func:`validation_sums`).
        scoring: (K, C, H, W) what the self-validation scores in place of ``candidates``
            (the candidate chosen, its width and the interval), one per candidate: a
            candidate fitted to the frame's visible pixels is judged by heads fitted
            outside the held-out masks, whose errors there are out-of-sample
            (:func:`cloudfree.methods._head_stage.head_pair`). None: the candidates.
        select_level: whether the interval's quantile level is cross-validated
            (:func:`cloudfree.methods.corrected_interval.interval_level`): where what is
            scored is what fills. False (or a lazy
            0-d bool that computes to it): the nominal 90 %, where the scored heads are
            weaker than the candidate that fills, so that its errors already err wide.

    Returns:
        ``(stack, choice)``: the (2 C + 3, H, W) stack (DN, clear count, source day, fill,
        then the C half-widths of the 90 % interval,
        :func:`cloudfree.methods.corrected_interval.calibration_histogram`) and a (4,)
        float64 array ``[candidate index, sigma px, held-out RMSE, interval level]`` (sigma
        and RMSE NaN: too few clear pixels to correct; :func:`heldout_rmse`,
        :func:`cloudfree.methods.corrected_interval.interval_level`). Dask arrays when any
        input is one (nothing computed), else numpy.
    """
    sigmas = _check_sigmas(sigmas)
    n_candidates = candidates.shape[0]
    n = _sums_length(masks, n_candidates, len(sigmas))
    height, width = reflectance.shape[-2:]
    plan: dict[str, Any] = {"frame": frame, "shape": (height, width), "seed": seed, "masks": masks,
            "sigmas": sigmas}
    finish: dict[str, Any] = {"frame": frame, "day": day, "fill": fill, "masks": masks, "sigmas": sigmas}
    if scoring is None:
        scoring = candidates
    elif tuple(scoring.shape) != tuple(candidates.shape):
        raise InvalidParameterError("scoring", tuple(scoring.shape),
                                    f"give one per candidate, {tuple(candidates.shape)}")
    arrays = (reflectance, clear, candidates, scoring)
    if not any(hasattr(a, "dask") for a in arrays):
        reflectance = np.asarray(reflectance)
        usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
        candidates = np.asarray(candidates, np.float32)
        scored = np.asarray(scoring, np.float32)
        everything = np.ones(height, bool), np.ones(width, bool)
        sums = _sums_block(reflectance[frame], usable, scored, (~usable).mean(axis=(1, 2)),
                           np.arange(height), np.arange(width), *everything, **plan)[0, 0]
        histogram = _histogram_block(reflectance[frame], usable, scored,
                                     (~usable).mean(axis=(1, 2)), np.arange(height),
                                     np.arange(width), *everything, sums, **plan)[0, 0]
        interval = _interval_block(histogram, select_level, n_bands=candidates.shape[1],
                                   masks=masks)
        choice = _choice_block(sums, interval, n_candidates=n_candidates,
                               n_bands=candidates.shape[1], masks=masks, sigmas=sigmas)
        return _corrected_block(reflectance[frame], usable, candidates, sums, interval,
                                **finish), choice

    import dask.array as da

    depth = kernel_radius(max(sigmas))
    spatial = next(a for a in arrays if hasattr(a, "dask")).chunks[-2:]
    refl, clear, cand, score = (da.asarray(a) for a in arrays)
    spatial = tuple(aligned_chunks(c, depth=depth) for c in spatial)
    refl = refl.rechunk((-1, -1, *spatial))
    clear = clear.astype(bool).rechunk((-1, *spatial))
    cand = cand.astype(np.float32).rechunk((-1, -1, *spatial))
    score = cand if scoring is candidates else score.astype(np.float32).rechunk(cand.chunks)
    usable = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl, "tbyx", clear,
                          "tyx", concatenate=True, meta=meta(3, bool))
    cloud_fraction = (~usable).mean(axis=(1, 2))  # (T,), over the whole tile
    depth_y, depth_x = halo_depths(spatial, depth)
    observed_h, usable_h, cand_h, score_h = (with_halo(a, depth_y, depth_x)
                                             for a in (refl[frame], usable, cand, score))
    rows, row_core = global_index(spatial[0], depth_y)
    cols, col_core = global_index(spatial[1], depth_x)
    per_chunk = da.blockwise(
        partial(_sums_block, **plan), "yxs", observed_h, "byx", usable_h, "tyx", score_h, "kbyx",
        cloud_fraction, "t", rows, "y", cols, "x", row_core, "y", col_core, "x",
        new_axes={"s": n}, adjust_chunks={"y": 1, "x": 1}, concatenate=True,
        meta=meta(3, np.float64))
    sums = per_chunk.sum(axis=(0, 1))  # the whole tile's table, still lazy
    per_chunk_counts = da.blockwise(
        partial(_histogram_block, **plan), "yxh", observed_h, "byx", usable_h, "tyx", score_h,
        "kbyx", cloud_fraction, "t", rows, "y", cols, "x", row_core, "y", col_core, "x", sums,
        "s", new_axes={"h": _histogram_length(refl.shape[1], masks)},
        adjust_chunks={"y": 1, "x": 1}, concatenate=True, meta=meta(3, np.float64))
    histogram = per_chunk_counts.sum(axis=(0, 1))  # the tile's calibration set, lazy
    n_interval = refl.shape[1] * (len(DISTANCE_EDGES_PX) + 1) + 1
    select = select_level if hasattr(select_level, "dask") else da.asarray(bool(select_level))
    interval = da.blockwise(  # once per tile: the table and its level
        partial(_interval_block, n_bands=refl.shape[1], masks=masks), "i", histogram, "h",
        select, "", new_axes={"i": n_interval}, concatenate=True, meta=meta(1, np.float64))
    stacked = da.blockwise(partial(_corrected_block, **finish), "zyx", observed_h, "byx",
                           usable_h, "tyx", cand_h, "kbyx", sums, "s", interval, "i",
                           new_axes={"z": 2 * refl.shape[1] + 3}, concatenate=True,
                           meta=meta(3, np.float32))
    stacked = trim_halo(stacked, depth_y, depth_x)
    choice = da.blockwise(partial(_choice_block, n_candidates=n_candidates,
                                  n_bands=cand.shape[1], masks=masks, sigmas=sigmas),
                          "c", sums, "s", interval, "i", new_axes={"c": 4}, concatenate=True,
                          meta=meta(1, np.float64))
    return stacked, choice


#: ``uncertainty``'s nodata: no value (``reflectance`` nodata) or no interval.
UNCERTAINTY_NODATA = int(np.iinfo(np.uint16).max)


def uncertainty_dn(width: xr.DataArray) -> xr.DataArray:
    """Half-widths (reflectance) as uint16 DN of :data:`cloudfree.sentinel2.SCALE`, rounded
    up (the interval never narrows), offset 0; NaN -> :data:`UNCERTAINTY_NODATA`."""
    dn = xr.apply_ufunc(np.ceil, width / s2bands.SCALE - 1e-6, dask="allowed")
    out: xr.DataArray = dn.clip(0, UNCERTAINTY_NODATA - 1).fillna(UNCERTAINTY_NODATA
                                                                 ).astype(np.uint16)
    out.attrs.update(nodata=UNCERTAINTY_NODATA, scale=s2bands.SCALE, offset=0.0,
                     units="reflectance", description=UNCERTAINTY_DESCRIPTION)
    return out


def corrected_dataset(stacked: Any, choice: Any, reflectance: xr.DataArray, *, nodata: int,
                      method: str, parameters: dict[str, Any]) -> xr.Dataset:
    """The composites' dataset (:func:`cloudfree.methods._composite.stacked_to_dataset`), with the
    tile's choice as scalar coordinates ``correction_candidate`` and ``correction_sigma_px``
    (lazy with dask; :func:`record_choice` moves them into ``parameters`` once computed),
    and from :func:`correct_stack`'s half-widths the variable ``uncertainty`` (band, y, x):
    the half-width of the 90 % interval as uint16 DN (:func:`uncertainty_dn`), 0 where
    observed (exact), :data:`UNCERTAINTY_NODATA` where ``reflectance`` is nodata."""
    n_bands = reflectance.sizes["band"]
    out = stacked_to_dataset(stacked[:n_bands + 3], reflectance, n_bands=n_bands, nodata=nodata)
    if stacked.shape[0] == 2 * n_bands + 3:
        width = xr.DataArray(stacked[n_bands + 3:], dims=("band", "y", "x"),
                             coords=out["reflectance"].coords)
        out["uncertainty"] = uncertainty_dn(width)
    out = out.assign_coords(correction_candidate=((), choice[0]),
                            correction_sigma_px=((), choice[1]),
                            correction_heldout_rmse=((), choice[2]),
                            correction_interval_level=((), choice[3]))
    json.dumps(parameters)  # written into processing:*; fail here, not there
    out.attrs.update(method=method, parameters=parameters, nodata=nodata)
    return out


def record_choice(result: xr.Dataset) -> xr.Dataset:
    """A computed corrected mosaic with its choice moved from coordinates into
    ``attrs["parameters"]`` for the STAC item: ``corrected`` (False when the target date
    had too few clear pixels to fit to), ``chosen_candidate`` by name,
    ``chosen_sigma_px``, ``heldout_rmse`` (reflectance; the self-validation's error of
    that choice, an estimate of the filled pixels' error; None when not corrected) and
    ``interval_level`` (the quantile level the interval is stated at,
    :func:`cloudfree.methods.corrected_interval.interval_level`). Other datasets pass
    through."""
    if "correction_sigma_px" not in result.coords:
        return result
    parameters = dict(result.attrs.get("parameters", {}))
    sigma = float(result.coords["correction_sigma_px"])
    index = int(result.coords["correction_candidate"])
    names = parameters.get("candidates") or []
    parameters["corrected"] = bool(np.isfinite(sigma))
    parameters["chosen_candidate"] = names[index] if index < len(names) else index
    parameters["chosen_sigma_px"] = sigma if np.isfinite(sigma) else None
    rmse = float(result.coords["correction_heldout_rmse"])
    parameters["heldout_rmse"] = round(rmse, 5) if np.isfinite(rmse) else None
    parameters["interval_level"] = round(float(result.coords["correction_interval_level"]), 3)
    out = result.drop_vars(["correction_candidate", "correction_sigma_px",
                            "correction_heldout_rmse", "correction_interval_level"])
    out.attrs = {**result.attrs, "parameters": parameters}
    return out


__all__ = ("HELD_OUT_MASKS", "SELECTION", "UNCERTAINTY_NODATA", "choose_from_sums",
           "correct_frame", "correct_stack", "corrected_dataset", "corrected_frame",
           "correction_parameters", "heldout_rmse", "interval_frame", "record_choice",
           "uncertainty_dn", "validation_sums")
