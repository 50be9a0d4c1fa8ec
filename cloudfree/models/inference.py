"""The generator network at scale: chunked over any (T, C, H, W) series with a halo, no seams.

* **One global grid.** The image is padded at the bottom and right to a multiple of the
  generator's ``downsample_factor`` (``df``) with *missing* pixels (NaN: value 0, clear 0),
  the same padding a whole-array run gets. Tile cores are ``tile_px`` squares (rounded up to
  a multiple of ``df``) laid from the origin, so every tile starts on the ``df`` grid: the
  network's pooling cells line up with those of the whole-array run.
* **Halo.** Each tile runs on its core grown by ``halo_px`` (default the model's
  ``receptive_radius_px``, rounded up to a multiple of ``df``) on every side, clipped to the
  padded image. A core pixel therefore sees either the same context as in the whole-array
  run, or the image edge where the whole-array run sees it too.
* **Crop-to-centre blending.** Each output pixel comes from the one tile whose core owns it
  (weights 0/1), so there is nothing to blend and no seam: the result equals the whole-array
  run up to float rounding in the convolutions.

Observed pixels are copied from the input at the end, so they come out bit-identical.
On CUDA the network runs under ``torch.autocast`` in bf16 (or fp16); on CPU in fp32.
:mod:`cloudfree.methods.generator` runs this per dask chunk with the same halo.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from cloudfree.errors import InvalidParameterError

if TYPE_CHECKING:  # torch loads only when a network runs
    from cloudfree.models.generator import Generator
    from cloudfree.models.weights import ModelCard

Precision = Literal["auto", "fp32", "bf16", "fp16"]
#: Tile cores of 512 px, one per forward pass: the halo is a smaller share of the work than
#: with 256 px cores (584 px windows against 328 px: 1.30 against 1.64 times the core), and
#: one window's activations are smaller than four 328 px windows'. Measured on one 1024 px
#: block of 8 dates x 6 bands (2 threads): 22.0 s and 1.65 GB peak RSS, against 28.1 s and
#: 1.92 GB with 256 px cores in batches of 4 (``fill_frame``; the same output bit for bit).
DEFAULT_TILE_PX = 512
DEFAULT_BATCH = 1

# --------------------------------------------------------------------------- model handling


@functools.lru_cache(maxsize=4)
def cached_generator(name: str, device: str) -> tuple[Generator, ModelCard]:
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


def _autocast(device: str, precision: Precision) -> contextlib.AbstractContextManager[None]:
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


def _prepare(values: NDArray[np.float32], days: NDArray[np.float64], band_names: Sequence[str],
             card: ModelCard | None, model: Any) -> dict[str, Any]:
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
    clear: NDArray[np.bool_] = np.asarray(np.isfinite(full[:, present > 0]).all(axis=1)) \
        if present.any() else np.zeros((n_dates, height, width), bool)
    full = np.where(clear[:, None] & (present[:, None, None] > 0), full, 0).astype(np.float32)
    doy = np.mod(np.asarray(days, np.float64), 365.25).astype(np.float32)
    return {"values": torch.from_numpy(full)[None], "clear": torch.from_numpy(clear)[None].float(),
            "doy": torch.from_numpy(doy)[None], "band_present": torch.from_numpy(present)[None]}


def _restore(out: Any, band_names: Sequence[str], card: ModelCard | None,
             model: Any) -> NDArray[np.float32]:
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
    values: NDArray[Any],
    days: NDArray[Any],
    band_names: Sequence[str],
    *,
    model: Any = None,
    card: ModelCard | None = None,
    model_name: str = "default",
    tile_px: int = DEFAULT_TILE_PX,
    halo_px: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    device: str | None = None,
    precision: Precision = "auto",
) -> NDArray[np.float32]:
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


#: A frame takes part in a target-only prediction when more than this share of the tile is
#: usable on it (as the evaluation's ``select_frames``).
MIN_USABLE = 0.02
#: Frames the network sees for one target (the target and its nearest usable dates).
MAX_FRAMES = 8


def select_frames(usable_fraction: NDArray[Any], days: NDArray[Any], target: int,
                  max_frames: int = MAX_FRAMES) -> NDArray[np.intp]:
    """The target and the ``max_frames - 1`` frames nearest it in time with more than
    :data:`MIN_USABLE` of the tile usable (ties: the earlier index), in time order.

    Decided from per-frame usable fractions of the *whole* tile, so that every chunk of a
    chunked run chooses the same frames (the rule of
    :func:`cloudfree.methods.generator.select_frames`, which the evaluation computes from the
    series itself)."""
    usable = np.asarray(usable_fraction, np.float64) > MIN_USABLE
    days = np.asarray(days, np.float64)
    if usable.shape != days.shape or not 0 <= target < len(days):
        raise InvalidParameterError("usable_fraction", usable.shape,
                                    f"give one fraction per date and a target in 0..{len(days) - 1}")
    if max_frames < 1:
        raise InvalidParameterError("max_frames", max_frames, "give an integer >= 1")
    usable[target] = True
    candidates = np.flatnonzero(usable)
    order = candidates[np.argsort(np.abs(days[candidates] - days[target]), kind="stable")]
    chosen = np.sort(order[:max_frames])
    picked: NDArray[np.intp] = chosen[np.argsort(days[chosen], kind="stable")]
    return picked


def fill_frame(
    values: NDArray[Any],
    days: NDArray[Any],
    band_names: Sequence[str],
    *,
    frame: int,
    model: Any = None,
    card: ModelCard | None = None,
    model_name: str = "default",
    tile_px: int = DEFAULT_TILE_PX,
    halo_px: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    device: str | None = None,
    precision: Precision = "auto",
) -> NDArray[np.float32]:
    """Fill the missing values of frame ``frame`` of a (T, C, H, W) series: what
    ``fill_series(values, ...)[frame]`` returns, for about the cost of one frame's decoder.

    The network runs with its target-only forward (``model(..., target=frame)``, for a model
    with ``forward_target``: the encoder on every frame, the attention's query and the
    decoder on ``frame`` alone; a model without one runs its full forward), only on tiles whose core holds a missing value of that frame,
    and each tile's inputs are prepared from its own window (no whole-image copy in the
    model's band set). Tiling, halo and precision as :func:`fill_series`; chunked equals
    whole up to float rounding, and the frame's finite values pass through bit-identical.

    Returns:
        (C, H, W) float32.
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
    if not 0 <= frame < values.shape[0]:
        raise InvalidParameterError("frame", frame, f"give a frame in 0..{values.shape[0] - 1}")
    if batch_size < 1:
        raise InvalidParameterError("batch_size", batch_size, "give an integer >= 1")
    if model is None:
        model, card = cached_generator(model_name, device or default_device())
    device = device or _model_device(model)
    factor, tile, halo = _geometry(model, tile_px, halo_px)
    missing = ~np.isfinite(values[frame])
    if not missing.any():
        unchanged: NDArray[np.float32] = values[frame].copy()
        return unchanged

    n_dates, n_bands, height, width = values.shape
    padded_h, padded_w = _round_up(height, factor), _round_up(width, factor)
    if (padded_h, padded_w) == (height, width):
        padded = values
    else:
        padded = np.full((n_dates, n_bands, padded_h, padded_w), np.nan, np.float32)
        padded[:, :, :height, :width] = values
    needs = np.zeros((padded_h, padded_w), bool)
    needs[:height, :width] = missing.any(axis=0)
    by_shape: dict[tuple[int, int], list[tuple[slice, slice, slice, slice]]] = {}
    for window in tile_windows(padded_h, padded_w, tile_px=tile, halo_px=halo):
        if needs[window[0], window[1]].any():
            shape = (window[2].stop - window[2].start, window[3].stop - window[3].start)
            by_shape.setdefault(shape, []).append(window)
    target_only = hasattr(model, "forward_target")
    generated: Any = None  # (C_model, H', W'), made once the model's band count is known

    with torch.inference_mode(), _autocast(device, precision):
        for windows in by_shape.values():
            for start in range(0, len(windows), batch_size):
                batch = windows[start:start + batch_size]
                parts = [_prepare(padded[:, :, wy, wx], days, band_names, card, model)
                         for _, _, wy, wx in batch]
                inputs = [torch.cat([p[key] for p in parts]).to(device)
                          for key in ("values", "clear", "doy", "band_present")]
                del parts
                if target_only:
                    out = model(*inputs, target=frame).float().cpu()
                else:
                    out = model(*inputs)[:, frame].float().cpu()
                del inputs
                if generated is None:
                    generated = torch.zeros((out.shape[1], padded_h, padded_w))
                for i, (cy, cx, wy, wx) in enumerate(batch):
                    local_y = slice(cy.start - wy.start, cy.stop - wy.start)
                    local_x = slice(cx.start - wx.start, cx.stop - wx.start)
                    generated[:, cy, cx] = out[i, :, local_y, local_x]
    restored = _restore(generated[None, None], band_names, card, model)[0, :, :height, :width]
    return np.where(missing, restored, values[frame]).astype(np.float32, copy=False)


