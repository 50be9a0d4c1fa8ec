"""The test-time head on dask cubes (:mod:`cloudfree.models.head`): a per-tile reduction.

Each chunk, with the head's halo, stacks the head's features, the prior and the network's
prediction; the training pixels, picked by a hash of their global (row, column), are
gathered from the chunks' cores in global order, so one head is trained per tile exactly
as a whole-array run trains it; every chunk then applies that one head. No seams.

Pixels of the residual correction's held-out masks do not train a head that the
correction scores (each chunk draws its part of the same masks from the whole tile's cloud
fractions and its global rows and columns). On a tile with clear pixels to spare that is
one head, trained outside their union, which also fills; on a smaller or cloudier one a
head trained on every clear pixel fills, and heads cross-fitted on :data:`SCORING_FOLDS`
folds of the masks are scored in its stead (:func:`head_pair`). Which case a tile is,
whether too few pixels are left outside the masks, and the sampling rates, are decided from
the whole tile's pixel counts, a lazy reduction (:func:`cloudfree.models.head.training_pixels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from cloudfree.methods._driver import usable_block
from cloudfree.methods.corrected import HELD_OUT_MASKS
from cloudfree.methods.head_folds import (
    SCORING_FOLDS,
    fold_bit,
    fold_codes,
    fold_composite,
    held_out_folds,
    twin_fills,
)
from cloudfree.models.head import (
    FEATURE_FRAMES,
    HALO_PX,
    MAX_SAMPLES,
    SeriesHead,
    feature_frames,
    features,
    fit_head,
    predict,
    samples,
    training_counts,
    training_pixels,
)

Float32 = NDArray[np.float32]
Bool = NDArray[np.bool_]
#: Which tiles a training runs on (:func:`twin_fills`): all, those whose twin fills, or the
#: others (where the twin is short of pixels to spare).
When = Literal["always", "twin fills", "twin short"]

def _features_block(reflectance: np.ndarray, clear: np.ndarray, network: np.ndarray | None,
                    cloud_fraction: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                    days: np.ndarray, frame: int, nodata: int, shape: tuple[int, int],
                    seed: int, masks: int, folds: int) -> Float32:
    """DN (T, C, h, w), clear (T, h, w), the network's (C, h, w) (None: not an input), the
    tile's cloud fractions and the chunk's global rows and columns -> (F + 2 C + 1, h, w):
    the features, the prior, the target's observed values (NaN where not usable), and the
    :func:`fold_codes` of the correction's held-out masks (``masks`` masks, ``seed``) in
    ``folds`` folds: 0 outside their union."""
    from cloudfree.methods._driver import to_reflectance

    usable = usable_block(reflectance, np.asarray(clear, bool), nodata=nodata)
    code = fold_codes(held_out_folds(usable, cloud_fraction, rows, cols, frame=frame,
                                     shape=shape, seed=seed, masks=masks, folds=folds))
    values = to_reflectance(reflectance)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    frames = feature_frames(cloud_fraction, days, frame)
    feats, prior = features(values, usable, days, frame, frames, network)
    return np.concatenate([feats, prior, values[frame], code[None]]).astype(np.float32)


def _features_block_alone(reflectance: np.ndarray, clear: np.ndarray, cloud_fraction: np.ndarray,
                          rows: np.ndarray, cols: np.ndarray, **kw: Any) -> Float32:
    """:func:`_features_block` without the network's prediction among the inputs."""
    return _features_block(reflectance, clear, None, cloud_fraction, rows, cols, **kw)


def n_head_features(n_bands: int, *, network: bool) -> int:
    """The head's input width: :data:`FEATURE_FRAMES` dates and the prior, [the network's
    prediction,] each ``n_bands`` wide."""
    return (FEATURE_FRAMES + 1 + int(network)) * n_bands


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


def _counts_block(stack: np.ndarray, *, n_bands: int, folds: int) -> np.ndarray:
    """One chunk (no halo) -> (1, 1, 2 + folds): its
    :func:`~cloudfree.models.head.training_counts`, then its candidates outside each fold."""
    trainable, held = _trainable(stack, n_bands)
    outside = [np.count_nonzero(trainable & ~fold_bit(stack[-1], f)) for f in range(folds)]
    return np.concatenate([training_counts(trainable, held), outside])[None, None]


