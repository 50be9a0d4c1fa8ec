"""``generator``: the target date, its gaps filled by a network trained on the date's own
clear pixels, then fitted to them by the residual correction.

A small head (:mod:`cloudfree.models.head`) is trained once per tile on the frame's clear
pixels, from the nearest dates and the interpolation prior, and predicts the gaps; the
residual correction (:mod:`cloudfree.methods.corrected`) fits the result to the frame's
clear pixels, with one choice of width per tile. The head and the correction are per-tile
reductions of the driver; the head's trainings and predictions (torch) carry the GPU
annotation. With ``with_network=True`` the pretrained generator network
(:mod:`cloudfree.models.inference`) also predicts the target frame with that frame hidden
entirely, as one more input of the head: it runs per chunk with an overlap of its halo,
chunk starts on the model's ``downsample_factor`` grid, so it equals whole-array
inference. Measured, it adds nothing to the head (:data:`NETWORK_INPUT`), so it is off by
default; the network alone is the ``network`` method. ``generator_no_tta`` is the
pretrained network's raw prediction, for the ablation (evaluation only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from cloudfree.errors import InvalidParameterError
from cloudfree.methods._driver import (
    aligned_chunks,
    dask_cube,
    halo_depths,
    iso_day,
    meta,
    nearest_frame,
    prepare_cube,
    resolve_target_day,
    to_reflectance,
    trim_halo,
    usable_block,
    with_halo,
)
from cloudfree.methods._provenance import FILL_GENERATED, FILL_NODATA, FILL_OBSERVED, Composite
from cloudfree.methods.corrected import (
    HELD_OUT_MASKS,
    correct_frame,
    correct_stack,
    corrected_dataset,
    correction_parameters,
)
from cloudfree.methods.correction import SIGMAS_PX, fill_with_series_median, kernel_radius
from cloudfree.methods.interpolate_corrected import (
    interpolation_candidate,
)
from cloudfree.models.inference import (
    DEFAULT_BATCH,
    DEFAULT_TILE_PX,
    MAX_FRAMES,
    MIN_USABLE,
    Precision,
    _geometry,
    cached_generator,
    default_device,
    fill_frame,
    network_prediction,
)
from cloudfree.models.inference import select_frames as select_network_frames

#: Compute a graph with GPU annotations under ``dask.config.set(COMPUTE_CONFIG)``: dask's
#: low-level fusion (on by default for arrays) turns the graph into a plain dict and drops
#: the layers' annotations, so the scheduler would never see ``resources={"GPU": 1}``
#: (measured with dask/distributed 2026.8).
COMPUTE_CONFIG: dict[str, Any] = {"optimization.fuse.active": False}

if TYPE_CHECKING:
    from cloudfree.models.generator import Generator
    from cloudfree.models.weights import ModelCard


def generator_composite_array(
    values: np.ndarray,
    days: np.ndarray,
    band_names: Sequence[str],
    *,
    target_day: float | None = None,
    model: Any = None,
    card: Any = None,
    seed: int = 0,
    sigmas_px: Sequence[float] = SIGMAS_PX,
    with_network: bool | None = None,
    **kw: Any,
) -> Composite:
    """The generator's mosaic at ``target_day``, with provenance (the whole-array run).

    The mosaic is the frame nearest ``target_day`` (ties: the earlier); no frame is
    invented at a day with no acquisition, so every pixel names a real date. Its usable
    pixels (all bands finite) pass through; its gaps get the best of
    :func:`generator_candidates`, corrected by the frame's own residual
    (:func:`cloudfree.methods._corrected.correct_frame`), as the evaluation's generator method.
    ``fill`` is ``observed`` where the frame was usable, ``generated`` where filled, and
    ``nodata`` (reflectance NaN) where no frame observed the pixel: with no observation in
    time the network would only inpaint from space, which this provenance does not call a
    reconstruction. ``source_day`` is the frame's day (NaN where nodata); ``clear_count``
    counts usable observations.

    ``**kw`` goes to :func:`fill_frame` (``tile_px``, ``halo_px``, ``batch_size``,
    ``device``, ``precision``, ``model_name``).
    """
    with_network = NETWORK_INPUT if with_network is None else with_network
    values = np.asarray(values, dtype=np.float32)
    days = np.asarray(days, dtype=np.float64)
    if values.ndim != 4 or days.shape != values.shape[:1] or not np.isfinite(days).all():
        raise InvalidParameterError("values/days", (values.shape, days.shape),
                                    "give (T, C, H, W) values and T finite days")
    usable = np.isfinite(values).all(axis=1)
    values = np.where(usable[:, None], values, np.nan).astype(np.float32)
    frame = nearest_frame(days, resolve_target_day(days, target_day))
    count = usable.sum(axis=0)
    visible = usable[frame]
    if visible.all():
        filled = values[frame]
    else:
        network = network_prediction(values, days, band_names, frame=frame, model=model,
                                     card=card, **kw) if with_network else None
        candidates, scoring, _ = head_and_prior_frame(
            values, days, frame, extra=network, seed=seed,
            device=kw.get("device") or default_device())
        filled, _, _ = correct_frame(values[frame], usable, candidates, frame=frame, seed=seed,
                                     sigmas=sigmas_px, scoring=scoring)
    gap = ~visible & ((count == 0) | ~np.isfinite(filled).all(axis=0))
    fill = np.select([visible, gap], [FILL_OBSERVED, FILL_NODATA], FILL_GENERATED)
    return Composite(
        reflectance=np.where(gap, np.nan, filled).astype(np.float32),
        clear_count=np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16),
        source_day=np.where(gap, np.nan, days[frame]).astype(np.float32),
        fill=fill.astype(np.uint8),
    )


def head_pair_frame(values: np.ndarray, days: np.ndarray, frame: int, *,
                    extra: np.ndarray | None = None, seed: int = 0, device: str = "cpu",
                    max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """The whole-array :func:`cloudfree.methods._head_stage.head_pair`: ``(filling,
    scoring, fills)``, the (C, H, W) predictions of ``values[frame]`` by the head that
    fills and what the correction scores on its held-out masks (``seed``,
    :data:`HELD_OUT_MASKS`), and whether one head trained outside their union does both
    (:func:`cloudfree.methods.head_folds.twin_fills`; then both are it). Else the filling
    head trains on every usable pixel, and on each fold of the masks
    (:func:`cloudfree.methods.head_folds.held_out_folds`) the scored prediction is that
    of a head trained outside it. ``extra``: the network's prediction as one more input
    (None: not one)."""
    from cloudfree.methods.head_folds import fold_composite, held_out_folds, twin_fills
    from cloudfree.models.head import MAX_SAMPLES, adapted_frame, training_counts

    max_samples = MAX_SAMPLES if max_samples is None else max_samples
    usable = np.isfinite(values).all(axis=1)
    height, width = usable.shape[1:]
    folds = held_out_folds(usable, (~usable).mean(axis=(1, 2)), np.arange(height),
                           np.arange(width), frame=frame, shape=(height, width), seed=seed,
                           masks=HELD_OUT_MASKS)
    union = np.any(folds, axis=0)
    kw: dict[str, Any] = dict(extra=extra, seed=seed, device=device, max_samples=max_samples)
    others = np.delete(usable, frame, axis=0).any(axis=0)  # where the prior is finite
    if twin_fills(training_counts(usable[frame] & others, union), max_samples):
        twin = adapted_frame(values, days, frame, exclude=union, **kw)
        return twin, twin, True
    filling = adapted_frame(values, days, frame, **kw)
    scoring = fold_composite(filling, folds, lambda f: adapted_frame(
        values, days, frame, exclude=folds[f], **kw))
    return filling, scoring, False


def head_and_prior_frame(values: np.ndarray, days: np.ndarray, frame: int, *,
                         extra: np.ndarray | None = None, seed: int = 0, device: str = "cpu",
                         max_samples: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The whole-array :func:`cloudfree.methods._head_stage.head_and_prior`: ``(candidates,
    scoring, fills)``: each (2, C, H, W), the filling head's prediction and the prior
    (:data:`PRIOR_CANDIDATE`), and what the self-validation scores for them (the scored
    prediction of :func:`head_pair_frame`, and the prior itself), NaN filled with the
    series' median (:func:`fill_with_series_median`); whether the scored head fills.
    Arguments as :func:`head_pair_frame`."""
    usable = np.isfinite(values).all(axis=1)
    filling, scoring, fills = head_pair_frame(values, days, frame, extra=extra, seed=seed,
                                              device=device, max_samples=max_samples)
    prior = interpolation_candidate(values, usable, days, frame)
    filling, scoring, prior = (fill_with_series_median(a, values)
                               for a in (filling, scoring, prior))
    return np.stack([filling, prior]), np.stack([scoring, prior]), fills


