"""``interpolate_corrected``: the target date, its gaps interpolated in time from the other
dates and fitted to its own clear pixels by the residual correction
(:mod:`cloudfree.methods.corrected`).

The target frame keeps its clear pixels' DN exactly; ``fill`` is ``composited`` where
corrected, ``observed`` where the frame was clear, ``nodata`` where no date was;
``source_date`` is the target frame's date. The one candidate is :func:`interpolation_candidate`,
pixelwise (no halo); the correction's halo and per-tile choice come from the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from cloudfree.methods._driver import (
    aligned_chunks,
    iso_day,
    meta,
    nearest_frame,
    prepare_cube,
    to_reflectance,
    usable_block,
)
from cloudfree.methods._provenance import FILL_COMPOSITED, Reconstruction
from cloudfree.methods.corrected import (
    HELD_OUT_MASKS,
    _check_sigmas,
    correct_frame,
    correct_stack,
    corrected_dataset,
    correction_parameters,
    interval_frame,
)
from cloudfree.methods.corrected_interval import MAX_HALF_WIDTH
from cloudfree.methods.correction import SIGMAS_PX, fill_with_series_median, kernel_radius
from cloudfree.methods.interpolate import interpolate_at


def interpolation_candidate(values: np.ndarray, usable: np.ndarray, days: np.ndarray,
                            frame: int) -> np.ndarray:
    """(C, H, W) linear interpolation in time at ``days[frame]`` from the *other* frames of
    a (T, C, H, W) stack (NaN exactly where not ``usable``); NaN where none is usable."""
    others = np.delete(np.arange(len(days)), frame)
    if not others.size:  # a single date: nothing to predict it from
        return np.full(values.shape[1:], np.nan, np.float32)
    return interpolate_at(values[others], usable[others], np.asarray(days)[others],
                          float(days[frame])).astype(np.float32)


def _interpolation_block(reflectance: np.ndarray, clear: np.ndarray, *, days: np.ndarray,
                         frame: int, nodata: int) -> np.ndarray:
    """DN (T, C, h, w) and clear (T, h, w) -> the (1, C, h, w) interpolation candidate."""
    usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    return interpolation_candidate(values, usable, days, frame)[None]


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
                        concatenate=True, meta=meta(4, np.float32))


def mosaic(
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


def evaluate(series: NDArray[Any], days: NDArray[Any], target: int, *,
             band_names: Sequence[str] | None = None) -> Reconstruction:
    """The evaluation's reconstruction of frame ``target`` of a (T, C, H, W) reflectance
    series (NaN = not usable): the same core as the mosaic's, on the whole frame. Where no
    other date is clear, the interpolation falls back to the series' per-band median
    (:func:`~cloudfree.methods.correction.fill_with_series_median`, as every baseline
    does) before the correction. With the 90 % interval of
    :func:`~cloudfree.methods.corrected.interval_frame` (0 on the visible pixels)."""
    series = np.asarray(series, np.float32)
    days = np.asarray(days, np.float64)
    usable = np.isfinite(series).all(axis=1)
    series = np.where(usable[:, None], series, np.float32(np.nan))
    candidate = fill_with_series_median(interpolation_candidate(series, usable, days, target),
                                        series)
    observed = np.asarray(series[target], np.float64)
    filled, index, sigma = correct_frame(observed, usable, candidate[None], frame=target)
    half_width = interval_frame(observed, usable, candidate[None], frame=target, index=index,
                                sigma=sigma)
    return Reconstruction(np.nan_to_num(filled).astype(np.float32),
                          np.nan_to_num(half_width, nan=MAX_HALF_WIDTH).astype(np.float32))

def hashed_parameters() -> dict[str, Any]:
    """The correction decides pixels too."""
    return {"correction": correction_parameters([], sigmas=SIGMAS_PX, seed=0,
                                                masks=HELD_OUT_MASKS)}


__all__ = ("evaluate", "hashed_parameters", "interpolation_candidate", "interpolation_candidates", "mosaic")