def _samples_block(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_core: np.ndarray,
                   col_core: np.ndarray, counts: np.ndarray, *, n_bands: int, width: int,
                   max_samples: int, seed: int, exclude: bool = True,
                   fold: int | None = None, when: When = "always") -> tuple[np.ndarray, ...]:
    """One halo'd chunk's training pairs over its core (``counts``: the whole tile's, of
    :func:`_counts_block`), with their global linear index; outside the held-out union
    (``exclude``), outside fold ``fold`` of it, or everywhere (``exclude=False``). None on
    the tiles ``when`` leaves out (:data:`When`)."""
    feats, prior, observed, _ = _split(stack, n_bands)
    counts = np.asarray(counts, np.float64).ravel()
    if when != "always" and twin_fills(counts, max_samples) != (when == "twin fills"):
        return (np.empty(0, np.int64), np.empty((0, len(feats), 3, 3), np.float32),
                np.empty((0, n_bands), np.float32), np.empty((0, n_bands), np.float32))
    trainable, held = _trainable(stack, n_bands)
    trainable &= row_core[:, None] & col_core[None, :]
    if fold is not None:
        held = fold_bit(stack[-1], fold)
        counts = counts[[0, 2 + fold]]
    elif not exclude:
        held = np.zeros_like(held)
        counts = np.array([counts[0], counts[0]])
    else:
        counts = counts[:2]
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
    return _train(parts, n_features=n_features, n_bands=n_bands, seed=seed, device=device)


def _filling_block(parts: Sequence[tuple[np.ndarray, ...]], twin: np.ndarray,
                   counts: np.ndarray, *, max_samples: int, **kw: Any) -> Float32:
    """:func:`_train_block` for the filling head of :func:`head_pair`; the ``twin``'s
    parameters when :func:`twin_fills` (then ``parts`` are empty)."""
    if twin_fills(counts, max_samples):
        return np.asarray(twin, np.float32)
    return _train(parts, **kw)


def _train(parts: Sequence[tuple[np.ndarray, ...]], *, n_features: int, n_bands: int,
           seed: int, device: str | None) -> Float32:
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


def _apply_pair_block(stack: np.ndarray, counts: np.ndarray, filling: np.ndarray,
                      scoring: np.ndarray, *cross: np.ndarray, n_features: int, n_bands: int,
                      max_samples: int) -> Float32:
    """The heads of :func:`head_pair` on one chunk (``counts``: the whole tile's, of
    :func:`_counts_block`) -> (2 C, h, w): the filling head's prediction, then what is
    scored: the ``scoring`` head's where the twin fills (:func:`twin_fills`) or no
    ``cross`` heads are given, once when it is the filling head; else the
    :func:`fold_composite` of the cross-fitted heads on the folds."""
    kw: dict[str, Any] = dict(n_features=n_features, n_bands=n_bands)
    filled = _apply_block(stack, filling, **kw)
    if not cross or twin_fills(counts, max_samples):
        if np.array_equal(filling, scoring, equal_nan=True):
            return np.concatenate([filled, filled])
        return np.concatenate([filled, _apply_block(stack, scoring, **kw)])
    folds = [fold_bit(stack[-1], f) for f in range(len(cross))]
    scored = fold_composite(filled, folds, lambda f: _apply_block(stack, cross[f], **kw))
    return np.concatenate([filled, scored])


def head_candidate(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray,
                   frame: int, nodata: int = 0, seed: int = 0, max_samples: int = MAX_SAMPLES,
                   device: str | None = None, masks: int = HELD_OUT_MASKS) -> Any:
    """(1, C, H, W) float32: the test-time head's prediction of frame ``frame`` of a (T, C,
    H, W) DN cube from its other dates [and ``network`` (C, H, W); None: not an input],
    trained on the frame's clear pixels (:func:`adapted_frame` on DN cubes) outside the
    union of the residual correction's held-out masks: ``seed`` and ``masks`` must be the
    correction's (:func:`cloudfree.methods.corrected.correct_stack`) for its
    self-validation to be out-of-sample for the head; ``masks=0`` trains on every clear pixel.

    Lazy when any input is a dask array (nothing is computed): one task gathers the
    chunks' training pairs and trains the tile's head; every chunk then applies it with a
    halo of :data:`HALO_PX` (chunks as given, each at least that wide). The pairs are the
    same, in the same order, as in a whole-array run, so chunked equals whole up to float
    error. ``device``: where the head trains (default: CUDA when the worker has it)."""
    stage = _HeadStage(reflectance, clear, network, days=days, frame=frame, nodata=nodata,
                       seed=seed, max_samples=max_samples, device=device, masks=masks)
    params = stage.train(exclude=masks > 0)
    return stage.apply(params, params)[None, :stage.n_bands]


