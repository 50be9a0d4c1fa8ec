"""Corrected mosaics: a prediction of the target date fitted to its own clear pixels, lazily.

A targeted mosaic shows one real date, the *target frame* (the date nearest
``target_date``; ties: the earlier). Its clear pixels are kept as observed; its gaps are
filled from *candidates*, predictions of that frame made from the other dates only
(linear interpolation in time, or the generator with the target hidden). Then the residual
correction of :mod:`cloudfree.methods.correction` fits the prediction to the frame: the residual
``observed - predicted`` on the frame's clear pixels (haze, illumination, phenology that
moved on since the neighbouring dates) is spread into the gaps by normalised Gaussian
convolution. The width ``sigma`` and the candidate are chosen by self-validation: the
cloud masks of the tile's other partly cloudy dates (5-80 % cloud; deterministic discs
when there are too few) are pasted onto clear pixels, and the pair that best predicts
them wins. This is what the evaluation measures (``interpolate_corrected``, and the
generator's method), here on dask cubes of any size.

Two lazy stages over spatial chunks (time and band whole), each with an overlap of
``kernel_radius(max(sigmas))`` pixels, so that every core pixel sees what it would see
in a whole-array run (``boundary="none"``: at the true image edge both reflect the same):

1. **Validation sums.** Per chunk, the squared errors per (mask, candidate, sigma) summed
   over the chunk's *core* pixels only, with the held-out pixel counts. Sums add across
   chunks: their total (a small dask array) is exactly the whole image's table.
2. **Correction.** Every chunk takes that one total as an argument, picks the same
   (candidate, sigma) from it, and corrects its core. One choice per tile: no seams.

Nothing is computed while the graph is built; chunks smaller than the overlap are merged.
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
from cloudfree.methods._composite import (
    FILL_COMPOSITED,
    FILL_NODATA,
    FILL_OBSERVED,
    interpolate_at,
    prepare_cube,
    stacked_to_dataset,
    usable_block,
)
from cloudfree.methods.correction import SIGMAS_PX, kernel_radius

#: Held-out masks per tile in the self-validation (as the evaluation's correction).
HELD_OUT_MASKS = 4
#: Overlap between chunks for the default sigmas: the Gaussian's reach at the widest.
DEPTH_PX = kernel_radius(max(SIGMAS_PX))
SELECTION = ("per tile, by self-validation: the cloud masks of the tile's other partly "
             "cloudy dates (5-80 % cloud; else seeded discs) pasted onto the target date's "
             "clear pixels; the (candidate, sigma) that best predicts them is used")


# --------------------------------------------------------------------------- helpers


def nearest_frame(days: np.ndarray, target_day: float) -> int:
    """The index of the date nearest ``target_day`` (ties: the earlier date)."""
    days = np.asarray(days, dtype=np.float64)
    distance = np.abs(days - target_day)
    candidates = np.flatnonzero(distance == distance.min())
    return int(candidates[np.argmin(days[candidates])])


def aligned_chunks(chunks: tuple[int, ...], *, depth: int, factor: int = 1) -> tuple[int, ...]:
    """Regular chunks on the ``factor`` grid, each at least ``depth`` (the overlap): a
    neighbour can only lend a halo it has. A short last chunk joins the one before."""
    total = sum(chunks)
    size = max(-(-chunks[0] // factor) * factor, -(-max(depth, 1) // factor) * factor)
    if size >= total:
        return (total,)
    out = [size] * (total // size)
    rest = total - sum(out)
    if rest:
        if rest < depth:
            out[-1] += rest
        else:
            out.append(rest)
    return tuple(out)


def to_reflectance(dn: np.ndarray) -> np.ndarray:
    """uint16 digital numbers -> float32 reflectance (:data:`cloudfree.sentinel2.SCALE`, ``OFFSET``)."""
    return dn.astype(np.float32) * np.float32(s2bands.SCALE) + np.float32(s2bands.OFFSET)


def iso_day(day: float) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD`` (UTC)."""
    stamp = np.datetime64(int(round(float(day) * 86400)), "s")
    return str(stamp.astype("datetime64[D]"))


