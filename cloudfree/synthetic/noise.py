"""Seeded, stateless randomness of the synthetic world: integer hashes and fractal Perlin noise.

Every value is a pure function of a seed and *world* integer keys or coordinates, so any
window of the world computes the same numbers wherever it starts and however large it is.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Integer keys of :func:`hash_u32`: a Python int or an integer array (broadcast).
Key = NDArray[np.integer[Any]] | NDArray[np.floating[Any]] | int


def _fmix32(h: NDArray[np.uint32]) -> NDArray[np.uint32]:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def hash_u32(seed: int, *keys: Key) -> NDArray[np.uint32]:
    """Stateless 32-bit hash of integer keys (broadcast): world-consistent randomness."""
    with np.errstate(over="ignore"):
        h = _fmix32(np.asarray((seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF, np.uint32))
        for key in keys:
            k = (np.asarray(key, np.int64) & 0xFFFFFFFF).astype(np.uint32)
            h = _fmix32(h ^ (_fmix32(k) + np.uint32(0x9E3779B9) + (h << np.uint32(6))))
    return h


def uniform(seed: int, *keys: Key) -> NDArray[np.float32]:
    """Uniform [0, 1) from :func:`hash_u32`."""
    return hash_u32(seed, *keys) * np.float32(2.0**-32)


def subseed(seed: int, name: str) -> int:
    """A named, independent seed derived from ``seed``."""
    return int(hash_u32(seed, *(ord(c) for c in name)))


def _gradient_noise(
    rows: NDArray[np.floating[Any]], cols: NDArray[np.floating[Any]], seed: int
) -> NDArray[np.float32]:
    """One octave of 2-D Perlin noise at lattice coordinates ``rows`` x ``cols``."""
    r0, c0 = np.floor(rows), np.floor(cols)
    fy, fx = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    ir, ic = r0.astype(np.int64), c0.astype(np.int64)
    lat_r = np.arange(ir[0], ir[-1] + 2)
    lat_c = np.arange(ic[0], ic[-1] + 2)
    angle = hash_u32(seed, lat_r[:, None], lat_c[None, :]) * (2 * np.pi / 2.0**32)
    grad_c, grad_r = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    rows_idx, cols_idx = ir - lat_r[0], ic - lat_c[0]

    def corner(dr: int, dc: int) -> NDArray[np.float32]:
        # Two small gathers: lattice rows first, then columns (indices are separable).
        gc = grad_c[rows_idx + dr][:, cols_idx + dc]
        gr = grad_r[rows_idx + dr][:, cols_idx + dc]
        gc *= (fx - dc)[None, :]
        gr *= (fy - dr)[:, None]
        gc += gr
        corner_value: NDArray[np.float32] = gc
        return corner_value

    u = (fx * fx * fx * (fx * (fx * 6 - 15) + 10))[None, :]
    v = (fy * fy * fy * (fy * (fy * 6 - 15) + 10))[:, None]
    top = corner(0, 0)
    top += u * (corner(0, 1) - top)
    bottom = corner(1, 0)
    bottom += u * (corner(1, 1) - bottom)
    noise: NDArray[np.float32] = top + v * (bottom - top)
    return noise


def perlin(
    shape: tuple[int, int],
    *,
    scale_px: float | tuple[float, float],
    octaves: int = 4,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    seed: int = 0,
    origin: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.float32]:
    """Fractal (fBm) Perlin noise, vectorised, deterministic and tileable over the world.

    Args:
        shape: (rows, cols) of the window.
        scale_px: feature size of the first octave in pixels; (rows, cols) for anisotropy.
        octaves: number of octaves summed.
        persistence: amplitude ratio of successive octaves.
        lacunarity: frequency ratio of successive octaves.
        seed: selects the noise field.
        origin: world pixel (row, col) of the window's top-left pixel. Windows of one field
            with adjacent origins join seamlessly.

    Returns:
        float32 array in [-1, 1] with mean about 0.
    """
    scale_r, scale_c = scale_px if isinstance(scale_px, tuple) else (scale_px, scale_px)
    rows = origin[0] + np.arange(shape[0]) + 0.5
    cols = origin[1] + np.arange(shape[1]) + 0.5
    total = np.zeros(shape, np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        freq = lacunarity**octave
        octave_seed = int(hash_u32(seed, octave))
        total += np.float32(amplitude) * _gradient_noise(
            rows * freq / scale_r, cols * freq / scale_c, octave_seed
        )
        norm += amplitude
        amplitude *= persistence
    # A Perlin octave lies in +-sqrt(1/2): rescale the weighted sum to +-1.
    field: NDArray[np.float32] = np.clip(total * np.float32(math.sqrt(2.0) / norm), -1.0, 1.0)
    return field


@lru_cache(maxsize=16)
def _fbm_quantiles(octaves: int, persistence: float) -> NDArray[np.float32]:
    sample = perlin((512, 512), scale_px=24.0, octaves=octaves, persistence=persistence, seed=7)
    return np.quantile(sample, np.linspace(0.0, 1.0, 201)).astype(np.float32)


def fbm_threshold(cover: float, *, octaves: int, persistence: float) -> float:
    """Noise level exceeded on about ``cover`` (0..1) of an fBm field's area."""
    q = _fbm_quantiles(octaves, persistence)
    return float(np.interp(1.0 - cover, np.linspace(0.0, 1.0, q.size), q))