# --------------------------------------------------------------------------- xarray/dask


def _network_block(reflectance: np.ndarray, clear: np.ndarray, usable_fraction: np.ndarray,
                   *, days: np.ndarray, band_names: list[str], frame: int, nodata: int,
                   fill_kw: dict[str, Any], max_frames: int = MAX_FRAMES) -> np.ndarray:
    """One block (with its halo): DN (T, C, h, w), clear (T, h, w) and the whole tile's
    usable fraction per date (T,) -> the network's (C, h, w) reflectance of frame
    ``frame``, made with that frame hidden entirely.

    The network sees the frame and its ``max_frames - 1`` nearest usable dates
    (:func:`cloudfree.models.inference.select_frames`, from the tile's fractions, so every
    chunk sees the same dates), and runs its target-only forward (:func:`fill_frame`);
    only those dates are converted to reflectance."""
    frames = select_network_frames(usable_fraction, days, frame, max_frames)
    local = int(np.flatnonzero(frames == frame)[0])
    reflectance = reflectance[frames]
    usable = usable_block(reflectance, np.asarray(clear, bool)[frames], nodata=nodata)
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    values[local] = np.nan
    prediction: np.ndarray = fill_frame(values, days[frames], band_names, frame=local,
                                        **fill_kw)
    return prediction