def correction_parameters(candidates: Sequence[str], *, sigmas: Sequence[float], seed: int,
                          masks: int) -> dict[str, Any]:
    """The correction's part of a mosaic's ``parameters`` (JSON-able)."""
    return {"candidates": list(candidates), "sigmas_px": [float(s) for s in sigmas],
            "sigma_selection": SELECTION, "held_out_masks": int(masks), "seed": int(seed)}


def _meta(ndim: int, dtype: Any) -> np.ndarray:
    """An empty array of the output type, so dask never probes a chunk function (with
    empty arrays) while the graph is built."""
    return np.empty((0,) * ndim, dtype)


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(s) for s in sigmas)
    if not out or not all(np.isfinite(s) and s > 0 for s in out):
        raise InvalidParameterError("sigmas_px", sigmas, "give one or more widths > 0 pixels")
    return out


# --------------------------------------------------------------------------- numpy core
#
# The validation sums of one chunk are a flat float64 vector, so that chunks add up with a
# plain dask sum: errors (masks, candidates, sigmas), then the held-out pixel count of each
# mask, then the count of pixels the residual is known at.


def _sums_length(masks: int, n_candidates: int, n_sigmas: int) -> int:
    return masks * n_candidates * n_sigmas + masks + 1


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
    frames, discs = correction.held_out_plan(cloud_fraction, frame,
                                             np.random.default_rng(seed), masks, shape)
    held_masks = [~usable[t] for t in frames] + [correction.disc_mask(rows, cols, d)
                                                  for d in discs]
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
                  sigmas: Sequence[float] = SIGMAS_PX) -> tuple[np.ndarray, int, float]:
    """The whole-array correction (what one chunk without neighbours does): ``(filled (C,
    H, W) float64, candidate index, sigma)``. Arguments as :func:`validation_sums`."""
    sigmas = _check_sigmas(sigmas)
    height, width = usable.shape[1:]
    sums = validation_sums(observed, usable, candidates, (~usable).mean(axis=(1, 2)),
                           np.arange(height), np.arange(width), None, frame=frame,
                           shape=(height, width), seed=seed, masks=masks, sigmas=sigmas)
    index, sigma = choose_from_sums(sums, n_candidates=len(candidates), masks=masks,
                                    sigmas=sigmas)
    filled = corrected_frame(observed, usable, candidates, frame=frame, index=index, sigma=sigma)
    return filled, index, sigma


def interpolation_candidate(values: np.ndarray, usable: np.ndarray, days: np.ndarray,
                            frame: int) -> np.ndarray:
    """(C, H, W) linear interpolation in time at ``days[frame]`` from the *other* frames of
    a (T, C, H, W) stack (NaN exactly where not ``usable``); NaN where none is usable."""
    others = np.delete(np.arange(len(days)), frame)
    if not others.size:  # a single date: nothing to predict it from
        return np.full(values.shape[1:], np.nan, np.float32)
    return interpolate_at(values[others], usable[others], np.asarray(days)[others],
                          float(days[frame])).astype(np.float32)


# --------------------------------------------------------------------------- chunk functions


def _interpolation_block(reflectance: np.ndarray, clear: np.ndarray, *, days: np.ndarray,
                         frame: int, nodata: int) -> np.ndarray:
    """DN (T, C, h, w) and clear (T, h, w) -> the (1, C, h, w) interpolation candidate."""
    usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    return interpolation_candidate(values, usable, days, frame)[None]


def _sums_block(observed_dn, usable, candidates, cloud_fraction, rows, cols, row_core, col_core,
                **kw) -> np.ndarray:
    """Stage 1 on one chunk with its halo -> (1, 1, n) sums over its core."""
    scored = row_core[:, None] & col_core[None, :]
    sums = validation_sums(to_reflectance(observed_dn), usable, candidates, cloud_fraction,
                           rows, cols, scored, **kw)
    return sums[None, None]


