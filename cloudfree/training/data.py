"""Training series: synthetic Sentinel-2 time series (cloudfree.synthetic) with simulated gaps.

Ground truth is the clear series of a synthetic landscape (crop phenology over the year);
the 6 L2A bands of :mod:`cloudfree.synthetic` are extended to the 13 L1C bands by spectral
mixing and to ``ndvi`` ((NDVI + 1) / 2), with per-frame gain/offset noise standing in for
the atmosphere. Gaps are cloud + shadow masks from the synth cloud generators: a pool of
cloud masks made the way the demo catalog's SCL is made (pasted onto clear frames), and
fresh Perlin clouds, thick (cumulus) and thin (cirrus), with displaced shadows. Whole
series get random rotations and flips, and random band subsets (L2A, L1C, RGB, NDVI...).

The gap, orientation and band-subset helpers here are shared with
:mod:`cloudfree.training.stac_data`, which draws series from real STAC time cubes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cloudfree import synthetic as synth
from cloudfree.masking import cast_shadow
from cloudfree.models.weights import MODEL_BANDS, default_normalisation

L2A_SET = ("B02", "B03", "B04", "B08", "B11", "B12")
L1C_SET = MODEL_BANDS[:13]
BAND_SETS: tuple[tuple[str, ...], ...] = (MODEL_BANDS, L2A_SET, L1C_SET, ("B02", "B03", "B04"),
                                          ("ndvi",))


def extend_bands(l2a: np.ndarray) -> np.ndarray:
    """(..., 6, H, W) synth L2A (blue, green, red, nir, swir16, swir22) -> (..., 14, H, W)."""
    blue, green, red, nir, swir16, swir22 = (l2a[..., i, :, :] for i in range(6))
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    bands = [1.05 * blue + 0.02, blue, green, red, 0.7 * red + 0.3 * nir, 0.3 * red + 0.7 * nir,
             0.1 * red + 0.9 * nir, nir, 0.98 * nir, 0.35 * nir, 0.005 + 0.02 * swir22,
             swir16, swir22, (ndvi + 1) / 2]
    return np.stack(bands, axis=-3).astype(np.float32)


def cloud_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One synthetic cloud + shadow mask: thick cumulus and/or thin cirrus, shadow offset."""
    seed = int(rng.integers(1 << 30))
    cover = float(rng.uniform(0.05, 0.7))
    origin_y, origin_x = (float(o) for o in rng.integers(0, 10_000, 2))
    origin = (origin_y, origin_x)
    opacity = synth.cumulus_opacity(shape, cover=cover, origin_px=origin,
                                    scale_m=float(rng.uniform(400, 2000)), seed=seed)
    if rng.random() < 0.4:
        cirrus = synth.cirrus_opacity(shape, cover=float(rng.uniform(0.1, 0.6)),
                                      max_opacity=0.5, origin_px=origin, seed=seed + 1)
        opacity = np.maximum(opacity, cirrus)
    offset_y, offset_x = (float(o) for o in rng.uniform(-15, 15, 2))
    shadow = cast_shadow(opacity, offset_px=(offset_y, offset_x))
    mask: NDArray[np.bool_] = (opacity > 0.1) | (shadow > 0.2)
    return mask


def draw_orientation(rng: np.random.Generator) -> tuple[int, bool]:
    """A random quarter-turn count and horizontal flip; a scene has no preferred
    orientation, so the network should not learn one."""
    return int(rng.integers(4)), bool(rng.random() < 0.5)


def orient(array: np.ndarray, rotations: int, flip: bool) -> np.ndarray:
    """``array`` (..., H, W) turned by ``rotations`` quarter turns, then flipped left-right."""
    array = np.rot90(array, rotations, axes=(-2, -1))
    return array[..., ::-1] if flip else array


def draw_band_set(rng: np.random.Generator) -> tuple[str, ...]:
    """The bands one series shows: a sensor's set (``BAND_SETS``) or, one time in five, a
    random handful, so the generator copes with whatever bands a user's case has."""
    band_set = BAND_SETS[rng.integers(len(BAND_SETS))]
    if rng.random() < 0.2:
        band_set = tuple(rng.choice(MODEL_BANDS, int(rng.integers(1, 8)), replace=False))
    return band_set