def _resolve_resources(resources: Mapping[str, int] | None | Literal["auto"]
                       ) -> dict[str, int] | None:
    if resources != "auto":
        return dict(resources) if resources else None
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    from cloudfree.cluster import gpu_resources

    return gpu_resources(client)


#: Who the self-validation scores (``processing:expression`` and the item ids say so).
HEAD_SCORING = ("out-of-sample on the held-out masks: where the tile has max_samples or more "
                "clear pixels outside them, one head trained outside them fills and is scored; "
                "else a head trained on every clear pixel fills, and heads cross-fitted on "
                "scoring_folds folds of the masks, each trained outside its fold, are scored "
                "on it; the scored prediction chooses the width and the candidate, and "
                "calibrates the interval")

#: Whether the network's prediction is one of the head's inputs. Measured with ``cloudfree
#: evaluate`` on the three real cases (seed 0), the head without it scored 40.03, 34.30
#: and 37.40 dB against 39.91, 34.34 and 37.39 with it: nothing measurable, for about a
#: third of the mosaic's time (``bench/generator_cost.py``). So by default the head learns
#: from the nearest dates and the prior alone; ``with_network=True`` adds it (the network's
#: tasks then carry the GPU annotation, as the head's always do). The network by itself is
#: the ``network`` method.
NETWORK_INPUT = False
HEAD_INPUTS = {False: "prior and nearest dates", True: "prior, nearest dates and network"}
#: The correction's second candidate: the head's own prior, ``interpolate`` (with the
#: correction, ``interpolate_corrected``). The self-validation keeps the head unless the
#: prior predicts the held-out pixels with :data:`~cloudfree.methods.correction.CHOICE_MARGIN`
#: less squared error, both judged out-of-sample (the head by the twin that fills, or on
#: small tiles by heads cross-fitted on folds of the masks:
#: :func:`cloudfree.methods._head_stage.head_pair`); so where the head cannot learn (few
#: bands, 8-bit data, a date unlike its neighbours) the generator does not fall below its
#: prior, decided on visible pixels only.
PRIOR_CANDIDATE = "interpolate: linear in time from the other dates"