def _corrected_block(observed_dn, usable, candidates, sums, *, frame, day, fill, masks,
                     sigmas) -> np.ndarray:
    """Stage 2 on one chunk with its halo -> (C + 3, h, w): DN, clear count, source day,
    fill (the layout of :func:`cloudfree.methods._composite.stacked_to_dataset`)."""
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
    out = np.empty((n_bands + 3, *visible.shape), np.float32)
    out[:n_bands] = np.where(visible, observed_dn, np.where(gap, np.nan, dn))  # observed: exact DN
    out[n_bands] = count
    out[n_bands + 1] = np.where(gap, np.nan, np.floor(day + 1e-6))
    out[n_bands + 2] = np.select([visible, gap], [FILL_OBSERVED, FILL_NODATA], fill)
    return out


def _choice_block(sums, *, n_bands: int, **kw) -> np.ndarray:
    index, sigma = choose_from_sums(sums, **kw)
    rmse = heldout_rmse(sums, index=index, sigma=sigma, n_bands=n_bands, **kw)
    return np.array([index, sigma, rmse], np.float64)


def _core_flags(rows: np.ndarray, block_info: dict | None = None, *,
                bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """True on the rows (or columns) of a halo'd chunk that its core owns."""
    start, stop = bounds[block_info[None]["chunk-location"][0]]
    return (rows >= start) & (rows < stop)


def _global_index(chunks: tuple[int, ...], depth: int) -> tuple[Any, Any]:
    """The halo'd global pixel index along one axis, and which of it is each chunk's core."""
    import dask.array as da

    index = da.arange(sum(chunks), chunks=(chunks,))
    starts = np.cumsum((0, *chunks))
    halo = da.overlap.overlap(index, depth={0: depth}, boundary="none", allow_rechunk=False)
    core = halo.map_blocks(_core_flags, bounds=list(zip(starts[:-1], starts[1:], strict=True)),
                           meta=_meta(1, bool))
    return halo, core


# --------------------------------------------------------------------------- arrays


def correct_stack(reflectance: Any, clear: Any, candidates: Any, *, frame: int, day: float,
                  nodata: int = 0, fill: int = FILL_COMPOSITED, seed: int = 0,
                  masks: int = HELD_OUT_MASKS, sigmas: Sequence[float] = SIGMAS_PX
                  ) -> tuple[Any, Any]:
    """The corrected target frame of a cube, as the composites' (C + 3, H, W) float stack.

    Args:
        reflectance: (T, C, H, W) uint16 DN, ``nodata`` where there is no data.
        clear: (T, H, W) bool.
        candidates: (K, C, H, W) float reflectance, predictions of frame ``frame`` made
            without it (NaN where they have nothing).
        frame: the target frame; ``day``: its day since 1970 (the source date written).
        fill: the ``FILL_*`` code of corrected pixels.
        seed, masks, sigmas: the self-validation (:func:`validation_sums`).

    Returns:
        ``(stack, choice)``: the stack (DN, clear count, source day, fill) and a (3,)
        float64 array ``[candidate index, sigma px, held-out RMSE]`` (sigma and RMSE NaN:
        too few clear pixels to correct; :func:`heldout_rmse`). Dask arrays when any input is one (nothing computed), else numpy.
    """
    sigmas = _check_sigmas(sigmas)
    n_candidates = candidates.shape[0]
    n = _sums_length(masks, n_candidates, len(sigmas))
    height, width = reflectance.shape[-2:]
    plan = {"frame": frame, "shape": (height, width), "seed": seed, "masks": masks,
            "sigmas": sigmas}
    finish = {"frame": frame, "day": day, "fill": fill, "masks": masks, "sigmas": sigmas}
    arrays = (reflectance, clear, candidates)
    if not any(hasattr(a, "dask") for a in arrays):
        reflectance = np.asarray(reflectance)
        usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
        candidates = np.asarray(candidates, np.float32)
        everything = np.ones(height, bool), np.ones(width, bool)
        sums = _sums_block(reflectance[frame], usable, candidates, (~usable).mean(axis=(1, 2)),
                           np.arange(height), np.arange(width), *everything, **plan)[0, 0]
        choice = _choice_block(sums, n_candidates=n_candidates, n_bands=candidates.shape[1],
                               masks=masks, sigmas=sigmas)
        return _corrected_block(reflectance[frame], usable, candidates, sums, **finish), choice

    import dask.array as da

    depth = kernel_radius(max(sigmas))
    spatial = next(a for a in arrays if hasattr(a, "dask")).chunks[-2:]
    refl, clear, cand = (da.asarray(a) for a in arrays)
    spatial = tuple(aligned_chunks(c, depth=depth) for c in spatial)
    refl = refl.rechunk((-1, -1, *spatial))
    clear = clear.astype(bool).rechunk((-1, *spatial))
    cand = cand.astype(np.float32).rechunk((-1, -1, *spatial))
    usable = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl, "tbyx", clear,
                          "tyx", concatenate=True, meta=_meta(3, bool))
    cloud_fraction = (~usable).mean(axis=(1, 2))  # (T,), over the whole tile
    # a single chunk along an axis has no neighbour to borrow from
    depth_y, depth_x = (depth if len(c) > 1 else 0 for c in spatial)

    def halo(array: Any) -> Any:
        lead = array.ndim - 2
        return da.overlap.overlap(array, depth={**dict.fromkeys(range(lead), 0),
                                                lead: depth_y, lead + 1: depth_x},
                                  boundary="none", allow_rechunk=False)

    observed_h, usable_h, cand_h = halo(refl[frame]), halo(usable), halo(cand)
    rows, row_core = _global_index(spatial[0], depth_y)
    cols, col_core = _global_index(spatial[1], depth_x)
    per_chunk = da.blockwise(
        partial(_sums_block, **plan), "yxs", observed_h, "byx", usable_h, "tyx", cand_h, "kbyx",
        cloud_fraction, "t", rows, "y", cols, "x", row_core, "y", col_core, "x",
        new_axes={"s": n}, adjust_chunks={"y": 1, "x": 1}, concatenate=True,
        meta=_meta(3, np.float64))
    sums = per_chunk.sum(axis=(0, 1))  # the whole tile's table, still lazy
    stacked = da.blockwise(partial(_corrected_block, **finish), "zyx", observed_h, "byx",
                           usable_h, "tyx", cand_h, "kbyx", sums, "s",
                           new_axes={"z": refl.shape[1] + 3}, concatenate=True,
                           meta=_meta(3, np.float32))
    stacked = da.overlap.trim_internal(stacked, {0: 0, 1: depth_y, 2: depth_x}, boundary="none")
    choice = sums.map_blocks(partial(_choice_block, n_candidates=n_candidates,
                                     n_bands=cand.shape[1], masks=masks, sigmas=sigmas),
                             chunks=((3,),), meta=_meta(1, np.float64))
    return stacked, choice


