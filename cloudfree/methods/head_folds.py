"""Which heads the residual correction scores on its held-out masks, on any tile.

The test-time head (:mod:`cloudfree.models.head`) must not train on the pixels its
self-validation scores it on. On a tile with clear pixels to spare, one twin trained outside
the masks' union fills and is scored (:func:`twin_fills`). On a smaller or cloudier tile the
head that fills trains on every clear pixel, and heads cross-fitted on :data:`SCORING_FOLDS`
folds of the masks (:func:`held_out_folds`) are scored in its stead, composed by
:func:`fold_composite`. The dask path (:mod:`cloudfree.methods._head_stage`) and the
whole-array one (:func:`cloudfree.methods.generator.head_pair_frame`) share these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from cloudfree.methods.corrected import held_out_masks

Float32 = NDArray[np.float32]
Bool = NDArray[np.bool_]

#: Folds of the held-out masks that the scored heads are cross-fitted on where the tile has
#: no clear pixels to spare (:func:`held_out_folds`): each trains outside its fold's masks
#: and is scored on them. On small tiles the masks hold most clear pixels, so a single twin
#: trained outside all of them was much weaker than the head that fills (its held-out error
#: up to 1.9 times the prior's where the filling head beat the prior); with two folds each
#: scored head keeps about half of them. Measured on 70 samples of the real cases
#: (l2a_31UDS_118, its 8-bit RGB, ndvi_slovenia_68; seed 1): the interval covered 0.903,
#: 0.921 and 0.916 of the hidden values, against 0.931, 0.945 and 0.903 with the twin; four
#: folds (one mask each) covered 0.894, 0.910 and 0.906, at twice the cost.
SCORING_FOLDS = 2


def twin_fills(counts: np.ndarray, max_samples: int) -> bool:
    """Whether the scoring twin fills as well (no other head is trained): when the tile has
    at least ``max_samples`` candidate pixels outside the held-out union (the second of its
    :func:`~cloudfree.models.head.training_counts`), a head on every clear pixel would train
    on about ``max_samples`` pixels picked at a rate below 1, and differ only in where some
    of its pixels lie. Below that (a small or very cloudy tile) the filling head has more
    pixels to learn from, and is trained, with the cross-fitted heads that are scored in its
    stead."""
    return bool(np.asarray(counts, np.float64).ravel()[1] >= max_samples)


def held_out_folds(usable: Bool, cloud_fraction: np.ndarray, rows: np.ndarray,
                   cols: np.ndarray, *, frame: int, shape: tuple[int, int], seed: int,
                   masks: int, folds: int = SCORING_FOLDS) -> list[Bool]:
    """``folds`` (h, w) bool unions of the residual correction's held-out masks
    (:func:`cloudfree.methods.corrected.held_out_masks`, same arguments): mask ``m`` is in
    fold ``m * folds // masks``. A head cross-fitted on fold ``f`` trains outside it and is
    scored on it."""
    out = [np.zeros(np.shape(usable)[1:], bool) for _ in range(folds)]
    for m, mask in enumerate(held_out_masks(usable, cloud_fraction, rows, cols, frame=frame,
                                            shape=shape, seed=seed, masks=masks)):
        out[m * folds // masks] |= mask
    return out


def fold_codes(folds: Sequence[Bool]) -> Float32:
    """(h, w) float32: bit ``f`` set where fold ``f`` of :func:`held_out_folds` holds the
    pixel (0 outside the held-out union); exact in float32 for up to 24 folds."""
    code = np.zeros(np.shape(folds[0]), np.float32)
    for f, fold in enumerate(folds):
        code += np.float32(2 ** f) * fold
    return code


def fold_bit(code: np.ndarray, fold: int) -> Bool:
    """Where bit ``fold`` of :func:`fold_codes` is set."""
    bits: Bool = (np.asarray(code).astype(np.int64) >> fold) & 1 == 1
    return bits


def fold_composite(filled: np.ndarray, folds: Sequence[Bool],
                   predict: Callable[[int], np.ndarray]) -> Float32:
    """The scored prediction where the twin does not fill: the filling head's ``filled``
    (C, h, w) outside the folds' union, and on each fold ``f`` the prediction
    ``predict(f)`` of the head cross-fitted on it (a pixel in two folds: the first's).
    ``predict`` is called only for folds that hold a pixel not already taken."""
    scored = np.array(filled, np.float32)
    taken = np.zeros(scored.shape[1:], bool)
    for f, fold in enumerate(folds):
        here = fold & ~taken
        if here.any():
            scored[:, here] = predict(f)[:, here]
        taken |= fold
    return scored