#: The widest spatial chunk the generator's stages run on. The head's features and its
#: prediction, and the correction, run on one thread per chunk: a 1024 px tile in one chunk
#: would leave the other dask threads idle, while in 512 px chunks they share the work.
CHUNK_PX = 512


#: Fewer dates than this in a tile's window (one date alone) and there is nothing in
#: time to learn from: the tile gets ``interpolate_corrected`` instead (which then keeps
#: the date as it is), and its item says so.
MIN_DATES = 2


def _fallback(reflectance: xr.DataArray, clear: xr.DataArray, *, n_dates: int,
              **kw: Any) -> xr.Dataset:
    """``interpolate_corrected``'s mosaic of a series too short for the generator, with
    ``parameters["fallback"]`` saying why (the pixels are ``composited``, not generated)."""
    from cloudfree.methods.interpolate_corrected import mosaic as corrected_mosaic

    result = corrected_mosaic(reflectance, clear, **kw)
    result.attrs["method"] = "generator"
    result.attrs["parameters"] = {
        **result.attrs.get("parameters", {}),
        "fallback": f"interpolate_corrected: {n_dates} date(s) in the window, the generator "
                    f"needs {MIN_DATES} or more"}
    return result


def mosaic(
    reflectance: xr.DataArray,
    clear: xr.DataArray,
    *,
    target_date: str | np.datetime64 | None = None,
    nodata: int = 0,
    model_name: str = "default",
    model: Any = None,
    card: Any = None,
    tile_px: int = DEFAULT_TILE_PX,
    halo_px: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    device: str | None = None,
    precision: Precision = "auto",
    resources: Mapping[str, int] | None | Literal["auto"] = "auto",
    seed: int = 0,
    sigmas_px: Sequence[float] = SIGMAS_PX,
    with_network: bool = NETWORK_INPUT,
) -> xr.Dataset:
    """The generator's mosaic of a (time, band, y, x) uint16 cube, lazily when dask-backed.

    What the evaluation measures as the generator's method: the target frame (the date
    nearest ``target_date``; ties: the earlier) keeps its clear pixels; a small head is
    trained on the frame's clear pixels from the other dates (``with_network``: and the
    network's prediction of the frame, made with the frame hidden entirely), once per tile
    (:func:`cloudfree.methods._head_stage.head_pair`), and predicts the gaps; its prediction
    is fitted to the frame's own clear pixels by the residual correction, with the width
    chosen once per tile (:mod:`cloudfree.methods.corrected`). The width, the choice
    between the head and its prior, ``heldout_rmse`` and the ``uncertainty`` interval come
    from heads trained outside the self-validation's held-out masks (the twin that fills,
    or heads cross-fitted on folds of the masks: :func:`head_pair`): their errors there are
    out-of-sample, and no smaller than the filling head's would be.

    Same outputs as :func:`cloudfree.methods._composite.composite`: ``reflectance`` (band, y, x)
    uint16 (``nodata`` where no date was clear), ``clear_count`` uint16, ``source_date``
    uint16 days since 1970 (0 = none) and ``fill`` uint8 (``generated`` where filled);
    ``attrs`` ``method="generator"``, ``parameters`` (model name and version, target and
    frame dates, tiling, the correction's settings) and ``nodata``; the tile's choice in
    the scalar coordinates of :func:`cloudfree.methods._corrected.corrected_dataset`. DN are
    converted with :data:`cloudfree.sentinel2.SCALE`/``OFFSET`` and back; observed pixels keep
    their DN.

    Dask in, dask out: the network runs per spatial chunk (time and band whole) with an
    overlap of its halo, chunk starts on the model's ``downsample_factor`` grid, so it
    equals whole-array inference; the correction runs on the same chunks with its own
    overlap. Without ``model``, workers load ``model_name`` once per process
    (:func:`cached_generator`). ``resources``: ``"auto"`` annotates the network's tasks
    with :func:`cloudfree.cluster.gpu_resources` of the current distributed client
    (``{"GPU": 1}`` when the cluster has GPU workers), a mapping annotates with it,
    ``None`` not at all. Compute under ``dask.config.set(COMPUTE_CONFIG)`` so that the
    annotations reach the scheduler (see :data:`COMPUTE_CONFIG`).
    """
    from cloudfree.methods._head_stage import head_and_prior
    from cloudfree.methods.head_folds import SCORING_FOLDS
    from cloudfree.models.head import head_parameters

    reflectance, clear, days, target_day = prepare_cube(reflectance, clear, target_date)
    if len(days) < MIN_DATES:
        return _fallback(reflectance, clear, target_date=target_date, nodata=nodata, seed=seed,
                         sigmas_px=sigmas_px, n_dates=len(days))
    frame = nearest_frame(days, target_day)
    # the geometry (and version) from the model; loaded here once, cached for this process
    meta_model, meta_card = (model, card) if model is not None else \
        cached_generator(model_name, device or default_device())
    factor, tile, halo = _geometry(meta_model, tile_px, halo_px)
    band_names = [str(b) for b in reflectance["band"].values.tolist()]
    fill_kw: dict[str, Any] = {"tile_px": tile, "halo_px": halo, "batch_size": batch_size,
                               "device": device, "precision": precision}
    if model is not None:
        fill_kw.update(model=model, card=card)
    else:
        fill_kw.update(model_name=model_name)
    network_block = partial(_network_block, days=days, band_names=band_names, frame=frame,
                            nodata=nodata, fill_kw=fill_kw)
    lazy = reflectance.chunks is not None or clear.chunks is not None
    annotations = _resolve_resources(resources) if lazy else None
    network = None
    if lazy:
        import dask.array as da
        from dask.base import annotate, tokenize

        # one chunking for the network, the head and the correction: on the df grid, and
        # wide enough for either overlap
        depth = max(halo, kernel_radius(max(sigmas_px)))
        refl_data, clear_data, spatial = dask_cube(
            reflectance, clear, align=partial(aligned_chunks, factor=factor, depth=depth,
                                              at_most=CHUNK_PX))
        depth_y, depth_x = halo_depths(spatial, halo)
        if with_network:
            # the dates the network sees are decided from the whole tile's usable fractions
            fraction = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl_data,
                                    "tbyx", clear_data, "tyx", concatenate=True,
                                    meta=meta(3, bool)).mean(axis=(1, 2))
            with annotate(resources=annotations) if annotations else contextlib.nullcontext():
                refl_halo = with_halo(refl_data, depth_y, depth_x)
                clear_halo = with_halo(clear_data, depth_y, depth_x)
                # The name must depend on the inputs: tiles computed at the same time on one
                # scheduler would otherwise share keys, and get each other's results.
                token = tokenize(refl_halo.name, clear_halo.name, days, frame, nodata,
                                 fill_kw.get("model_name"), tile, halo, MAX_FRAMES)
                network = da.blockwise(network_block, "byx", refl_halo, "tbyx", clear_halo,
                                       "tyx", fraction, "t", concatenate=True,
                                       meta=meta(3, np.float32), name=f"generator-block-{token}")
                network = trim_halo(network, depth_y, depth_x)
    else:
        refl_data, clear_data = np.asarray(reflectance.data), np.asarray(clear.data, bool)
        if with_network:
            fraction = usable_block(refl_data, clear_data, nodata=nodata).mean(axis=(1, 2))
            network = network_block(refl_data, clear_data, fraction)
    # the self-validation scores heads trained outside the held-out masks (width, choice,
    # interval, held-out RMSE): a twin that fills too on a tile with clear pixels to spare,
    # else heads cross-fitted on folds of the masks beside one trained on every clear pixel
    candidates, scoring, fills = head_and_prior(refl_data, clear_data, network, days=days,
                                                frame=frame, nodata=nodata, seed=seed,
                                                resources=annotations)
    # the interval's level is cross-validated where the scored head is the one that fills
    stacked, choice = correct_stack(refl_data, clear_data, candidates, frame=frame,
                                    day=float(days[frame]), nodata=nodata, fill=FILL_GENERATED,
                                    seed=seed, sigmas=sigmas_px, scoring=scoring,
                                    select_level=fills)
    names = [f"test-time head: {HEAD_INPUTS[with_network]} -> target date", PRIOR_CANDIDATE]
    parameters = {
        "model": model_name if model is None else getattr(meta_card, "name", type(model).__name__),
        "model_version": str(getattr(meta_card, "version", "unversioned")),
        "target_date": iso_day(target_day),
        "frame_date": iso_day(days[frame]),
        "tile_px": tile, "halo_px": halo, "precision": precision,
        "network_input": with_network,
        **({"network_frames": f"the target and its {MAX_FRAMES - 1} nearest dates with over "
                              f"{MIN_USABLE:.0%} of the tile usable"} if with_network else {}),
        "prior": "interpolate: linear in time from the other dates",
        "test_time_head": head_parameters(), "head_scoring": HEAD_SCORING,
        "scoring_folds": SCORING_FOLDS,
        **correction_parameters(names, sigmas=sigmas_px, seed=seed, masks=HELD_OUT_MASKS),
    }
    return corrected_dataset(stacked, choice, reflectance, nodata=nodata, method="generator",
                             parameters=parameters)


