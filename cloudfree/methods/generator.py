"""Generator inference at scale: chunked over the dask cube with a halo, without seams.

The scheme, and why chunked inference equals whole-array inference (up to float error):

* **One global grid.** The image is padded at the bottom and right to a multiple of the
  generator's ``downsample_factor`` (``df``) with *missing* pixels (NaN: value 0, clear 0),
  the same padding a whole-array run gets. Tile cores are ``tile_px`` squares (rounded up to
  a multiple of ``df``) laid from the origin, so every tile starts on the ``df`` grid: the
  network's pooling cells line up with those of the whole-array run.
* **Halo.** Each tile runs on its core grown by ``halo_px`` (default the model's
  ``receptive_radius_px``, rounded up to a multiple of ``df``) on every side, clipped to the
  padded image. A core pixel therefore sees either the same context as in the whole-array
  run, or the image edge where the whole-array run sees it too (zero padding at the same
  place). Nothing farther than the receptive radius can change it.
* **Crop-to-centre blending.** Each output pixel comes from the one tile whose core owns it
  (a partition of unity with weights 0/1), so there is nothing to blend and no seam: the
  result equals the whole-array run up to float rounding in the convolutions. A smooth
  window would only add error where the halo is already exact.
* **Dask.** :func:`generator_composite` applies the same argument to dask chunks: chunk
  starts are put on the ``df`` grid (rechunking if needed), the overlap depth is the halo,
  each block runs :func:`fill_series` and the halo is trimmed. A block that touches the
  image edge is not extended (``boundary="none"``), exactly as the whole image is not.

Observed pixels are copied from the input at the end, so they come out bit-identical.
On CUDA the network runs under ``torch.autocast`` in bf16 (or fp16); on CPU in fp32.

The mosaic (:func:`generator_composite`) runs what the evaluation measures: the network
predicts the target frame with that frame hidden entirely, and the prediction is fitted to
the frame's own clear pixels by the residual correction of :mod:`cloudfree.methods._corrected`
(chunked with an overlap of its own, one choice of width per tile, so again no seams).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import xarray as xr

from cloudfree.errors import InvalidParameterError
from cloudfree.methods._composite import (
    FILL_GENERATED,
    FILL_NODATA,
    FILL_OBSERVED,
    Composite,
    _target_day,
    dask_cube,
    prepare_cube,
    usable_block,
)
from cloudfree.methods._corrected import (
    HELD_OUT_MASKS,
    aligned_chunks,
    correct_frame,
    correct_stack,
    corrected_dataset,
    correction_parameters,
    iso_day,
    nearest_frame,
    to_reflectance,
)
from cloudfree.methods.correction import SIGMAS_PX, kernel_radius

Precision = Literal["auto", "fp32", "bf16", "fp16"]
DEFAULT_TILE_PX = 256
#: Compute a graph with GPU annotations under ``dask.config.set(COMPUTE_CONFIG)``: dask's
#: low-level fusion (on by default for arrays) turns the graph into a plain dict and drops
#: the layers' annotations, so the scheduler would never see ``resources={"GPU": 1}``
#: (measured with dask/distributed 2026.8).
COMPUTE_CONFIG: dict[str, Any] = {"optimization.fuse.active": False}


# --------------------------------------------------------------------------- model handling


@functools.lru_cache(maxsize=4)
def cached_generator(name: str, device: str) -> tuple[Any, Any]:
    """``(model, card)`` loaded once per process (so once per Dask worker), in eval mode."""
    from cloudfree.models.weights import load_generator

    model, card = load_generator(name, device=device)
    model.eval()
    return model, card


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_device(model: Any) -> str:
    for param in model.parameters():
        return str(param.device)
    return "cpu"


def _round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def _autocast(device: str, precision: Precision) -> contextlib.AbstractContextManager:
    import torch

    cuda = device.startswith("cuda")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise InvalidParameterError("precision", precision, "use auto, fp32, bf16 or fp16")
    if precision == "fp32" or (precision == "auto" and not cuda):
        return contextlib.nullcontext()
    if not cuda:
        raise InvalidParameterError("precision", precision,
                                    "half precision runs on CUDA only; use fp32 or auto on CPU")
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _prepare(values: np.ndarray, days: np.ndarray, band_names: Sequence[str], card: Any,
             model: Any) -> dict[str, Any]:
    """Batch-of-1 model inputs; the registry's normalisation when a card is given."""
    import torch

    if card is not None:
        from cloudfree.models.weights import prepare_inputs

        return prepare_inputs(values, days, list(band_names), card)
    # No card (a bare model): reflectance as is, the bands matched by name.
    model_bands = list(getattr(model, "bands", band_names))
    n_dates, _, height, width = values.shape
    full = np.zeros((n_dates, len(model_bands), height, width), np.float32)
    present = np.zeros(len(model_bands), np.float32)
    for i, name in enumerate(band_names):
        if name in model_bands:
            full[:, model_bands.index(name)] = values[:, i]
            present[model_bands.index(name)] = 1
    clear = np.isfinite(full[:, present > 0]).all(axis=1) if present.any() else \
        np.zeros((n_dates, height, width), bool)
    full = np.where(clear[:, None] & (present[:, None, None] > 0), full, 0).astype(np.float32)
    doy = np.mod(np.asarray(days, np.float64), 365.25).astype(np.float32)
    return {"values": torch.from_numpy(full)[None], "clear": torch.from_numpy(clear)[None].float(),
            "doy": torch.from_numpy(doy)[None], "band_present": torch.from_numpy(present)[None]}