def head_pair(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray, frame: int,
              nodata: int = 0, seed: int = 0, max_samples: int = MAX_SAMPLES,
              device: str | None = None, masks: int = HELD_OUT_MASKS,
              resources: dict[str, int] | None = None) -> tuple[Any, Any]:
    """``(filling, scoring)``, each (1, C, H, W) float32: heads of :func:`head_candidate`
    on the same features, the one that fills and what the correction scores on its
    held-out masks (``seed``, ``masks``; ``scoring`` of
    :func:`cloudfree.methods.corrected.correct_stack`, which chooses the width and
    calibrates the interval on it, then corrects the filling one). Every scored error is
    out-of-sample:

    - where the tile has so many clear pixels outside the masks' union that a head would
      not learn from more (:func:`twin_fills`), one head trains outside the union, fills
      and is scored (trained and applied once);
    - else the filling head trains on every clear pixel, and on the held-out pixels the
      scored prediction is that of heads cross-fitted on :data:`SCORING_FOLDS` folds of
      the masks (:func:`held_out_folds`), each trained outside its fold and scored on it
      (outside the union: the filling head's own). A single twin trained outside all the
      masks was much weaker than the filling head there, and would have kept the prior
      from ever being chosen on such tiles.

    ``resources``: the dask annotation of the trainings and predictions (torch: on a GPU
    worker they run on CUDA)."""
    stage = _HeadStage(reflectance, clear, network, days=days, frame=frame, nodata=nodata,
                       seed=seed, max_samples=max_samples, device=device, masks=masks,
                       resources=resources)
    both = stage.pair()
    n = stage.n_bands
    return both[None, :n], both[None, n:]


def head_and_prior(reflectance: Any, clear: Any, network: Any, *, days: np.ndarray,
                   frame: int, nodata: int = 0, seed: int = 0, max_samples: int = MAX_SAMPLES,
                   device: str | None = None, masks: int = HELD_OUT_MASKS,
                   resources: dict[str, int] | None = None) -> tuple[Any, Any, Any]:
    """``(candidates, scoring, fills)`` for the correction
    (:func:`cloudfree.methods.corrected.correct_stack`): each (2, C, H, W) float32, the
    filling head of :func:`head_pair` and its prior (the interpolation at the target date
    from the other dates, as the head's features hold it: ``interpolate_corrected``'s
    candidate), and what the self-validation scores for them (:func:`head_pair`'s scored
    prediction, and the prior itself, both out-of-sample, so that where the head cannot
    learn the prior wins); ``fills``, whether the scored head is the one that fills
    (:func:`twin_fills`; a lazy 0-d bool when lazy), the correction's ``select_level``.
    Arguments as :func:`head_pair`."""
    stage = _HeadStage(reflectance, clear, network, days=days, frame=frame, nodata=nodata,
                       seed=seed, max_samples=max_samples, device=device, masks=masks,
                       resources=resources)
    both = stage.pair()
    n = stage.n_bands
    prior = stage.prior()
    if not stage.lazy:
        fills = twin_fills(stage.counts, max_samples)
        return np.stack([both[:n], prior]), np.stack([both[n:], prior]), fills
    import dask.array as da
    from dask.delayed import delayed

    prior = prior.rechunk(both[:n].chunks)
    fills = da.from_delayed(delayed(twin_fills, pure=True)(stage.counts, max_samples),
                            shape=(), dtype=bool)
    return da.stack([both[:n], prior]), da.stack([both[n:], prior]), fills