# --------------------------------------------------------------------------- evaluation

from cloudfree.methods._provenance import Reconstruction  # noqa: E402
from cloudfree.methods.corrected import interval_frame  # noqa: E402
from cloudfree.methods.corrected_interval import MAX_HALF_WIDTH  # noqa: E402


@lru_cache(maxsize=4)
def _cached_model(name: str) -> tuple[Generator, ModelCard]:
    from cloudfree.models.weights import load_generator

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
    import torch

    from cloudfree.models.threads import torch_threads
    from cloudfree.models.weights import prepare_inputs, restore_outputs

    inputs = prepare_inputs(padded, days, band_names, card)
    with torch.no_grad(), torch_threads():  # the same result whatever the thread count
        out = model(**inputs)
    return restore_outputs(out, band_names, card)[target, :, :h, :w]


def reconstruct_target(model: Generator, card: ModelCard, series: np.ndarray,
                       days: np.ndarray, target: int, band_names: Sequence[str], *,
                       max_frames: int = 8, adapt: bool = True, seed: int = 0
                       ) -> Reconstruction:
    """The reconstruction of ``series[target]`` with its 90 % interval; finite pixels pass
    through (half-width 0).

    ``adapt``: test-time training (:mod:`cloudfree.models.head`) on the target's visible
    pixels, then the residual correction (:func:`head_and_prior_frame`, :func:`cloudfree.methods.corrected.correct_frame`):
    the self-validation chooses the width and the candidate, and calibrates the interval
    (:func:`cloudfree.methods.corrected.interval_frame`), on errors made out-of-sample by
    heads trained outside its held-out masks (:func:`head_pair_frame`).
    Without ``adapt``, the pretrained network alone, and no interval (None)."""
    series = np.asarray(series, np.float32)
    days = np.asarray(days, np.float64)
    visible = np.isfinite(series[target]).all(axis=0)
    generated = None
    if not adapt or NETWORK_INPUT:
        frames = select_frames(series, days, target, max_frames)
        local = int(np.flatnonzero(frames == target)[0])
        generated = generate_frame(model, card, series[frames], days[frames], local,
                                   band_names)
    if not adapt:
        return Reconstruction(np.nan_to_num(np.where(visible[None], series[target], generated)
                                            ).astype(np.float32))
    usable = np.isfinite(series).all(axis=1)
    candidates, scoring, fills = head_and_prior_frame(series, days, target, extra=generated,
                                                      seed=seed)
    observed = np.asarray(series[target], np.float64)
    filled, index, sigma = correct_frame(observed, usable, candidates, frame=target, seed=seed,
                                         scoring=scoring)
    half_width = interval_frame(observed, usable, scoring, frame=target, index=index,
                                sigma=sigma, seed=seed, select_level=fills)
    return Reconstruction(np.nan_to_num(filled).astype(np.float32),
                          np.nan_to_num(half_width, nan=MAX_HALF_WIDTH).astype(np.float32))


