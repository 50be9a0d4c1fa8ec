"""``geomedian``: the multi-band geometric median of the clear observations, as DEA's.

Weiszfeld steps with the Vardi–Zhang rule for iterates on an observation, accelerated by
SQUAREM, started from the per-band median and iterated on all pixels of a block at once
(converged pixels drop out) until a pixel's step is below ``tol`` times its norm plus
spread, or ``max_iter`` cycles (:class:`~cloudfree.errors.GeomedianNotConvergedWarning`
then). A median on an observation (a triangle with an angle of 120° or more) is detected
exactly. With two observations, or one band, any point of the middle segment is a median:
the midpoint is taken, as ``median``.

``source_day`` is the mean date weighted by the final Weiszfeld weights
``1 / max(distance, tol·|y|)``; ``fill`` is ``observed`` for a single clear observation,
``composited`` for several.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree.errors import GeomedianNotConvergedWarning, InvalidParameterError
from cloudfree.methods._driver import check_number
from cloudfree.methods._provenance import blend_fill
from cloudfree.methods.median import nanmedian_time

DEFAULTS: dict[str, Any] = {"tol": 1e-7, "max_iter": 200}

_VERTEX_CHECK_FROM = 4  # geomedian cycles before testing whether an observation is optimal
_VERTEX_MARGIN = 1e-4  # relative margin on the pull at an observation
_BLOCK_VALUES = 1 << 22  # geomedian works through pixels in blocks of about this many values


def _distances(points: NDArray[Any], y: NDArray[Any], base: NDArray[Any] | None = None) -> NDArray[Any]:
    """(T, n) Euclidean distances over bands from (T, C, n) points to (C, n) estimates;
    ``base`` (T, n), if given, is added to the squares first (``inf`` marks unusable)."""
    dist2 = np.zeros(points.shape[::2], points.dtype) if base is None else base.copy()
    diff = np.empty(points.shape[::2], points.dtype)
    for band in range(points.shape[1]):
        np.subtract(points[:, band], y[band], out=diff)
        np.multiply(diff, diff, out=diff)
        dist2 += diff
    return np.sqrt(dist2, out=dist2)


def _weiszfeld_step(points: NDArray[Any], usable: NDArray[Any], base: NDArray[Any], y: NDArray[Any]
                    ) -> tuple[NDArray[Any], NDArray[Any]]:
    """One Weiszfeld step with the Vardi–Zhang rule, for n pixels at once.

    points: (T, C, n) with NaN replaced by 0; usable: (T, n); base: (T, n) 0 where
    usable, ``inf`` where not; y: (C, n). Returns the next estimate (C, n) and the
    objective at ``y`` (n,).
    """
    dist = _distances(points, y, base)  # inf where unusable
    objective = np.sum(dist, axis=0, where=usable)
    with np.errstate(divide="ignore"):
        inv = np.reciprocal(dist)  # 0 where unusable, inf on an observation
    coincide = np.isinf(inv)
    on_any = coincide.any()
    if on_any:
        inv[coincide] = 0
    total = inv.sum(axis=0)
    weighted = np.einsum("tn,tcn->cn", inv, points)
    if not on_any:
        return weighted / total, objective
    has_weight = total > 0
    mean = np.where(has_weight, weighted / np.where(has_weight, total, 1), y)
    # Vardi & Zhang (2000): when y sits on observations, move only if the pull of the
    # others exceeds their count; this also settles exact-median cases at once.
    n_on = coincide.sum(axis=0).astype(points.dtype)
    pull = np.sqrt((((mean - y) * total) ** 2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rinv = np.where(pull > 0, n_on / pull, np.where(n_on > 0, np.inf, 0.0))
    keep = np.minimum(1.0, rinv).astype(points.dtype)
    nxt = np.maximum(0.0, 1.0 - rinv).astype(points.dtype) * mean + np.where(keep > 0, keep * y, 0)
    return nxt, objective


def _squarem_cycle(points: NDArray[Any], usable: NDArray[Any], base: NDArray[Any],
                   y: NDArray[Any]) -> NDArray[Any]:
    """Three Weiszfeld steps accelerated by SQUAREM (Varadhan & Roland 2008).

    Weiszfeld is a majorise-minimise map and converges only linearly, very slowly when
    the median lies near a data point; the squared extrapolation fixes that. The
    extrapolated point is kept only where its objective is no higher than after one
    plain step, so the objective never increases from cycle to cycle.
    """
    y1, _ = _weiszfeld_step(points, usable, base, y)
    y2, f_plain = _weiszfeld_step(points, usable, base, y1)  # the objective at y1
    r = y1 - y
    v = y2 - y1 - r
    r_norm, v_norm = np.sqrt((r ** 2).sum(axis=0)), np.sqrt((v ** 2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.minimum(np.where(v_norm > 0, -r_norm / v_norm, -1.0), -1.0)
    extrapolated = y - 2 * alpha * r + alpha ** 2 * v
    y3, f_extrapolated = _weiszfeld_step(points, usable, base, extrapolated)
    return np.where(f_extrapolated <= f_plain, y3, y2)


def _objective(points: NDArray[Any], usable: NDArray[Any], y: NDArray[Any]) -> NDArray[Any]:
    """(n,) sum of distances from the usable observations to ``y``."""
    objective: NDArray[Any] = np.sum(_distances(points, y), axis=0, where=usable)
    return objective


def _vertex_step(points: NDArray[Any], usable: NDArray[Any], base: NDArray[Any],
                 y: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The observation nearest to ``y``, whether it is the geometric median, and a
    Newton-like jump off it.

    Weiszfeld approaches a median on or near an observation (a triangle with an angle
    near 120°) only sublinearly. At observation ``x`` (``m`` copies), the others pull
    with ``R = Σ (x_t - x) / |x_t - x|``; ``x`` is optimal when ``|R| <= m`` (the
    Vardi–Zhang rule); otherwise the median lies about ``(|R| - m) / (uᵀHu)`` along
    ``u = R / |R|``, with ``H`` the Hessian of the others' distances.
    """
    nearest = np.argmin(_distances(points, y, base), axis=0)
    vertex = np.take_along_axis(points, nearest[None, None], axis=0)[0]
    dist = _distances(points, vertex, base)
    on = dist == 0
    inv = np.zeros_like(dist)
    np.divide(1.0, dist, out=inv, where=~on)
    pull = np.einsum("tn,tcn->cn", inv, points) - vertex * inv.sum(axis=0)
    pull_norm = np.sqrt((pull ** 2).sum(axis=0))
    copies = on.sum(axis=0)
    # a margin keeps float rounding from snapping collinear cases (any point between two
    # observations is a median) onto an end
    optimal = pull_norm <= copies * (1 - _VERTEX_MARGIN)
    direction = pull / np.where(pull_norm > 0, pull_norm, 1)
    along = np.zeros_like(dist)
    for band in range(points.shape[1]):
        along += direction[band] * (points[:, band] - vertex[band])
    curvature = inv.sum(axis=0) - (along ** 2 * inv ** 3).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        length = np.where((curvature > 0) & (pull_norm > copies * (1 + _VERTEX_MARGIN)),
                          (pull_norm - copies) / curvature, 0)
    return vertex, optimal, vertex + length.astype(points.dtype) * direction


