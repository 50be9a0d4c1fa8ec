"""The corrected methods' 90 % interval: split-conformal on the self-validation's held-out
errors, mergeable over chunks.

**Uncertainty** (split-conformal, Mondrian by distance). The self-validation's held-out
pixels are predicted without their own residual, as the gaps are; their absolute errors
under the chosen (candidate, sigma) are the calibration set. A gap pixel's half-width is
the conformal 90 % quantile (the ``ceil((n + 1) 0.9)``-th smallest error) of the held-out
errors of its band whose distance to the nearest known residual falls in the same bin
(:data:`DISTANCE_EDGES_PX`): the correction is good next to clear pixels and fades into the
bare candidate farther out. Observed pixels are exact: half-width 0. The held-out masks are
the tile's other dates' cloud masks, much like its real gaps; a candidate fitted to the
target's visible pixels (the generator's head) must train outside them (their union,
:func:`cloudfree.methods.corrected.held_out_masks`) for the errors to be honest.

The quantile's level is cross-validated across the held-out masks (:func:`interval_level`,
:data:`LEVELS`): the lowest level whose interval, calibrated on the other masks, holds 90 %
of each mask's own pixels, pooled, since a tile's gaps differ from each mask more than a
mask's pixels do from each other.

The stages of :mod:`cloudfree.methods.corrected` call these per chunk
(:func:`calibration_histogram`, whose counts add up over chunks), once per tile
(:func:`interval_table`) and per chunk again (:func:`half_width_frame`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cloudfree.methods import correction

#: The stated interval: ``value ± half_width`` should hold the truth this often.
COVERAGE = 0.9
#: Bin edges of the calibration histograms of absolute error (reflectance): 0, then 50
#: log-spaced bins per decade from 1e-4 to 1; errors of 1 and more share a last bin.
#: Fixed edges make the per-chunk histograms add up exactly to the tile's. The stated
#: quantile is its bin's upper edge, up to 4.7 % above the exact one (25 per decade: 9.6 %,
#: which widened every interval by about half that on average).
ERROR_BINS_PER_DECADE = 50
ERROR_EDGES = np.concatenate([[0.0], np.logspace(-4.0, 0.0, 4 * ERROR_BINS_PER_DECADE + 1)])
INTERVAL_CALIBRATION = ("split-conformal on the held-out errors, per band and distance bin, "
                        "the quantile at its bin's upper edge")
#: The widest half-width stated (reflectance): errors beyond it (and calibrations with too
#: few pixels for a 90 % quantile) give this, the whole range of reflectance.
MAX_HALF_WIDTH = 1.0
#: Mondrian bins of the distance (pixels) of a gap pixel to the nearest pixel with a known
#: residual: 0-4, 4-16, 16-64, 64 and more. The residual correction is exact next to clear
#: pixels and fades into the bare candidate farther out, so the error grows with it.
DISTANCE_EDGES_PX = (4.0, 16.0, 64.0)
#: A (band, distance) bin needs this many held-out pixels for its own quantile; with
#: fewer it pools its neighbouring distance bins (then all bands).
MIN_CALIBRATION = 100
#: The quantile levels a tile's interval may be stated at (:func:`interval_level`): 0.900 to
#: 0.990 in steps of 0.005. Never below the nominal :data:`COVERAGE`.
LEVELS = tuple(round(0.9 + 0.005 * k, 3) for k in range(19))
LEVEL_SELECTION = ("per tile, cross-validated across the held-out masks: the lowest level of "
                   "0.900, 0.905 ... 0.990 whose interval, calibrated on the other masks, "
                   "holds 90 % of each mask's own pixels, pooled; 0.9 where what is "
                   "scored are heads cross-fitted on folds of the masks, weaker than the one "
                   "that fills")
UNCERTAINTY_DESCRIPTION = ("half-width of the 90 % interval, calibrated by self-validation on "
                           "the tile's own clear pixels")


def _histogram_length(n_bands: int, masks: int) -> int:
    return 2 * masks * n_bands * (len(DISTANCE_EDGES_PX) + 1) * (len(ERROR_EDGES) - 1)


def distance_bins(known: np.ndarray, *, cap: float) -> np.ndarray:
    """(h, w) int: the :data:`DISTANCE_EDGES_PX` bin of each pixel's Euclidean distance to
    the nearest ``known`` pixel, the distance first capped at ``cap`` pixels (a chunk's
    halo: a chunk sees exactly every distance up to it, so chunked bins equal whole-image
    ones). No known pixel at all: the last bin below the cap."""
    if known.any():
        distance = ndimage.distance_transform_edt(~known)
    else:
        distance = np.full(known.shape, np.inf)
    bins: np.ndarray = np.digitize(np.minimum(distance, cap), DISTANCE_EDGES_PX)
    return bins


def _error_bins(errors: np.ndarray) -> np.ndarray:
    """Indices into the :data:`ERROR_EDGES` bins (the last one open above)."""
    bins: np.ndarray = np.clip(np.searchsorted(ERROR_EDGES, errors, side="right") - 1, 0,
                               len(ERROR_EDGES) - 2)
    return bins


def calibration_histogram(observed: np.ndarray, usable: np.ndarray, candidates: np.ndarray,
                          cloud_fraction: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                          scored: np.ndarray | None, *, frame: int, shape: tuple[int, int],
                          seed: int, masks: int, index: int, sigma: float, cap: float
                          ) -> np.ndarray:
    """The split-conformal calibration set of one chunk (or the whole image) as a flat
    count vector: the held-out absolute errors of the *chosen* pair (candidate ``index``
    spread at ``sigma``; NaN: the bare candidate) binned per (layer, mask, band, distance
    bin, error bin). Layer 0 counts every held pixel of each mask; layer 1 only those no
    other mask holds, the pixels on which :func:`interval_level` tests an interval
    calibrated on the other masks. The held-out masks are the self-validation's
    (:func:`cloudfree.methods.corrected.held_out_masks`); a held pixel's distance is to the
    nearest pixel whose residual is still known (the target's visible pixels minus that
    mask), as a gap pixel's is to the visible ones. Only ``scored`` pixels count, so the
    chunks' vectors add up to the whole image's exactly. Arguments as
    :func:`cloudfree.methods.corrected.validation_sums`; ``cap``: the chunks' halo
    (:func:`distance_bins`)."""
    from cloudfree.methods.corrected import held_out_masks  # here: corrected imports this module

    n_bands = candidates.shape[1]
    n_distance, n_error = len(DISTANCE_EDGES_PX) + 1, len(ERROR_EDGES) - 1
    counts = np.zeros((2, masks, n_bands, n_distance, n_error))
    predicted = np.asarray(candidates[index], np.float64)
    support = usable[frame] & np.isfinite(candidates).all(axis=(0, 1))
    residual = np.where(support, observed - predicted, 0.0)
    scored = np.ones(support.shape, bool) if scored is None else scored
    held_masks = [mask & support for mask in held_out_masks(
        usable, cloud_fraction, rows, cols, frame=frame, shape=shape, seed=seed, masks=masks)]
    times_held = np.sum(held_masks, axis=0)
    for m, held in enumerate(held_masks):
        counted = held & scored
        if not counted.any():
            continue
        keep = support & ~held
        if np.isfinite(sigma):
            error = np.abs(correction.spread(residual, keep, sigma, where=counted)
                           - residual[:, counted])
        else:
            error = np.abs(residual[:, counted])
        distance = distance_bins(keep, cap=cap)[counted]
        flat = distance[None] * n_error + _error_bins(error)
        alone = times_held[counted] == 1
        for band in range(n_bands):
            for layer, pixels in enumerate((slice(None), alone)):
                counts[layer, m, band] += np.bincount(
                    flat[band][pixels], minlength=n_distance * n_error
                ).reshape(n_distance, n_error)
    return counts.ravel()


def conformal_quantile(counts: np.ndarray, coverage: float = COVERAGE) -> float:
    """The split-conformal ``coverage`` quantile of a histogram over :data:`ERROR_EDGES`:
    the upper edge of the bin holding the ``ceil((n + 1) coverage)``-th smallest error
    (:data:`MAX_HALF_WIDTH` when that rank exceeds ``n``: too few to say, or in the last
    bin). Upper edges: never below the exact quantile, at most one bin above it."""
    counts = np.asarray(counts, np.float64)
    n = counts.sum()
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return MAX_HALF_WIDTH
    position = int(np.searchsorted(np.cumsum(counts), rank - 0.5))
    return float(min(ERROR_EDGES[position + 1], MAX_HALF_WIDTH))


def _quantile_table(counts: np.ndarray, coverage: float) -> np.ndarray:
    """(bands, distance bins): the ``coverage`` half-widths of per (band, distance, error)
    ``counts``. A (band, distance) bin with fewer than :data:`MIN_CALIBRATION` held-out
    pixels widens to its neighbouring distance bins, nearer ones first (the farther one on
    a tie: wider), until it has them; a band without them in all pools every band."""
    n_bands, n_distance = counts.shape[:2]
    pooled = counts.sum(axis=(0, 1))
    table = np.empty((n_bands, n_distance))
    for band in range(n_bands):
        if counts[band].sum() < MIN_CALIBRATION:
            table[band] = conformal_quantile(pooled, coverage)
            continue
        for d in range(n_distance):
            lo, hi = d, d + 1
            while counts[band, lo:hi].sum() < MIN_CALIBRATION:
                down = d - lo + 1 if lo > 0 else n_distance
                up = hi - d if hi < n_distance else n_distance
                if up <= down:
                    hi += 1
                else:
                    lo -= 1
            table[band, d] = conformal_quantile(counts[band, lo:hi].sum(axis=0), coverage)
    return table


def _covered(counts: np.ndarray, table: np.ndarray) -> float:
    """How many of per (band, distance, error) ``counts`` lie within ``table``'s
    half-widths: an error bin is inside when its upper edge is (half-widths are edges)."""
    inside = ERROR_EDGES[1:][None, None, :] <= table[:, :, None]
    return float(counts[inside].sum())


def _layers(histogram: np.ndarray, *, n_bands: int, masks: int) -> np.ndarray:
    """A :func:`calibration_histogram` as (layer, mask, band, distance, error) counts."""
    return np.asarray(histogram, np.float64).reshape(2, masks, n_bands,
                                                     len(DISTANCE_EDGES_PX) + 1, -1)


def interval_level(histogram: np.ndarray, *, n_bands: int, masks: int) -> float:
    """The quantile level at which a tile's held-out errors are stated (:data:`LEVELS`),
    cross-validated across the held-out masks (:data:`LEVEL_SELECTION`): the lowest level
    whose interval, calibrated on the other masks, holds :data:`COVERAGE` of each mask's
    own pixels (those no other mask holds), pooled. The masks are a few spatially
    correlated draws, and a tile's gaps differ from each of them more than its pixels do
    from each other: an interval calibrated on pixels exchangeable with the test pixels
    (plain split-conformal) under-covered a new mask (``cloudfree evaluate``, three real
    cases, seeds 0-2: 0.841 to 0.911). :data:`COVERAGE` when no mask has pixels of its own;
    the highest level when none suffices."""
    counts = _layers(histogram, n_bands=n_bands, masks=masks)
    calibration, test = counts[0].sum(axis=0), counts[1]
    total = test.sum()
    if not total:
        return COVERAGE
    for level in LEVELS:
        covered = sum(_covered(test[m], _quantile_table(calibration - counts[0, m], level))
                      for m in range(masks) if test[m].any())
        if covered >= COVERAGE * total:
            return level
    return LEVELS[-1]


def interval_table(histogram: np.ndarray, *, n_bands: int, masks: int,
                   select_level: bool = True) -> tuple[np.ndarray, float]:
    """``(table, level)``: the (bands, distance bins) float64 half-widths of a gap pixel's
    90 % interval from a tile's :func:`calibration_histogram` (summed over chunks), every
    mask's held pixels together, at the quantile ``level`` of :func:`interval_level`
    (``select_level``), else at :data:`COVERAGE` (where what is scored is weaker than what
    fills, heads cross-fitted on folds of the masks, its errors already err wide)."""
    level = interval_level(histogram, n_bands=n_bands, masks=masks) if select_level else COVERAGE
    return _quantile_table(_layers(histogram, n_bands=n_bands, masks=masks)[0].sum(axis=0),
                           level), level


def half_width_frame(usable: np.ndarray, candidates: np.ndarray, table: np.ndarray, *,
                     frame: int, cap: float) -> np.ndarray:
    """(C, h, w) float64 half-widths: 0 where the target is visible (an observed value is
    taken as exact), the ``table`` entry of the pixel's band and distance to the nearest
    known residual in the gaps, NaN where no candidate predicts the pixel."""
    visible = usable[frame]
    support = visible & np.isfinite(candidates).all(axis=(0, 1))
    distance = distance_bins(support, cap=cap)
    out = np.asarray(table, np.float64)[:, distance]
    out[:, visible] = 0.0
    out[:, ~visible & ~np.isfinite(candidates).all(axis=(0, 1))] = np.nan
    return out


__all__ = ("COVERAGE", "DISTANCE_EDGES_PX", "ERROR_BINS_PER_DECADE", "ERROR_EDGES",
           "INTERVAL_CALIBRATION", "LEVELS", "LEVEL_SELECTION", "MAX_HALF_WIDTH",
           "MIN_CALIBRATION", "UNCERTAINTY_DESCRIPTION", "calibration_histogram",
           "conformal_quantile", "distance_bins", "half_width_frame", "interval_level",
           "interval_table")