def _restore(out: Any, band_names: Sequence[str], card: Any, model: Any) -> np.ndarray:
    if card is not None:
        from cloudfree.models.weights import restore_outputs

        return np.asarray(restore_outputs(out, list(band_names), card), np.float32)
    model_bands = list(getattr(model, "bands", band_names))
    full = out[0].numpy()
    restored = np.full((full.shape[0], len(band_names), *full.shape[2:]), np.nan, np.float32)
    for i, name in enumerate(band_names):
        if name in model_bands:
            restored[:, i] = full[:, model_bands.index(name)]
    return restored


# --------------------------------------------------------------------------- tiling


def tile_windows(height: int, width: int, *, tile_px: int, halo_px: int
                 ) -> list[tuple[slice, slice, slice, slice]]:
    """Cores and halo windows covering a (height, width) image: ``(core_y, core_x, win_y,
    win_x)``. Cores partition the image; each window is its core grown by ``halo_px`` and
    clipped to the image."""
    windows = []
    for y0 in range(0, height, tile_px):
        y1 = min(y0 + tile_px, height)
        for x0 in range(0, width, tile_px):
            x1 = min(x0 + tile_px, width)
            windows.append((slice(y0, y1), slice(x0, x1),
                            slice(max(0, y0 - halo_px), min(height, y1 + halo_px)),
                            slice(max(0, x0 - halo_px), min(width, x1 + halo_px))))
    return windows


def _geometry(model: Any, tile_px: int, halo_px: int | None) -> tuple[int, int, int]:
    factor = int(getattr(model, "downsample_factor", 1))
    halo = int(model.receptive_radius_px if halo_px is None else halo_px)
    if tile_px < 1 or halo < 0:
        raise InvalidParameterError("tile_px/halo_px", (tile_px, halo_px),
                                    "give tile_px >= 1 and halo_px >= 0")
    return factor, max(factor, _round_up(tile_px, factor)), _round_up(halo, factor)


# --------------------------------------------------------------------------- numpy core