def network_prediction(values: NDArray[Any], days: NDArray[Any], band_names: Sequence[str], *,
                       frame: int, max_frames: int | None = MAX_FRAMES,
                       **fill_kw: Any) -> NDArray[np.float32]:
    """(C, H, W) float32: the pretrained network's prediction of frame ``frame`` made with
    that frame hidden entirely (:func:`fill_frame`), so it uses none of its pixels.

    The network sees the frame and the nearest ``max_frames - 1`` usable frames
    (:func:`select_frames` on this array's usable fractions; ``None``: every frame)."""
    values = np.asarray(values, np.float32)
    days = np.asarray(days, np.float64)
    if max_frames is not None:
        fraction = np.isfinite(values).all(axis=1).mean(axis=(1, 2))
        frames = select_frames(fraction, days, frame, max_frames)
        values, days = values[frames], days[frames]
        frame = int(np.flatnonzero(frames == frame)[0])
    hidden = np.array(values, np.float32)
    hidden[frame] = np.nan
    return fill_frame(hidden, days, band_names, frame=frame, **fill_kw)


__all__ = ("DEFAULT_BATCH", "DEFAULT_TILE_PX", "MAX_FRAMES", "MIN_USABLE", "Precision", "cached_generator",
           "default_device", "fill_frame", "fill_series", "network_prediction", "select_frames",
           "tile_windows")