def interpolation_candidates(reflectance: Any, clear: Any, *, days: np.ndarray, frame: int,
                             nodata: int = 0) -> Any:
    """(1, C, H, W) float32: the ``interpolate`` candidate of frame ``frame`` from the other
    dates of a (T, C, H, W) DN cube, chunk by chunk (pixelwise, no halo); lazy for dask."""
    block = partial(_interpolation_block, days=np.asarray(days, np.float64), frame=frame,
                    nodata=nodata)
    if not hasattr(reflectance, "dask") and not hasattr(clear, "dask"):
        return block(np.asarray(reflectance), np.asarray(clear, bool))
    import dask.array as da

    refl, clear = da.asarray(reflectance), da.asarray(clear).astype(bool)
    clear = clear.rechunk((-1, *refl.chunks[-2:]))
    return da.blockwise(block, "kbyx", refl, "tbyx", clear, "tyx", new_axes={"k": 1},
                        concatenate=True, meta=_meta(4, np.float32))


# --------------------------------------------------------------------------- datasets


def corrected_dataset(stacked: Any, choice: Any, reflectance: xr.DataArray, *, nodata: int,
                      method: str, parameters: dict[str, Any]) -> xr.Dataset:
    """The composites' dataset (:func:`cloudfree.methods._composite.stacked_to_dataset`), with the
    tile's choice as scalar coordinates ``correction_candidate`` and ``correction_sigma_px``
    (lazy with dask; :func:`record_choice` moves them into ``parameters`` once computed)."""
    out = stacked_to_dataset(stacked, reflectance, n_bands=reflectance.sizes["band"],
                             nodata=nodata)
    out = out.assign_coords(correction_candidate=((), choice[0]),
                            correction_sigma_px=((), choice[1]),
                            correction_heldout_rmse=((), choice[2]))
    json.dumps(parameters)  # written into processing:*; fail here, not there
    out.attrs.update(method=method, parameters=parameters, nodata=nodata)
    return out