def fill_target(model: Generator, card: ModelCard, series: np.ndarray, days: np.ndarray,
                target: int, band_names: Sequence[str], *, max_frames: int = 8,
                adapt: bool = True, seed: int = 0) -> np.ndarray:
    """(C, H, W) reconstruction of ``series[target]`` (:func:`reconstruct_target`'s values);
    its finite pixels pass through."""
    values: np.ndarray = reconstruct_target(model, card, series, days, target, band_names,
                                            max_frames=max_frames, adapt=adapt,
                                            seed=seed).values
    return values


def evaluate(series: np.ndarray, days: np.ndarray, target: int, *,
             band_names: Sequence[str] | None = None, model_name: str = "default",
             adapt: bool = True) -> Reconstruction:
    """Evaluation :data:`~cloudfree.evaluation.harness.MethodFn` of the shipped generator,
    with its 90 % interval (:func:`reconstruct_target`).

    ``band_names`` map the case's bands onto the model's; without them a 1-band series is
    taken as ``ndvi`` (0..1), 13 bands as L1C B01..B12, 6 as L2A, 3 as RGB."""
    model, card = _cached_model(model_name)
    if band_names is None:
        from cloudfree.methods.network import default_band_names

        band_names = default_band_names(series.shape[1], card)
    return reconstruct_target(model, card, series, days, target, band_names, adapt=adapt)