def geomedian(values: NDArray[Any], usable: NDArray[Any], days: NDArray[Any], count: NDArray[Any], params: dict[str, Any],
              start: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """The geometric median of each pixel's usable observations (see the module doc of
    :mod:`cloudfree.methods._composite`), from ``start``, the per-band median (C, H, W):
    returns reflectance (C, H, W) and the Weiszfeld-weighted source day (H, W)."""
    n_dates, n_bands, height, width = values.shape
    n_px = height * width
    flat = values.reshape(n_dates, n_bands, n_px)
    flat_usable = usable.reshape(n_dates, n_px)
    flat_count = count.reshape(n_px)
    # start from the per-band median: exact for one observation, close otherwise
    estimate = start.reshape(n_bands, n_px).astype(np.float64)
    source = np.full(n_px, np.nan)
    single = flat_count == 1
    source[single] = days[np.argmax(flat_usable[:, single], axis=0)]
    tol, max_iter = params["tol"], params["max_iter"]
    not_converged = 0
    # Two observations: every point between them is a median; the start, their
    # midpoint, is taken. One band: the geometric median is the median (the midpoint of
    # the middle pair for an even count), the start again. Otherwise: iterate.
    iterations = max_iter if n_bands > 1 else 0
    pair = flat_count == 2
    source[pair] = np.where(flat_usable[:, pair], days[:, None], 0).sum(axis=0) / 2
    multi = np.flatnonzero(flat_count >= 3)
    block_px = max(1024, _BLOCK_VALUES // (n_dates * n_bands))
    for first in range(0, multi.size, block_px):
        index = multi[first:first + block_px]
        origin = estimate[:, index]
        # Centred on the start, float32 keeps ~1e-7 of the observations' spread rather
        # than of their magnitude, at half the memory traffic of float64.
        points = np.nan_to_num(flat[:, :, index] - origin.astype(np.float32))
        ok = flat_usable[:, index]
        base = np.where(ok, np.float32(0), np.float32(np.inf))
        y = np.zeros_like(origin, dtype=np.float32)
        spread = _objective(points, ok, y) / ok.sum(axis=0)
        threshold = (tol * (np.sqrt((origin ** 2).sum(axis=0)) + spread)).astype(np.float32)
        alive = np.arange(index.size)  # positions in ``index`` still iterating
        w_points, w_ok, w_base, w_y, w_threshold = points, ok, base, y, threshold
        for iteration in range(iterations):
            nxt = _squarem_cycle(w_points, w_ok, w_base, w_y)
            done = np.sqrt(((nxt - w_y) ** 2).sum(axis=0)) <= w_threshold
            if iteration >= _VERTEX_CHECK_FROM:  # the few slow pixels left
                vertex, optimal, jump = _vertex_step(w_points, w_ok, w_base, nxt)
                exact = w_points.astype(np.float64)  # objective differences are tiny here
                better = _objective(exact, w_ok, jump) < _objective(exact, w_ok, nxt)
                nxt = np.where(optimal, vertex, np.where(better, jump, nxt))
                done |= optimal
            w_y = nxt
            if done.any():
                y[:, alive[done]] = w_y[:, done]
                keep = ~done
                alive, w_points, w_ok = alive[keep], w_points[:, :, keep], w_ok[:, keep]
                w_base, w_y, w_threshold = w_base[:, keep], w_y[:, keep], w_threshold[keep]
                if alive.size == 0:
                    break
        if alive.size and iterations:
            y[:, alive] = w_y
            not_converged += alive.size
        estimate[:, index] = origin + y
        # provenance: the dates weighted by the final Weiszfeld weights
        dist = _distances(points, y).astype(np.float64)
        weight = np.where(ok, 1.0 / np.maximum(dist, np.maximum(threshold, 1e-30)), 0.0)
        source[index] = (weight * days[:, None]).sum(axis=0) / weight.sum(axis=0)
    if not_converged:
        warnings.warn(
            f"geomedian: {not_converged} pixels did not converge to tol={tol} in "
            f"max_iter={max_iter} iterations; raise max_iter or tol",
            GeomedianNotConvergedWarning, stacklevel=4,
        )
    refl = estimate.reshape(n_bands, height, width)
    return refl, source.reshape(height, width)


def check(params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """``tol`` > 0 and ``max_iter`` an integer >= 1, checked in place."""
    check_number(params, "tol", positive=True)
    it = params["max_iter"]
    if isinstance(it, bool) or not isinstance(it, int | np.integer) or it < 1:
        raise InvalidParameterError("max_iter", it, "give an integer >= 1")
    params["max_iter"] = int(it)
    return params


def core(values: NDArray[Any], usable: NDArray[np.bool_], days: NDArray[np.float64],
         target_day: float, params: dict[str, Any], neighbourhood: NDArray[Any] | None = None
         ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """(reflectance, source day, fill) of a (T, C, H, W) stack NaN exactly where not usable."""
    count = usable.sum(axis=0)
    # start from the per-band median: exact for one observation, close otherwise
    refl, source = geomedian(values, usable, days, count, params, nanmedian_time(values))
    return refl, source, blend_fill(count)
