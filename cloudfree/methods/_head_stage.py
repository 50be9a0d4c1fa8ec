"""The test-time head on dask cubes (:mod:`cloudfree.models.head`): a per-tile reduction.

Each chunk, with the head's halo, stacks the head's features, the prior and the network's
prediction; the training pixels, picked by a hash of their global (row, column), are
gathered from the chunks' cores in global order, so one head is trained per tile exactly
as a whole-array run trains it; every chunk then applies that one head. No seams.

Pixels of the residual correction's held-out masks do not train the head
(:func:`cloudfree.models.head.held_out_union`: each chunk draws its part of the same masks
from the whole tile's cloud fractions and its global rows and columns). Whether too few
pixels are left outside them, and the sampling rate, are decided from the whole tile's
pixel counts, a lazy reduction (:func:`cloudfree.models.head.training_pixels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cloudfree.methods._driver import usable_block
from cloudfree.methods.corrected import HELD_OUT_MASKS
from cloudfree.models.head import (
    FEATURE_FRAMES,
    HALO_PX,
    MAX_SAMPLES,
    SeriesHead,
    feature_frames,
    features,
    fit_head,
    held_out_union,
    predict,
    samples,
    training_counts,
    training_pixels,
)

Float32 = NDArray[np.float32]


def _features_block(reflectance: np.ndarray, clear: np.ndarray, network: np.ndarray,
                    cloud_fraction: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                    days: np.ndarray, frame: int, nodata: int, shape: tuple[int, int],
                    seed: int, masks: int) -> Float32:
    """DN (T, C, h, w), clear (T, h, w), the network's (C, h, w), the tile's cloud
    fractions and the chunk's global rows and columns -> (F + 2 C + 1, h, w): the
    features, the prior, the target's observed values (NaN where not usable), and 1 where
    the pixel is in the correction's held-out union (``masks`` masks, ``seed``), else 0."""
    from cloudfree.methods._driver import to_reflectance

    usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
    held = held_out_union(usable, cloud_fraction, rows, cols, frame=frame, shape=shape,
                          seed=seed, masks=masks)
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    frames = feature_frames(cloud_fraction, days, frame)
    feats, prior = features(values, usable, days, frame, frames, network)
    return np.concatenate([feats, prior, values[frame], held[None]]).astype(np.float32)