def evaluate_no_tta(series: np.ndarray, days: np.ndarray, target: int, *,
                    band_names: Sequence[str] | None = None) -> Reconstruction:
    """The generator alone, without test-time adaptation (for ablations; no interval)."""
    return evaluate(series, days, target, band_names=band_names, adapt=False)



# --------------------------------------------------------------------------- items


def label(options: Mapping[str, Any]) -> str:
    """``generator-{model}-{version}``: new weights make new items."""
    from cloudfree.models.weights import WEIGHTS_DIR, ModelCard

    model = str(options.get("model_name", "default"))
    card_path = WEIGHTS_DIR / f"{model}.json"
    if not card_path.is_file():
        raise InvalidParameterError("model", model, f"no model card {card_path}")
    card = ModelCard.from_json(card_path.read_text())
    return f"generator-{card.name}-{card.version}"


def hashed_parameters() -> dict[str, Any]:
    """The correction and the test-time head's training decide pixels too."""
    from cloudfree.methods.head_folds import SCORING_FOLDS
    from cloudfree.models.head import head_parameters

    return {"correction": correction_parameters([], sigmas=SIGMAS_PX, seed=0,
                                                masks=HELD_OUT_MASKS),
            "test_time_head": head_parameters(), "head_scoring": HEAD_SCORING,
            "scoring_folds": SCORING_FOLDS,
            "network_input": NETWORK_INPUT, "network_frames": MAX_FRAMES,
            "min_dates": MIN_DATES}


def software(options: Mapping[str, Any]) -> dict[str, str]:
    """The weights are software too."""
    return {"cloudfree-generator": label(options)}


__all__ = ("COMPUTE_CONFIG", "evaluate", "hashed_parameters", "label", "software", "evaluate_no_tta", "generator_composite_array", "mosaic")