def fill_series(
    values: np.ndarray,
    days: np.ndarray,
    band_names: Sequence[str],
    *,
    model: Any = None,
    card: Any = None,
    model_name: str = "default",
    tile_px: int = DEFAULT_TILE_PX,
    halo_px: int | None = None,
    batch_size: int = 4,
    device: str | None = None,
    precision: Precision = "auto",
) -> np.ndarray:
    """Fill every missing value of a (T, C, H, W) reflectance series with the generator.

    Args:
        values: reflectance, NaN where unusable.
        days: (T,) days since 1970-01-01.
        band_names: the C band names (matched to the model's trained bands).
        model: a generator (``forward(values, clear, doy, band_present)``, attributes
            ``downsample_factor`` and ``receptive_radius_px``); default the registry's
            ``model_name``, loaded once per process.
        card: the model's card (normalisation); ``None`` with a bare model means the
            reflectance goes in as is.
        tile_px: tile core size (rounded up to a multiple of ``downsample_factor``).
        halo_px: context around each core; default ``model.receptive_radius_px``.
        batch_size: tiles per forward pass.
        device: torch device; default CUDA when available, else CPU (with ``model``
            given: the model's own device; a ``device`` given with ``model`` must be
            where the model lives, it is not moved).
        precision: ``auto`` is bf16 (fp16 without bf16) under autocast on CUDA, fp32 on
            CPU.

    Returns:
        (T, C, H, W) float32: the input wherever it is finite (bit-identical), the
        generator's output wherever it is NaN.
    """
    import torch

    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 4:
        raise InvalidParameterError("values", values.shape, "give a (time, band, y, x) array")
    days = np.asarray(days, dtype=np.float64)
    if days.shape != values.shape[:1]:
        raise InvalidParameterError("days", days.shape, f"give {values.shape[0]} days")
    if len(band_names) != values.shape[1]:
        raise InvalidParameterError("band_names", band_names,
                                    f"give {values.shape[1]} names, one per band")
    if batch_size < 1:
        raise InvalidParameterError("batch_size", batch_size, "give an integer >= 1")
    if model is None:
        model, card = cached_generator(model_name, device or default_device())
    device = device or _model_device(model)
    factor, tile, halo = _geometry(model, tile_px, halo_px)
    missing = ~np.isfinite(values)
    if not missing.any():
        return values.copy()

    n_dates, n_bands, height, width = values.shape
    padded_h, padded_w = _round_up(height, factor), _round_up(width, factor)
    padded = np.full((n_dates, n_bands, padded_h, padded_w), np.nan, np.float32)
    padded[:, :, :height, :width] = values
    inputs = _prepare(padded, days, band_names, card, model)
    generated = torch.zeros_like(inputs["values"][0])  # (T, C_model, H', W')
    # only tiles whose core holds a missing value need the network
    needs = np.zeros((padded_h, padded_w), bool)
    needs[:height, :width] = missing.any(axis=(0, 1))
    by_shape: dict[tuple[int, int], list[tuple[slice, slice, slice, slice]]] = {}
    for window in tile_windows(padded_h, padded_w, tile_px=tile, halo_px=halo):
        if needs[window[0], window[1]].any():
            shape = (window[2].stop - window[2].start, window[3].stop - window[3].start)
            by_shape.setdefault(shape, []).append(window)

    with torch.inference_mode(), _autocast(device, precision):
        for windows in by_shape.values():
            for start in range(0, len(windows), batch_size):
                batch = windows[start:start + batch_size]
                n = len(batch)
                out = model(
                    torch.cat([inputs["values"][..., wy, wx] for _, _, wy, wx in batch]).to(device),
                    torch.cat([inputs["clear"][..., wy, wx] for _, _, wy, wx in batch]).to(device),
                    inputs["doy"].expand(n, -1).to(device),
                    inputs["band_present"].expand(n, -1).to(device),
                ).float().cpu()
                for i, (cy, cx, wy, wx) in enumerate(batch):
                    local_y = slice(cy.start - wy.start, cy.stop - wy.start)
                    local_x = slice(cx.start - wx.start, cx.stop - wx.start)
                    generated[:, :, cy, cx] = out[i, :, :, local_y, local_x]
    restored = _restore(generated[None], band_names, card, model)[:, :, :height, :width]
    return np.where(missing, restored, values).astype(np.float32, copy=False)