class _HeadStage:
    """One stack of the head's features over a cube (numpy, or dask with a halo of
    :data:`HALO_PX`), and the heads trained and applied on it."""

    def __init__(self, reflectance: Any, clear: Any, network: Any, *, days: np.ndarray,
                 frame: int, nodata: int, seed: int, max_samples: int, device: str | None,
                 masks: int, resources: dict[str, int] | None = None) -> None:
        days = np.asarray(days, np.float64)
        self.resources = resources
        self.n_bands = n_bands = reflectance.shape[1]
        height, width = reflectance.shape[-2:]
        self.n_features = n_features = n_head_features(n_bands, network=network is not None)
        self.folds = SCORING_FOLDS
        block: dict[str, Any] = dict(days=days, frame=frame, nodata=nodata,
                                     shape=(height, width), seed=seed, masks=masks,
                                     folds=self.folds)
        self.sample_kw: dict[str, Any] = dict(n_bands=n_bands, width=width, seed=seed,
                                              max_samples=max_samples)
        self.train_kw: dict[str, Any] = dict(n_features=n_features, n_bands=n_bands, seed=seed,
                                             device=device)
        self.max_samples = max_samples
        self.lazy = any(hasattr(a, "dask") for a in (reflectance, clear, network))
        self.stack: Any = None  # numpy, or dask with the halo
        self.counts: Any = None  # the tile's training counts, or their delayed
        if not self.lazy:
            reflectance = np.asarray(reflectance)
            clear = np.asarray(clear, bool)
            fraction = (~usable_block(reflectance, clear, nodata=nodata)).mean(axis=(1, 2))
            net = None if network is None else np.asarray(network, np.float32)
            self.stack = _features_block(reflectance, clear, net, fraction, np.arange(height),
                                         np.arange(width), **block)
            self.rows, self.cols = np.arange(height), np.arange(width)
            self.counts = _counts_block(self.stack, n_bands=n_bands, folds=self.folds)[0, 0]
            return
        self._lazy_stack(reflectance, clear, network, block)

    def _lazy_stack(self, reflectance: Any, clear: Any, network: Any,
                    block: dict[str, Any]) -> None:
        import dask.array as da

        from cloudfree.methods._driver import global_index as _global_index
        from cloudfree.methods._driver import meta as _meta

        height, width = reflectance.shape[-2:]
        refl = da.asarray(reflectance)
        spatial = refl.chunks[-2:]
        clear = da.asarray(clear).astype(bool).rechunk((-1, *spatial))
        nodata = block["nodata"]
        usable = da.blockwise(partial(usable_block, nodata=nodata), "tyx", refl, "tbyx", clear,
                              "tyx", concatenate=True, meta=_meta(3, bool))
        fraction = (~usable).mean(axis=(1, 2))  # (T,), over the whole tile
        rows_g = da.arange(height, chunks=(spatial[0],))  # global rows/columns of each chunk
        cols_g = da.arange(width, chunks=(spatial[1],))
        inputs: list[Any] = [refl, "tbyx", clear, "tyx"]
        function: Any = partial(_features_block_alone, **block)
        if network is not None:
            network = da.asarray(network).astype(np.float32).rechunk((-1, *spatial))
            inputs += [network, "byx"]
            function = partial(_features_block, **block)
        stack = da.blockwise(function, "zyx", *inputs, fraction, "t", rows_g, "y", cols_g, "x",
                             new_axes={"z": self.n_features + 2 * self.n_bands + 1},
                             concatenate=True, meta=_meta(3, np.float32))
        # a single chunk along an axis has no neighbour to borrow from
        self.depth = tuple(HALO_PX if len(c) > 1 else 0 for c in spatial)
        self.stack = da.overlap.overlap(stack, depth={0: 0, 1: self.depth[0],
                                                      2: self.depth[1]},
                                        boundary="none", allow_rechunk=False)
        rows, row_core = _global_index(spatial[0], self.depth[0])
        cols, col_core = _global_index(spatial[1], self.depth[1])
        # the whole tile's counts (a lazy reduction over the chunks' cores): the held-out
        # fallback and the sampling rate, the same for every chunk
        counts = da.blockwise(partial(_counts_block, n_bands=self.n_bands, folds=self.folds),
                              "yxs", stack, "zyx", new_axes={"s": 2 + self.folds},
                              adjust_chunks={"y": 1, "x": 1},
                              concatenate=True, meta=_meta(3, np.float64)).sum(axis=(0, 1))
        self.counts_array = counts
        self.counts = counts.to_delayed(optimize_graph=False)[0]
        self.blocks = self.stack.to_delayed(optimize_graph=False)[0]
        lazy_index = (a.to_delayed(optimize_graph=False) for a in (rows, row_core, cols, col_core))
        r, rc, c, cc = lazy_index
        self.indices = [(i, r[i], rc[i], j, c[j], cc[j])
                        for i in range(len(r)) for j in range(len(c))]

    def _torch_tasks(self) -> Any:
        """The dask annotation of the tasks that run torch (the trainings, the
        predictions); only theirs, not that of the tasks they depend on."""
        import contextlib

        if not self.resources:
            return contextlib.nullcontext()
        from dask.base import annotate

        return annotate(resources=self.resources)

    def train(self, *, exclude: bool = True, fold: int | None = None, when: When = "always",
              twin: Any = None) -> Any:
        """The flat parameters of the head trained outside the held-out union
        (``exclude``), outside its ``fold``, or on every clear pixel; NaN (no head) on the
        tiles ``when`` leaves out. With ``twin`` (the twin's parameters): those on the tiles
        where it fills, else trained."""
        when = "twin short" if twin is not None else when
        sample_kw = dict(self.sample_kw, exclude=exclude, fold=fold, when=when)
        if not self.lazy:
            everything = np.ones(len(self.rows), bool), np.ones(len(self.cols), bool)
            parts = [_samples_block(self.stack, self.rows, self.cols, *everything, self.counts,
                                    **sample_kw)]
            if twin is None:
                return _train_block(parts, **self.train_kw)
            return _filling_block(parts, twin, self.counts, max_samples=self.max_samples,
                                  **self.train_kw)

        import dask.array as da
        from dask.delayed import delayed

        sample = delayed(partial(_samples_block, **sample_kw), pure=True)
        parts = [sample(self.blocks[i, j], r, c, rc, cc, self.counts)
                 for i, r, rc, j, c, cc in self.indices]
        if twin is None:
            trained = delayed(partial(_train_block, **self.train_kw), pure=True)(parts)
        else:
            trained = delayed(partial(_filling_block, max_samples=self.max_samples,
                                      **self.train_kw), pure=True)(
                parts, twin.to_delayed(optimize_graph=False)[0], self.counts)
        if self.resources:
            # the training's own layer only: annotating the call would annotate the tasks
            # it depends on (the samples, and through them the cube's reads) as well
            trained.dask.layers[trained.key].annotations = {"resources": self.resources}
        return da.from_delayed(trained, shape=(head_size(self.n_features, self.n_bands),),
                               dtype=np.float32)

    def prior(self) -> Any:
        """(C, H, W): the head's prior, from the features' stack (no halo)."""
        n = self.n_bands
        if not self.lazy:
            return np.asarray(_split(self.stack, n)[1], np.float32)
        import dask.array as da

        return da.overlap.trim_internal(self.stack[-2 * n - 1:-n - 1],
                                        {0: 0, 1: self.depth[0], 2: self.depth[1]},
                                        boundary="none")

    def pair(self) -> Any:
        """(2 C, H, W): the filling head's prediction, then the scored one
        (:func:`head_pair`)."""
        twin = self.train(exclude=True, when="twin fills")
        filling = self.train(exclude=False, twin=twin)
        cross = [self.train(fold=f, when="twin short") for f in range(self.folds)]
        return self.apply(filling, twin, cross)

    def apply(self, filling: Any, scoring: Any, cross: Sequence[Any] = ()) -> Any:
        """(2 C, H, W): the heads' predictions (:func:`_apply_pair_block`)."""
        apply_kw: dict[str, Any] = dict(n_features=self.n_features, n_bands=self.n_bands,
                                        max_samples=self.max_samples)
        if not self.lazy:
            return _apply_pair_block(self.stack, self.counts, filling, scoring, *cross,
                                     **apply_kw)
        import dask.array as da

        from cloudfree.methods._driver import meta as _meta

        heads = [self.counts_array, "k", filling, "p", scoring, "q"]
        for f, params in enumerate(cross):
            heads += [params, "rstuvw"[f]]
        with self._torch_tasks():
            applied = da.blockwise(partial(_apply_pair_block, **apply_kw), "byx", self.stack,
                                   "zyx", *heads, new_axes={"b": 2 * self.n_bands},
                                   concatenate=True, meta=_meta(3, np.float32))
        return da.overlap.trim_internal(applied, {0: 0, 1: self.depth[0], 2: self.depth[1]},
                                        boundary="none")