@dataclass
class SeriesSampler:
    """Draws training batches; deterministic in (seed, step) so training resumes exactly."""

    size: int = 64
    frames: int = 6
    seed: int = 0
    n_landscapes: int = 4
    world_px: int = 192
    n_doys: int = 37
    mask_pool: int = 96

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 7])
        self.doys = np.linspace(1, 361, self.n_doys).astype(np.float32)
        self.reflectance: list[NDArray[np.float32]] = []  # per landscape: (n_doys, 14, H, W)
        for i in range(self.n_landscapes):
            origin_y, origin_x = (float(o) for o in rng.integers(0, 20_000, 2))
            land = synth.make_landscape((self.world_px, self.world_px),
                                        origin_px=(origin_y, origin_x),
                                        seed=int(self.seed * 100 + i))
            l2a = np.stack([synth.surface_reflectance(land, day_of_year=float(d))
                            for d in self.doys])
            self.reflectance.append(extend_bands(l2a))
        self.masks = np.stack([cloud_mask((self.size, self.size), rng)
                               for _ in range(self.mask_pool)])
        self.norm = default_normalisation()

    @property
    def description(self) -> str:
        """What the series are, for the model card."""
        return (f"synthetic Sentinel-2 series from cloudfree.synthetic: {self.n_landscapes} "
                f"landscapes of {self.world_px} px over {self.n_doys} dates; gaps from synth "
                f"cloud/shadow masks ({self.mask_pool} pasted, plus fresh Perlin clouds)")

    def batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Arrays: truth (B,T,C,H,W) normalised, clear (B,T,H,W), doy (B,T), band_present (B,C),
        and known (B,T,H,W): all ones, since a synthetic truth is known under every cloud."""
        rng = np.random.default_rng([self.seed, step])
        s, t = self.size, self.frames
        offset = np.array([self.norm["offset"][b] for b in MODEL_BANDS], np.float32)
        scale = np.array([self.norm["scale"][b] for b in MODEL_BANDS], np.float32)
        truths, clears, doys, presents = [], [], [], []
        for _ in range(batch_size):
            cube = self.reflectance[rng.integers(self.n_landscapes)]
            y, x = rng.integers(0, self.world_px - s + 1, 2)
            start = rng.integers(self.n_doys)
            gaps = rng.integers(1, 4, t)  # 10..30 days apart, wrapping over the new year
            idx = (start + np.concatenate([[0], np.cumsum(gaps[1:])])) % self.n_doys
            series = cube[idx, :, y:y + s, x:x + s].copy()
            gain = rng.uniform(0.92, 1.08, (t, 1, 1, 1)).astype(np.float32)
            series = series * gain + rng.uniform(-0.015, 0.02, (t, 1, 1, 1)).astype(np.float32)
            series = (series - offset[:, None, None]) / scale[:, None, None]
            series = orient(series, *draw_orientation(rng))
            clear = np.ones((t, s, s), bool)
            for frame in range(t):
                u = rng.random()
                if u < 0.1:
                    clear[frame] = False  # overcast
                elif u < 0.55:
                    clear[frame] = ~self.masks[rng.integers(self.mask_pool)]  # pasted mask
                elif u < 0.85:
                    clear[frame] = ~cloud_mask((s, s), rng)  # fresh Perlin clouds
            target = rng.integers(t)  # at least one frame has a partial gap to learn from
            if clear[target].all() or not clear[target].any():
                clear[target] = ~self.masks[rng.integers(self.mask_pool)]
            present = np.isin(MODEL_BANDS, draw_band_set(rng)).astype(np.float32)
            truths.append(np.ascontiguousarray(series))
            clears.append(clear)
            doys.append(self.doys[idx])
            presents.append(present)
        clear_stack = np.stack(clears).astype(np.float32)
        return {"truth": np.stack(truths).astype(np.float32),
                "clear": clear_stack,
                "doy": np.stack(doys).astype(np.float32),
                "band_present": np.stack(presents),
                "known": np.ones_like(clear_stack)}