def _split(stack: np.ndarray, n_bands: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A block of :func:`_features_block` -> features, prior, observed, held-out (bool)."""
    return (stack[:-2 * n_bands - 1], stack[-2 * n_bands - 1:-n_bands - 1],
            stack[-n_bands - 1:-1], stack[-1] > 0.5)


def _trainable(stack: np.ndarray, n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """A block's candidate training pixels (the target and the prior usable), and which of
    the block is in the held-out union."""
    _, prior, observed, held = _split(stack, n_bands)
    return np.isfinite(observed).all(axis=0) & np.isfinite(prior).all(axis=0), held


def _counts_block(stack: np.ndarray, *, n_bands: int) -> np.ndarray:
    """One chunk (no halo) -> (1, 1, 2) :func:`~cloudfree.models.head.training_counts`."""
    return training_counts(*_trainable(stack, n_bands))[None, None]


def _samples_block(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_core: np.ndarray,
                   col_core: np.ndarray, counts: np.ndarray, *, n_bands: int, width: int,
                   max_samples: int, seed: int, exclude: bool = True) -> tuple[np.ndarray, ...]:
    """One halo'd chunk's training pairs over its core (``counts``: the whole tile's), with
    their global linear index; ``exclude=False``: the held-out union trains too."""
    feats, prior, observed, _ = _split(stack, n_bands)
    trainable, held = _trainable(stack, n_bands)
    trainable &= row_core[:, None] & col_core[None, :]
    counts = np.asarray(counts, np.float64).ravel()
    if not exclude:
        held = np.zeros_like(held)
        counts = np.array([counts[0], counts[0]])
    picked = training_pixels(trainable, held, rows, cols, counts,
                             max_samples=max_samples, seed=seed)
    r, c = np.nonzero(picked)
    return (rows[r].astype(np.int64) * width + cols[c], *samples(feats, prior, observed, picked))


def _flat(head: SeriesHead | None, size: int) -> Float32:
    if head is None:
        return np.full(size, np.nan, np.float32)
    return torch.cat([t.detach().flatten() for t in head.state_dict().values()]).numpy()


def _unflat(params: np.ndarray, n_features: int, n_bands: int) -> SeriesHead | None:
    if np.isnan(params).all():  # no head (see _flat); inf marks skipped features
        return None
    head = SeriesHead(n_features, n_bands)
    state, start = {}, 0
    for key, value in head.state_dict().items():
        state[key] = torch.from_numpy(params[start:start + value.numel()].copy()).view_as(value)
        start += value.numel()
    head.load_state_dict(state)
    return head.eval()


def head_size(n_features: int, n_bands: int) -> int:
    """Length of a :class:`SeriesHead`'s flat parameters (what the training task returns)."""
    return sum(v.numel() for v in SeriesHead(n_features, n_bands).state_dict().values())


def _train_block(parts: Sequence[tuple[np.ndarray, ...]], *, n_features: int, n_bands: int,
                 seed: int, device: str | None) -> Float32:
    """All chunks' pairs, in global pixel order (as a whole-array run has them) -> the
    trained head's flat parameters (NaN: too few pairs, no head)."""
    index = np.concatenate([p[0] for p in parts])
    order = np.argsort(index, kind="stable")
    inputs, prior, observed = (np.concatenate([p[i] for p in parts])[order] for i in (1, 2, 3))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    head = fit_head(inputs, prior, observed, seed=seed, device=device)
    return _flat(head, head_size(n_features, n_bands))


def _apply_block(stack: np.ndarray, params: np.ndarray, *, n_features: int,
                 n_bands: int) -> Float32:
    feats, prior, _, _ = _split(stack, n_bands)
    return predict(_unflat(params, n_features, n_bands), feats, prior)


def head_candidate(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray,
                   frame: int, nodata: int = 0, seed: int = 0, max_samples: int = MAX_SAMPLES,
                   device: str | None = None, masks: int = HELD_OUT_MASKS) -> Any:
    """(1, C, H, W) float32: the test-time head's prediction of frame ``frame`` of a (T, C,
    H, W) DN cube from its other dates and ``network`` (C, H, W), trained on the frame's
    clear pixels (:func:`adapted_frame` on DN cubes) outside the union of the residual
    correction's held-out masks: ``seed`` and ``masks`` must be the correction's
    (:func:`cloudfree.methods.corrected.correct_stack`) for its self-validation to be
    out-of-sample for the head; ``masks=0`` trains on every clear pixel.

    Lazy when any input is a dask array (nothing is computed): one task gathers the
    chunks' training pairs and trains the tile's head; every chunk then applies it with a
    halo of :data:`HALO_PX` (chunks as given, each at least that wide). The pairs are the
    same, in the same order, as in a whole-array run, so chunked equals whole up to float
    error. ``device``: where the head trains (default: CUDA when the worker has it)."""
    [candidate] = _heads(reflectance, clear, network, days=days, frame=frame, nodata=nodata,
                         seed=seed, max_samples=max_samples, device=device, masks=masks,
                         excludes=(masks > 0,))
    return candidate


def head_pair(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray, frame: int,
              nodata: int = 0, seed: int = 0, max_samples: int = MAX_SAMPLES,
              device: str | None = None, masks: int = HELD_OUT_MASKS) -> tuple[Any, Any]:
    """``(filling, scoring)``, each (1, C, H, W) float32: two heads of
    :func:`head_candidate` on the same features. The *filling* head trains on every clear
    pixel of the frame; the *scoring* head only outside the union of the correction's
    held-out masks (``seed``, ``masks``), so its errors there are out-of-sample: the
    correction chooses its width, and calibrates the interval, on the scoring head
    (``scoring`` of :func:`cloudfree.methods.corrected.correct_stack`), then corrects the
    filling one. On a tile with several dask threads the two trainings run side by side."""
    filling, scoring = _heads(reflectance, clear, network, days=days, frame=frame,
                              nodata=nodata, seed=seed, max_samples=max_samples, device=device,
                              masks=masks, excludes=(False, True))
    return filling, scoring


def _heads(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray, frame: int,
           nodata: int, seed: int, max_samples: int, device: str | None, masks: int,
           excludes: Sequence[bool]) -> list[Any]:
    """One head per entry of ``excludes`` (whether it leaves the held-out union out), all
    on one stack of features: the candidates of :func:`head_candidate`."""
    days = np.asarray(days, np.float64)
    n_bands = reflectance.shape[1]
    height, width = reflectance.shape[-2:]
    n_features = (FEATURE_FRAMES + 2) * n_bands
    block: dict[str, Any] = dict(days=days, frame=frame, nodata=nodata, shape=(height, width),
                                 seed=seed, masks=masks)
    sample_kw: dict[str, Any] = dict(n_bands=n_bands, width=width, seed=seed,
                                     max_samples=max_samples)
    train_kw: dict[str, Any] = dict(n_features=n_features, n_bands=n_bands, seed=seed,
                                    device=device)
    apply_kw: dict[str, Any] = dict(n_features=n_features, n_bands=n_bands)
    if not any(hasattr(a, "dask") for a in (reflectance, clear, network)):
        reflectance = np.asarray(reflectance)
        clear = np.asarray(clear, bool)
        fraction = (~usable_block(reflectance, clear, nodata=nodata)).mean(axis=(1, 2))
        stack = _features_block(reflectance, clear, np.asarray(network, np.float32), fraction,
                                np.arange(height), np.arange(width), **block)
        everything = np.ones(height, bool), np.ones(width, bool)
        counts = _counts_block(stack, n_bands=n_bands)[0, 0]
        out = []
        for exclude in excludes:
            part = _samples_block(stack, np.arange(height), np.arange(width), *everything,
                                  counts, exclude=exclude, **sample_kw)
            out.append(_apply_block(stack, _train_block([part], **train_kw), **apply_kw)[None])
        return out

    import dask.array as da
    from dask.delayed import delayed

    from cloudfree.methods._driver import global_index as _global_index
    from cloudfree.methods._driver import meta as _meta

    refl = da.asarray(reflectance)
    spatial = refl.chunks[-2:]
    clear = da.asarray(clear).astype(bool).rechunk((-1, *spatial))
    network = da.asarray(network).astype(np.float32).rechunk((-1, *spatial))
    usable = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl, "tbyx", clear,
                          "tyx", concatenate=True, meta=_meta(3, bool))
    fraction = (~usable).mean(axis=(1, 2))  # (T,), over the whole tile
    rows_g = da.arange(height, chunks=(spatial[0],))  # global rows/columns of each chunk
    cols_g = da.arange(width, chunks=(spatial[1],))
    stack = da.blockwise(partial(_features_block, **block), "zyx", refl, "tbyx", clear, "tyx",
                         network, "byx", fraction, "t", rows_g, "y", cols_g, "x",
                         new_axes={"z": n_features + 2 * n_bands + 1},
                         concatenate=True, meta=_meta(3, np.float32))
    # a single chunk along an axis has no neighbour to borrow from
    depth_y, depth_x = (HALO_PX if len(c) > 1 else 0 for c in spatial)
    stack_h = da.overlap.overlap(stack, depth={0: 0, 1: depth_y, 2: depth_x},
                                 boundary="none", allow_rechunk=False)
    rows, row_core = _global_index(spatial[0], depth_y)
    cols, col_core = _global_index(spatial[1], depth_x)
    # the whole tile's counts (a lazy reduction over the chunks' cores): the held-out
    # fallback and the sampling rate, the same for every chunk
    counts = da.blockwise(partial(_counts_block, n_bands=n_bands), "yxs", stack, "zyx",
                          new_axes={"s": 2}, adjust_chunks={"y": 1, "x": 1}, concatenate=True,
                          meta=_meta(3, np.float64)).sum(axis=(0, 1))
    tile_counts = counts.to_delayed(optimize_graph=False)[0]
    blocks = stack_h.to_delayed(optimize_graph=False)[0]
    indices = [(i, r, rc, j, c, cc)
               for i, (r, rc) in enumerate(zip(rows.to_delayed(optimize_graph=False),
                                               row_core.to_delayed(optimize_graph=False),
                                               strict=True))
               for j, (c, cc) in enumerate(zip(cols.to_delayed(optimize_graph=False),
                                               col_core.to_delayed(optimize_graph=False),
                                               strict=True))]
    out = []
    for exclude in excludes:
        sample = delayed(partial(_samples_block, exclude=exclude, **sample_kw), pure=True)
        parts = [sample(blocks[i, j], r, c, rc, cc, tile_counts)
                 for i, r, rc, j, c, cc in indices]
        trained = delayed(partial(_train_block, **train_kw), pure=True)(parts)
        params = da.from_delayed(trained, shape=(head_size(n_features, n_bands),),
                                 dtype=np.float32)
        applied = da.blockwise(partial(_apply_block, **apply_kw), "byx", stack_h, "zyx",
                               params, "p", new_axes={"b": n_bands}, concatenate=True,
                               meta=_meta(3, np.float32))
        applied = da.overlap.trim_internal(applied, {0: 0, 1: depth_y, 2: depth_x},
                                           boundary="none")
        out.append(applied[None])
    return out