def network_prediction(values: np.ndarray, days: np.ndarray, band_names: Sequence[str], *,
                       frame: int, **fill_kw: Any) -> np.ndarray:
    """(C, H, W) float32: the pretrained network's prediction of frame ``frame`` made with
    that frame hidden entirely (:func:`fill_series`), so it uses none of its pixels."""
    hidden = np.array(values, np.float32)
    hidden[frame] = np.nan
    return fill_series(hidden, days, band_names, **fill_kw)[frame]


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

    ``**kw`` goes to :func:`fill_series` (``tile_px``, ``halo_px``, ``batch_size``,
    ``device``, ``precision``, ``model_name``).
    """
    values = np.asarray(values, dtype=np.float32)
    days = np.asarray(days, dtype=np.float64)
    if values.ndim != 4 or days.shape != values.shape[:1] or not np.isfinite(days).all():
        raise InvalidParameterError("values/days", (values.shape, days.shape),
                                    "give (T, C, H, W) values and T finite days")
    usable = np.isfinite(values).all(axis=1)
    values = np.where(usable[:, None], values, np.nan).astype(np.float32)
    frame = nearest_frame(days, _target_day(days, target_day))
    count = usable.sum(axis=0)
    visible = usable[frame]
    if visible.all():
        filled = values[frame]
    else:
        from cloudfree.models.head import adapted_frame

        network = network_prediction(values, days, band_names, frame=frame, model=model,
                                     card=card, **kw)
        candidates = adapted_frame(values, days, frame, extra=network, seed=seed,
                                   device=kw.get("device") or default_device())[None]
        filled, _, _ = correct_frame(values[frame], usable, candidates, frame=frame, seed=seed,
                                     sigmas=sigmas_px)
    gap = ~visible & ((count == 0) | ~np.isfinite(filled).all(axis=0))
    fill = np.select([visible, gap], [FILL_OBSERVED, FILL_NODATA], FILL_GENERATED)
    return Composite(
        reflectance=np.where(gap, np.nan, filled).astype(np.float32),
        clear_count=np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16),
        source_day=np.where(gap, np.nan, days[frame]).astype(np.float32),
        fill=fill.astype(np.uint8),
    )


# --------------------------------------------------------------------------- xarray/dask


def _network_block(reflectance: np.ndarray, clear: np.ndarray, *, days: np.ndarray,
                   band_names: list[str], frame: int, nodata: int,
                   fill_kw: dict[str, Any]) -> np.ndarray:
    """One block (with its halo): DN (T, C, h, w) and clear (T, h, w) -> the network's
    (C, h, w) reflectance of frame ``frame``, made with that frame hidden entirely."""
    usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    values[frame] = np.nan
    return fill_series(values, days, band_names, **fill_kw)[frame]


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


def generator_composite(
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
    batch_size: int = 4,
    device: str | None = None,
    precision: Precision = "auto",
    resources: Mapping[str, int] | None | Literal["auto"] = "auto",
    seed: int = 0,
    sigmas_px: Sequence[float] = SIGMAS_PX,
) -> xr.Dataset:
    """The generator's mosaic of a (time, band, y, x) uint16 cube, lazily when dask-backed.

    What the evaluation measures as the generator's method: the target frame (the date
    nearest ``target_date``; ties: the earlier) keeps its clear pixels; the network
    predicts the frame with the frame hidden entirely; a small head is trained on the
    frame's clear pixels from the other dates and that prediction, once per tile
    (:func:`cloudfree.models.head.head_candidate`), and predicts the gaps; its prediction
    is fitted to the frame's own clear pixels by the residual correction, with the width
    chosen once per tile (:mod:`cloudfree.methods._corrected`). ``heldout_rmse`` is NaN (None in
    the item): the head trains on the pixels the self-validation holds out, so that
    error would flatter it.

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
    from cloudfree.models.head import head_candidate, head_parameters

    reflectance, clear, days, target_day = prepare_cube(reflectance, clear, target_date)
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
    if lazy:
        import dask
        import dask.array as da

        # one chunking for the network and the correction: on the df grid, and wide enough
        # for either overlap
        depth = max(halo, kernel_radius(max(sigmas_px)))
        refl_data, clear_data, spatial = dask_cube(
            reflectance, clear, align=partial(aligned_chunks, factor=factor, depth=depth))
        # a single chunk along an axis has no neighbour to borrow from
        depth_y, depth_x = (halo if len(c) > 1 else 0 for c in spatial)
        annotations = _resolve_resources(resources)
        with dask.annotate(resources=annotations) if annotations else contextlib.nullcontext():
            refl_halo = da.overlap.overlap(refl_data, depth={0: 0, 1: 0, 2: depth_y, 3: depth_x},
                                           boundary="none", allow_rechunk=False)
            clear_halo = da.overlap.overlap(clear_data, depth={0: 0, 1: depth_y, 2: depth_x},
                                            boundary="none", allow_rechunk=False)
            # The name must depend on the inputs: tiles computed at the same time on one
            # scheduler would otherwise share keys, and get each other's results.
            token = dask.base.tokenize(refl_halo.name, clear_halo.name, days, frame,
                                       nodata, fill_kw.get("model_name"), tile, halo)
            network = da.blockwise(network_block, "byx", refl_halo, "tbyx", clear_halo, "tyx",
                                   concatenate=True, meta=np.empty((0, 0, 0), np.float32),
                                   name=f"generator-block-{token}")
            network = da.overlap.trim_internal(network, {0: 0, 1: depth_y, 2: depth_x},
                                               boundary="none")
    else:
        refl_data, clear_data = np.asarray(reflectance.data), np.asarray(clear.data, bool)
        network = network_block(refl_data, clear_data)
    candidates = head_candidate(refl_data, clear_data, network, days=days, frame=frame,
                                nodata=nodata, seed=seed)
    stacked, choice = correct_stack(refl_data, clear_data, candidates, frame=frame,
                                    day=float(days[frame]), nodata=nodata, fill=FILL_GENERATED,
                                    seed=seed, sigmas=sigmas_px)
    choice = choice * np.array([1.0, 1.0, np.nan])  # no honest held-out error: see above
    names = ["test-time head: prior, nearest dates and network -> target date"]
    parameters = {
        "model": model_name if model is None else getattr(meta_card, "name", type(model).__name__),
        "model_version": str(getattr(meta_card, "version", "unversioned")),
        "target_date": iso_day(target_day),
        "frame_date": iso_day(days[frame]),
        "tile_px": tile, "halo_px": halo, "precision": precision,
        "prior": "interpolate: linear in time from the other dates",
        "test_time_head": head_parameters(),
        **correction_parameters(names, sigmas=sigmas_px, seed=seed, masks=HELD_OUT_MASKS),
    }
    return corrected_dataset(stacked, choice, reflectance, nodata=nodata, method="generator",
                             parameters=parameters)


__all__ = [
    "COMPUTE_CONFIG",
    "cached_generator",
    "fill_series",
    "network_prediction",
    "generator_composite",
    "generator_composite_array",
    "nearest_frame",
    "tile_windows",
]