def record_choice(result: xr.Dataset) -> xr.Dataset:
    """A computed corrected mosaic with its choice moved from coordinates into
    ``attrs["parameters"]`` for the STAC item: ``corrected`` (False when the target date
    had too few clear pixels to fit to), ``chosen_candidate`` by name,
    ``chosen_sigma_px`` and ``heldout_rmse`` (reflectance; the self-validation's error of
    that choice, an estimate of the filled pixels' error; None when not corrected). Other
    datasets pass through."""
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
    out = result.drop_vars(["correction_candidate", "correction_sigma_px",
                            "correction_heldout_rmse"])
    out.attrs = {**result.attrs, "parameters": parameters}
    return out


def interpolate_corrected_composite(
    reflectance: xr.DataArray,
    clear: xr.DataArray,
    *,
    target_date: str | np.datetime64 | None = None,
    nodata: int = 0,
    seed: int = 0,
    sigmas_px: Sequence[float] = SIGMAS_PX,
) -> xr.Dataset:
    """The ``interpolate_corrected`` mosaic of a (time, band, y, x) uint16 cube.

    The target frame (the date nearest ``target_date``, default the middle of the cube's
    time range; ties: the earlier) keeps its clear pixels' DN exactly; its gaps get linear
    interpolation in time from the other dates, corrected by the frame's own residual
    (see the module docstring). Outputs as :func:`cloudfree.methods._composite.composite`: ``fill``
    is ``composited`` where corrected, ``observed`` where the frame was clear, ``nodata``
    where no date was; ``source_date`` is the target frame's date. ``attrs["parameters"]``
    name the target and frame dates and the correction's settings. Dask in, dask out.
    """
    reflectance, clear, days, target_day = prepare_cube(reflectance, clear, target_date)
    frame = nearest_frame(days, target_day)
    sigmas = _check_sigmas(sigmas_px)
    refl_data, clear_data = reflectance.data, clear.data
    if reflectance.chunks is not None or clear.chunks is not None:
        import dask.array as da

        refl_data, clear_data = da.asarray(refl_data), da.asarray(clear_data).astype(bool)
        source = refl_data if reflectance.chunks is not None else clear_data
        depth = kernel_radius(max(sigmas))
        spatial = tuple(aligned_chunks(c, depth=depth) for c in source.chunks[-2:])
        refl_data = refl_data.rechunk((-1, -1, *spatial))
        clear_data = clear_data.rechunk((-1, *spatial))
    candidates = interpolation_candidates(refl_data, clear_data, days=days, frame=frame,
                                          nodata=nodata)
    stacked, choice = correct_stack(refl_data, clear_data, candidates, frame=frame,
                                    day=float(days[frame]), nodata=nodata, fill=FILL_COMPOSITED,
                                    seed=seed, sigmas=sigmas)
    parameters = {"target_date": iso_day(target_day), "frame_date": iso_day(days[frame]),
                  **correction_parameters(["interpolate"], sigmas=sigmas, seed=seed,
                                          masks=HELD_OUT_MASKS)}
    return corrected_dataset(stacked, choice, reflectance, nodata=nodata,
                             method="interpolate_corrected", parameters=parameters)


__all__ = [
    "DEPTH_PX",
    "HELD_OUT_MASKS",
    "aligned_chunks",
    "correct_frame",
    "correct_stack",
    "corrected_dataset",
    "interpolate_corrected_composite",
    "interpolation_candidate",
    "interpolation_candidates",
    "iso_day",
    "nearest_frame",
    "record_choice",
    "validation_sums",
]
