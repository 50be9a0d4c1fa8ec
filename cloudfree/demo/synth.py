"""Synthetic Sentinel-2 L2A scenes: landscape, crop calendar, clouds, shadows, SCL, swath edge.

Every generator is a pure, seeded numpy function of *world* pixel coordinates: a tile is
a window ``origin_px`` (row, col) into an unbounded world, so adjacent tiles join without
seams. The cloud, cirrus and shadow generators stand alone, e.g. to paste synthetic clouds
on real scenes for training. Reflectances are L2A surface reflectance (0..1), band order
:data:`BANDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Literal

import numpy as np

from cloudfree.masking import cast_shadow, shadow_offset_px  # noqa: F401 (re-exported)

BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
WAVELENGTHS_NM = np.array([490.0, 560.0, 665.0, 842.0, 1610.0, 2190.0], np.float32)


class SCL(IntEnum):
    """Sen2Cor scene classification values."""

    NO_DATA = 0
    CLOUD_SHADOW = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW = 11  # not modelled: the demo season is April-October in the lowlands


class LandCover(IntEnum):
    CROPLAND = 1
    FOREST = 2
    WATER = 3
    URBAN = 4
    ROAD = 5


class Crop(IntEnum):
    WINTER_WHEAT = 0
    RAPESEED = 1
    MAIZE = 2
    SUGAR_BEET = 3
    MEADOW = 4
    FALLOW = 5


# Typical L2A surface reflectance per band (blue, green, red, nir, swir16, swir22).
_S = {
    "veg": (0.030, 0.075, 0.035, 0.42, 0.21, 0.10),  # green crop canopy
    "dry": (0.075, 0.115, 0.165, 0.29, 0.38, 0.28),  # ripe cereal / straw
    "soil": (0.065, 0.095, 0.135, 0.20, 0.29, 0.25),  # bare soil: rises to swir16
    "flower": (0.040, 0.125, 0.100, 0.42, 0.22, 0.10),  # rapeseed in bloom (yellow)
    "grass": (0.035, 0.070, 0.045, 0.33, 0.20, 0.11),  # field margins, gardens
    "conifer": (0.018, 0.035, 0.018, 0.24, 0.11, 0.045),
    "broadleaf": (0.025, 0.055, 0.028, 0.38, 0.17, 0.07),
    "leafless": (0.045, 0.060, 0.065, 0.20, 0.22, 0.14),
    "water": (0.035, 0.035, 0.018, 0.012, 0.006, 0.004),
    "turbid": (0.070, 0.085, 0.070, 0.035, 0.012, 0.008),
    "urban": (0.110, 0.120, 0.130, 0.17, 0.21, 0.19),  # bright and flat
    "tiles": (0.070, 0.075, 0.125, 0.19, 0.24, 0.21),  # red roof tiles
    "road": (0.085, 0.095, 0.105, 0.125, 0.155, 0.145),
    "cloud": (0.78, 0.77, 0.76, 0.74, 0.52, 0.36),  # water clouds absorb in the SWIR
    "cirrus": (0.34, 0.33, 0.32, 0.31, 0.26, 0.22),
    # Share of skylight (diffuse) in the irradiance: what is left inside a shadow.
    "diffuse": (0.40, 0.36, 0.32, 0.25, 0.20, 0.18),
}
SPECTRA = {k: np.array(v, np.float32)[:, None, None] for k, v in _S.items()}

# Crop calendars (day of year): green-up, senescence, harvest, peak cover, straw after ripening.
_CROPS = np.array(
    [  # up, senescence, harvest, fmax, dry
        [60, 172, 205, 0.95, 0.85],  # winter wheat: green in April, golden in July
        [55, 158, 192, 0.90, 0.70],  # rapeseed: yellow bloom around DOY 120
        [150, 255, 280, 0.95, 0.50],  # maize: late, green until September
        [135, 280, 292, 0.90, 0.0],  # sugar beet: green into October
        [75, 300, 400, 0.88, 0.0],  # meadow: mown twice
        [400, 400, 400, 0.20, 0.0],  # fallow: weedy bare soil
    ],
    np.float32,
)
_CROP_SHARE = np.cumsum([0.28, 0.12, 0.22, 0.12, 0.18, 0.08])

# SCL thresholds on the truth (opacities at blue). Fainter fringes go unflagged, like Sen2Cor.
CLOUD_MEDIUM_MIN = 0.15
CLOUD_HIGH_MIN = 0.5
SHADOW_MIN = 0.3
WEAK_SHADOW_MIN = 0.12
CIRRUS_MIN = 0.06
VEGETATION_NDVI_MIN = 0.4


# ---------------------------------------------------------------------------- noise


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _hash(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Stateless 32-bit hash of integer keys (broadcast): world-consistent randomness."""
    with np.errstate(over="ignore"):
        h = _fmix32(np.asarray((seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF, np.uint32))
        for key in keys:
            k = (np.asarray(key, np.int64) & 0xFFFFFFFF).astype(np.uint32)
            h = _fmix32(h ^ (_fmix32(k) + np.uint32(0x9E3779B9) + (h << np.uint32(6))))
    return h


def _unit(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) from :func:`_hash`."""
    return _hash(seed, *keys) * np.float32(2.0**-32)


def _subseed(seed: int, name: str) -> int:
    return int(_hash(seed, *(ord(c) for c in name)))


def _gradient_noise(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """One octave of 2-D Perlin noise at lattice coordinates ``rows`` x ``cols``."""
    r0, c0 = np.floor(rows), np.floor(cols)
    fy, fx = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    ir, ic = r0.astype(np.int64), c0.astype(np.int64)
    lat_r = np.arange(ir[0], ir[-1] + 2)
    lat_c = np.arange(ic[0], ic[-1] + 2)
    angle = _hash(seed, lat_r[:, None], lat_c[None, :]) * (2 * np.pi / 2.0**32)
    grad_c, grad_r = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    rows_idx, cols_idx = ir - lat_r[0], ic - lat_c[0]

    def corner(dr: int, dc: int) -> np.ndarray:
        # Two small gathers: lattice rows first, then columns (indices are separable).
        gc = grad_c[rows_idx + dr][:, cols_idx + dc]
        gr = grad_r[rows_idx + dr][:, cols_idx + dc]
        gc *= (fx - dc)[None, :]
        gr *= (fy - dr)[:, None]
        gc += gr
        return gc

    u = (fx * fx * fx * (fx * (fx * 6 - 15) + 10))[None, :]
    v = (fy * fy * fy * (fy * (fy * 6 - 15) + 10))[:, None]
    top = corner(0, 0)
    top += u * (corner(0, 1) - top)
    bottom = corner(1, 0)
    bottom += u * (corner(1, 1) - bottom)
    return top + v * (bottom - top)


def perlin(
    shape: tuple[int, int],
    *,
    scale_px: float | tuple[float, float],
    octaves: int = 4,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    seed: int = 0,
    origin: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
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
    scale_r, scale_c = (scale_px, scale_px) if np.isscalar(scale_px) else scale_px
    rows = origin[0] + np.arange(shape[0]) + 0.5
    cols = origin[1] + np.arange(shape[1]) + 0.5
    total = np.zeros(shape, np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        freq = lacunarity**octave
        octave_seed = int(_hash(seed, octave))
        total += np.float32(amplitude) * _gradient_noise(
            rows * freq / scale_r, cols * freq / scale_c, octave_seed
        )
        norm += amplitude
        amplitude *= persistence
    # A Perlin octave lies in +-sqrt(1/2): rescale the weighted sum to +-1.
    return np.clip(total * np.float32(math.sqrt(2.0) / norm), -1.0, 1.0)


@lru_cache(maxsize=16)
def _fbm_quantiles(octaves: int, persistence: float) -> np.ndarray:
    sample = perlin((512, 512), scale_px=24.0, octaves=octaves, persistence=persistence, seed=7)
    return np.quantile(sample, np.linspace(0.0, 1.0, 201)).astype(np.float32)


def fbm_threshold(cover: float, *, octaves: int, persistence: float) -> float:
    """Noise level exceeded on about ``cover`` (0..1) of an fBm field's area."""
    q = _fbm_quantiles(octaves, persistence)
    return float(np.interp(1.0 - cover, np.linspace(0.0, 1.0, q.size), q))


# ------------------------------------------------------------------------ landscape


@dataclass(frozen=True)
class Landscape:
    """Static per-pixel properties of a window of the synthetic world."""

    origin_px: tuple[float, float]
    resolution_m: float
    land_cover: np.ndarray  # uint8 LandCover of the dominant cover
    crop: np.ndarray  # uint8 Crop per field (meaningful on cropland)
    field_id: np.ndarray  # uint32 parcel id
    calendar_shift_days: np.ndarray  # per-field shift of the crop calendar
    vigour: np.ndarray  # per-field multiplier of the peak vegetation cover
    soil_brightness: np.ndarray
    margin_fraction: np.ndarray  # grass strips between parcels, sub-pixel
    forest: np.ndarray  # bool
    conifer_fraction: np.ndarray
    urban_fraction: np.ndarray
    road_fraction: np.ndarray
    water_fraction: np.ndarray
    turbidity: np.ndarray
    roof_brightness: np.ndarray  # per building
    roof_tiles: np.ndarray  # 1 for red-tiled roofs
    texture: np.ndarray  # multiplicative, about 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.land_cover.shape


def _voronoi(wy: np.ndarray, wx: np.ndarray, *, cell_m: float, seed: int):
    """Nearest and second-nearest jittered feature points (world metres) per pixel."""
    cy, cx = np.floor(wy / cell_m).astype(np.int64), np.floor(wx / cell_m).astype(np.int64)
    lat_r = np.arange(cy.min() - 1, cy.max() + 2)
    lat_c = np.arange(cx.min() - 1, cx.max() + 2)
    fy = ((lat_r[:, None] + _unit(seed, lat_r[:, None], lat_c[None, :], 1)) * cell_m).ravel()
    fx = ((lat_c[None, :] + _unit(seed, lat_r[:, None], lat_c[None, :], 2)) * cell_m).ravel()
    base = (cy - lat_r[0]) * lat_c.size + (cx - lat_c[0])
    d1 = np.full(wy.shape, np.inf, np.float32)
    d2, i1, i2 = d1.copy(), np.zeros(wy.shape, np.int64), np.zeros(wy.shape, np.int64)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            idx = base + (dr * lat_c.size + dc)
            d = np.hypot(wy - fy[idx], wx - fx[idx]).astype(np.float32)
            first, second = d < d1, (d >= d1) & (d < d2)
            d2 = np.where(first, d1, np.where(second, d, d2))
            i2 = np.where(first, i1, np.where(second, idx, i2))
            d1, i1 = np.where(first, d, d1), np.where(first, idx, i1)
    # Exact distance to the bisector between the two nearest features: the region edge.
    gap = np.hypot(fy[i2] - fy[i1], fx[i2] - fx[i1]).astype(np.float32)
    edge_m = (d2 * d2 - d1 * d1) / (2 * np.maximum(gap, 1e-3))
    region = _hash(seed, (i1 // lat_c.size) + lat_r[0], (i1 % lat_c.size) + lat_c[0])
    other = _hash(seed, (i2 // lat_c.size) + lat_r[0], (i2 % lat_c.size) + lat_c[0])
    return region, other, d1, edge_m


def make_landscape(
    shape: tuple[int, int],
    *,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    seed: int = 0,
    river_y_m: float | None = 1500.0,
) -> Landscape:
    """A window of the world: fields, forest, a river and lakes, villages along roads.

    Args:
        shape: (rows, cols) of the window.
        origin_px: world pixel (row, col) of the top-left pixel, at ``resolution_m``.
        resolution_m: pixel size; the layout is defined in metres, so it is the same
            world at any resolution.
        seed: selects the world.
        river_y_m: world row (metres, southwards) around which a river meanders west to
            east; ``None`` for none.
    """
    m = float(resolution_m)
    ys = ((origin_px[0] + np.arange(shape[0]) + 0.5) * m)[:, None]
    xs = ((origin_px[1] + np.arange(shape[1]) + 0.5) * m)[None, :]

    def noise(scale_m: float, octaves: int, name: str, pad: int = 0) -> np.ndarray:
        window = (shape[0] + 2 * pad, shape[1] + 2 * pad)
        start = (origin_px[0] - pad, origin_px[1] - pad)
        return perlin(
            window, scale_px=scale_m / m, octaves=octaves, seed=_subseed(seed, name), origin=start
        )

    # Farm blocks: Voronoi regions bounded by roads, each with its own field orientation.
    wy = ys + 60.0 * noise(900, 2, "warp-y")
    wx = xs + 60.0 * noise(900, 2, "warp-x")
    region, other, _, edge_m = _voronoi(wy, wx, cell_m=1400.0, seed=_subseed(seed, "regions"))
    theta = np.float32(_unit(seed, 1) * np.pi) + (_unit(seed, region, 1) - 0.5) * 0.9
    strip_m = 50.0 + 110.0 * _unit(seed, region, 2)
    length_m = 140.0 + 220.0 * _unit(seed, region, 3)
    u = xs * np.cos(theta) + ys * np.sin(theta)
    v = -xs * np.sin(theta) + ys * np.cos(theta)
    iv = np.floor(v / strip_m)
    u = u + _unit(seed, region, iv) * length_m
    iu = np.floor(u / length_m)
    field_id = _hash(seed, region, iv, iu)
    edge_dist = np.minimum(
        np.minimum(v - iv * strip_m, (iv + 1) * strip_m - v),
        np.minimum(u - iu * length_m, (iu + 1) * length_m - u),
    )
    margin = np.clip(0.35 - edge_dist / (2.5 * m), 0.0, 0.35).astype(np.float32)

    crop = np.searchsorted(_CROP_SHARE, _unit(seed, field_id, 4), side="right").astype(np.uint8)
    crop = np.minimum(crop, len(Crop) - 1).astype(np.uint8)
    shift = ((_unit(seed, field_id, 5) - 0.5) * 24.0).astype(np.float32)
    vigour = (0.80 + 0.25 * _unit(seed, field_id, 6)).astype(np.float32)
    soil = (0.75 + 0.45 * _unit(seed, field_id, 7)) * (1 + 0.08 * noise(500, 3, "soil"))

    elevation = noise(5000, 4, "elevation")
    block_forest = _unit(seed, region, 8) < 0.04
    forest = (elevation + 0.25 * noise(500, 3, "forest-edge") > 0.38) | (
        block_forest & (elevation > -0.25)
    )
    conifer = np.clip(0.5 + 1.5 * noise(1500, 3, "conifer"), 0.0, 1.0)

    # Roads on the region edges; every third edge is a wider main road.
    main = _unit(seed, np.minimum(region, other), np.maximum(region, other)) < 0.33
    half_width = np.where(main, 7.0, 3.5)
    road = np.clip((half_width - edge_m) / m + 0.5, 0.0, 1.0)
    # Villages strung along roads where the settlement field is high.
    settle = noise(3000, 3, "settle") + 0.12 * noise(250, 2, "settle-edge")
    urban = np.clip((settle - 0.30) * 6.0, 0.0, 1.0) * (edge_m < 100.0 + 900.0 * settle)
    urban = np.where(forest, 0.0, urban)

    lake = np.clip((-0.42 - elevation - 0.06 * noise(300, 2, "lake-edge")) * 60.0 + 0.5, 0, 1)
    water = lake
    if river_y_m is not None:
        # The river is the zero line of g; its distance is |g| / |grad g| (padded grid).
        yy = ((origin_px[0] + np.arange(-1, shape[0] + 1) + 0.5) * m)[:, None]
        g = (yy - river_y_m) / 4000.0 + 0.6 * noise(5000, 3, "river", pad=1)
        gy = (g[2:, 1:-1] - g[:-2, 1:-1]) / (2 * m)
        gx = (g[1:-1, 2:] - g[1:-1, :-2]) / (2 * m)
        dist_m = np.abs(g[1:-1, 1:-1]) / np.maximum(np.hypot(gy, gx), 1e-9)
        river_half = 24.0 + 10.0 * noise(2000, 2, "river-width")
        water = np.maximum(water, np.clip((river_half - dist_m) / m + 0.5, 0.0, 1.0))
    road = np.where(water > 0.5, 0.0, road)
    urban = np.where(water > 0.5, 0.0, urban)

    land_cover = np.where(forest, LandCover.FOREST, LandCover.CROPLAND).astype(np.uint8)
    land_cover[urban >= 0.5] = LandCover.URBAN
    land_cover[road >= 0.5] = LandCover.ROAD
    land_cover[water >= 0.5] = LandCover.WATER
    pixel_noise = _unit(seed, (ys / m).astype(np.int64), (xs / m).astype(np.int64), 9)
    texture = 1.0 + 0.05 * noise(60, 2, "texture") + 0.03 * (pixel_noise - 0.5)
    texture = np.where(forest, texture + 0.12 * noise(40, 2, "crowns"), texture)
    building = (np.floor(ys / 25.0).astype(np.int64), np.floor(xs / 25.0).astype(np.int64))
    f32 = np.float32
    return Landscape(
        origin_px=(float(origin_px[0]), float(origin_px[1])),
        resolution_m=m,
        land_cover=land_cover,
        crop=crop,
        field_id=field_id,
        calendar_shift_days=shift,
        vigour=vigour,
        soil_brightness=soil.astype(f32),
        margin_fraction=margin,
        forest=forest,
        conifer_fraction=conifer.astype(f32),
        urban_fraction=urban.astype(f32),
        road_fraction=road.astype(f32),
        water_fraction=water.astype(f32),
        turbidity=np.clip(0.4 + 0.8 * noise(3000, 2, "turbidity"), 0, 1).astype(f32),
        roof_brightness=(0.75 + 0.5 * _unit(seed, *building, 10)).astype(f32),
        roof_tiles=(_unit(seed, *building, 11) < 0.45).astype(f32),
        texture=texture.astype(f32),
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def _mix(a: np.ndarray, b: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    return a + fraction[None] * (b - a)


def surface_reflectance(land: Landscape, *, day_of_year: float) -> np.ndarray:
    """Clear-sky L2A surface reflectance (6, H, W) float32 of ``land`` on ``day_of_year``.

    Each pixel is a linear mixture of endmember spectra; the abundances follow the crop
    calendars, leaf-out of the forest and the sub-pixel cover fractions.
    """
    t = np.float32(day_of_year) - land.calendar_shift_days
    up, sen, harvest, fmax, dry_max = np.moveaxis(_CROPS[land.crop], -1, 0)
    green = fmax * land.vigour * (_sigmoid((t - up) / 8.0) - _sigmoid((t - sen) / 7.0))
    dry = dry_max * (_sigmoid((t - sen) / 7.0) - _sigmoid((t - harvest) / 3.0))
    dry += 0.15 * (dry_max > 0) * _sigmoid((t - harvest) / 3.0)  # stubble
    mowing = 1 - 0.45 * np.exp(-(((t - 155) / 6.0) ** 2)) - 0.4 * np.exp(-(((t - 215) / 6.0) ** 2))
    green = np.where(land.crop == Crop.MEADOW, green * mowing, green)
    weeds = 0.15 + 0.15 * _sigmoid((t - 150) / 15.0)
    green = np.where(land.crop == Crop.FALLOW, weeds, green)
    bloom = (land.crop == Crop.RAPESEED) * np.exp(-(((t - 122) / 9.0) ** 2))
    leaf = _sigmoid((day_of_year - 118) / 7.0) * (1.0 - _sigmoid((day_of_year - 290) / 8.0))

    # Weights of the ground under roofs, roads and water; texture spares the water.
    u, r, w = land.urban_fraction, land.road_fraction, land.water_fraction
    textured = (1 - w) * land.texture
    ground = (1 - u) * (1 - r) * textured
    crop = np.where(land.forest, 0.0, ground)
    fields = crop * (1 - land.margin_fraction)
    forest = np.where(land.forest, ground, 0.0)
    broadleaf = forest * (1 - land.conifer_fraction)
    roofs = u * (1 - r) * textured
    gardens = roofs * 0.35 * (1.4 - land.roof_brightness)
    buildings = (roofs - gardens) * land.roof_brightness
    abundances = {
        "veg": fields * green * (1 - 0.85 * bloom),
        "flower": fields * green * 0.85 * bloom,
        "dry": fields * dry,
        "soil": fields * (1 - green - dry) * land.soil_brightness,
        "grass": crop * land.margin_fraction + gardens,
        "conifer": forest * land.conifer_fraction,
        "broadleaf": broadleaf * leaf,
        "leafless": broadleaf * (1 - leaf),
        "urban": buildings * (1 - land.roof_tiles),
        "tiles": buildings * land.roof_tiles,
        "road": r * textured,
        "water": w * (1 - land.turbidity),
        "turbid": w * land.turbidity,
    }
    endmembers = np.stack([SPECTRA[k][:, 0, 0] for k in abundances], axis=1)  # (C, K)
    stacked = np.stack([np.asarray(a, np.float32) for a in abundances.values()])
    reflectance = endmembers @ stacked.reshape(len(abundances), -1)
    return reflectance.reshape(len(BANDS), *land.shape).astype(np.float32, copy=False)


# --------------------------------------------------------------- clouds and shadows


def cumulus_opacity(
    shape: tuple[int, int],
    *,
    cover: float,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    scale_m: float = 1500.0,
    seed: int = 0,
) -> np.ndarray:
    """Opacity (0..1) of thick cumulus: thresholded fBm -> optical thickness -> 1 - exp(-tau).

    ``cover`` is about the fraction of the world under cloud (fringes included).
    """
    if cover <= 0:
        return np.zeros(shape, np.float32)
    octaves, persistence = 6, 0.55
    field = perlin(
        shape,
        scale_px=scale_m / resolution_m,
        octaves=octaves,
        persistence=persistence,
        seed=seed,
        origin=origin_px,
    )
    threshold = fbm_threshold(min(cover, 1.0), octaves=octaves, persistence=persistence)
    tau = 7.0 * np.maximum(field - threshold, 0.0)
    return (1.0 - np.exp(-tau)).astype(np.float32)


def cirrus_opacity(
    shape: tuple[int, int],
    *,
    cover: float,
    max_opacity: float,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    scale_m: tuple[float, float] = (2500.0, 9000.0),
    seed: int = 0,
) -> np.ndarray:
    """Opacity at blue of thin, streaky cirrus/haze (stretched fBm), 0..``max_opacity``."""
    if cover <= 0 or max_opacity <= 0:
        return np.zeros(shape, np.float32)
    octaves, persistence = 5, 0.6
    field = perlin(
        shape,
        scale_px=(scale_m[0] / resolution_m, scale_m[1] / resolution_m),
        octaves=octaves,
        persistence=persistence,
        seed=seed,
        origin=origin_px,
    )
    threshold = fbm_threshold(min(cover, 1.0), octaves=octaves, persistence=persistence)
    x = np.clip((field - threshold) / 0.3, 0.0, 1.0)
    return (max_opacity * x * x * (3 - 2 * x)).astype(np.float32)


def thin_cloud_spectral_opacity(
    opacity_blue: np.ndarray, *, wavelengths_nm: np.ndarray = WAVELENGTHS_NM, angstrom: float = 1.3
) -> np.ndarray:
    """Per-band opacity (C, H, W) of thin cloud/haze: falls as (lambda / 490 nm) ** -angstrom."""
    factor = (np.asarray(wavelengths_nm, np.float32) / 490.0) ** -angstrom
    return np.clip(factor[:, None, None] * opacity_blue[None], 0.0, 1.0).astype(np.float32)


def apply_atmosphere(
    clear: np.ndarray, *, cloud: np.ndarray, cirrus: np.ndarray, shadow: np.ndarray
) -> np.ndarray:
    """Observed reflectance: ground darkened by shadow, under thick cloud, under cirrus.

    Args:
        clear: (C, H, W) clear surface reflectance, bands :data:`BANDS`.
        cloud: (H, W) thick-cloud opacity.
        cirrus: (C, H, W) thin-cloud opacity per band.
        shadow: (H, W) share of the direct sunlight blocked.
    """
    s = SPECTRA
    shaded = clear * (1.0 - shadow[None] * (1.0 - s["diffuse"]))
    brightness = 0.8 + 0.2 * cloud[None]  # thin edges look greyer than cores
    observed = _mix(shaded, s["cloud"] * brightness, cloud)
    return (observed + cirrus * (s["cirrus"] - observed)).astype(np.float32)


# --------------------------------------------------------------- SCL and swath edge


def scene_classification(
    *,
    land_cover: np.ndarray,
    clear_reflectance: np.ndarray,
    cloud: np.ndarray,
    cirrus_blue: np.ndarray,
    shadow: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """SCL (uint8) from the truth, with Sen2Cor-like thresholds and precedence:
    no data > cloud > shadow > cirrus > surface classes."""
    red, nir = clear_reflectance[2], clear_reflectance[3]
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl = np.where(ndvi > VEGETATION_NDVI_MIN, SCL.VEGETATION, SCL.NOT_VEGETATED).astype(np.uint8)
    scl[land_cover == LandCover.WATER] = SCL.WATER
    scl[shadow >= WEAK_SHADOW_MIN] = SCL.UNCLASSIFIED
    scl[cirrus_blue >= CIRRUS_MIN] = SCL.THIN_CIRRUS
    scl[shadow >= SHADOW_MIN] = SCL.CLOUD_SHADOW
    scl[cloud >= CLOUD_MEDIUM_MIN] = SCL.CLOUD_MEDIUM_PROBABILITY
    scl[cloud >= CLOUD_HIGH_MIN] = SCL.CLOUD_HIGH_PROBABILITY
    scl[~valid] = SCL.NO_DATA
    return scl


# Which SCL class wins when pixels are merged (higher wins): no data, clouds, shadow first.
_SCL_PRIORITY = np.array([11, 6, 5, 8, 0, 1, 2, 3, 9, 10, 7, 4], np.uint8)
_PRIORITY_TO_SCL = np.argsort(_SCL_PRIORITY).astype(np.uint8)


def downsample_scl(scl: np.ndarray, factor: int = 2) -> np.ndarray:
    """SCL at a coarser resolution: per block, the class that matters most wins."""
    h, w = scl.shape[0] // factor, scl.shape[1] // factor
    blocks = scl[: h * factor, : w * factor].reshape(h, factor, w, factor)
    return _PRIORITY_TO_SCL[_SCL_PRIORITY[blocks].max(axis=(1, 3))]


def block_mean(array: np.ndarray, factor: int = 2) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes."""
    h, w = array.shape[-2] // factor, array.shape[-1] // factor
    cropped = array[..., : h * factor, : w * factor]
    return cropped.reshape(*array.shape[:-2], h, factor, w, factor).mean(axis=(-3, -1))


@dataclass(frozen=True)
class SwathEdge:
    """A straight orbit-swath edge in world metres: no data on one side of it."""

    x_m: float  # world x of the edge at world y = 0
    angle_deg: float = 12.0  # clockwise tilt from north-south
    nodata_side: Literal["east", "west"] = "east"


def swath_valid(
    shape: tuple[int, int],
    *,
    edge: SwathEdge | None,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
) -> np.ndarray:
    """Boolean (H, W): inside the swath (True everywhere when ``edge`` is None)."""
    if edge is None:
        return np.ones(shape, bool)
    ys = ((origin_px[0] + np.arange(shape[0]) + 0.5) * resolution_m)[:, None]
    xs = ((origin_px[1] + np.arange(shape[1]) + 0.5) * resolution_m)[None, :]
    edge_x = edge.x_m - ys * math.tan(math.radians(edge.angle_deg))
    return (xs < edge_x) if edge.nodata_side == "east" else (xs >= edge_x)


# ------------------------------------------------------------------------- scenes


def solar_position(
    day_of_year: float, *, latitude_deg: float, local_solar_time_h: float = 10.5
) -> tuple[float, float]:
    """Sun (zenith, azimuth clockwise from north) in degrees; Sentinel-2 passes at 10:30."""
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365.0)
    lat = math.radians(latitude_deg)
    hour = math.radians(15.0 * (local_solar_time_h - 12.0))
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour)
    zenith = math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    from_south = math.atan2(
        math.sin(hour), math.cos(hour) * math.sin(lat) - math.tan(decl) * math.cos(lat)
    )
    return zenith, (math.degrees(from_south) + 180.0) % 360.0


@dataclass(frozen=True)
class Weather:
    """The atmosphere of one acquisition (one world cloud field per seed)."""

    cloud_cover: float = 0.0  # about the fraction of area under thick cloud
    cloud_height_m: float = 1200.0
    cloud_scale_m: float = 1500.0
    cirrus_cover: float = 0.0
    cirrus_opacity: float = 0.0  # peak thin-cloud opacity at blue
    seed: int = 0


@dataclass(frozen=True)
class SyntheticScene:
    """An observed L2A scene with its ground truth (band order :data:`BANDS`)."""

    reflectance: np.ndarray  # (C, H, W) observed; 0 outside the swath
    scl: np.ndarray  # (H, W) uint8
    clear_reflectance: np.ndarray  # (C, H, W) surface without atmosphere
    cloud_opacity: np.ndarray  # (H, W) thick cloud
    cirrus_opacity: np.ndarray  # (C, H, W) thin cloud per band
    shadow_opacity: np.ndarray  # (H, W) share of direct sun blocked
    valid: np.ndarray  # (H, W) inside the swath
    land_cover: np.ndarray
    day_of_year: float
    sun_zenith_deg: float
    sun_azimuth_deg: float

    @property
    def shadow_mask(self) -> np.ndarray:
        """Clear (clearly dark) shadow not hidden under cloud."""
        return (self.shadow_opacity >= SHADOW_MIN) & (self.cloud_opacity < CLOUD_MEDIUM_MIN)


def synth_scene(
    land: Landscape,
    *,
    day_of_year: float,
    weather: Weather,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
    swath: SwathEdge | None = None,
) -> SyntheticScene:
    """Observe ``land`` through ``weather``: clouds, their shadows, cirrus, SCL, swath edge."""
    shape, origin, m = land.shape, land.origin_px, land.resolution_m
    dr, dc = (
        int(round(o))
        for o in shadow_offset_px(
            cloud_height_m=weather.cloud_height_m,
            sun_zenith_deg=sun_zenith_deg,
            sun_azimuth_deg=sun_azimuth_deg,
            resolution_m=m,
        )
    )
    # One cloud field over the tile and the area whose clouds shade it; the shadow at p
    # is the cloud at p - offset, so both are windows of the same world field.
    top, left = max(dr, 0), max(dc, 0)
    field = cumulus_opacity(
        (shape[0] + abs(dr), shape[1] + abs(dc)),
        cover=weather.cloud_cover,
        origin_px=(origin[0] - top, origin[1] - left),
        resolution_m=m,
        scale_m=weather.cloud_scale_m,
        seed=_subseed(weather.seed, "cumulus"),
    )
    cloud = field[top : top + shape[0], left : left + shape[1]]
    shadow = field[top - dr : top - dr + shape[0], left - dc : left - dc + shape[1]]
    cirrus_blue = cirrus_opacity(
        shape,
        cover=weather.cirrus_cover,
        max_opacity=weather.cirrus_opacity,
        origin_px=origin,
        resolution_m=m,
        seed=_subseed(weather.seed, "cirrus"),
    )
    cirrus = thin_cloud_spectral_opacity(cirrus_blue)
    clear = surface_reflectance(land, day_of_year=day_of_year)
    observed = apply_atmosphere(clear, cloud=cloud, cirrus=cirrus, shadow=shadow)
    valid = swath_valid(shape, edge=swath, origin_px=origin, resolution_m=m)
    observed[:, ~valid] = 0.0
    scl = scene_classification(
        land_cover=land.land_cover,
        clear_reflectance=clear,
        cloud=cloud,
        cirrus_blue=cirrus_blue,
        shadow=shadow,
        valid=valid,
    )
    return SyntheticScene(
        reflectance=observed,
        scl=scl,
        clear_reflectance=clear,
        cloud_opacity=cloud,
        cirrus_opacity=cirrus,
        shadow_opacity=shadow,
        valid=valid,
        land_cover=land.land_cover,
        day_of_year=float(day_of_year),
        sun_zenith_deg=float(sun_zenith_deg),
        sun_azimuth_deg=float(sun_azimuth_deg),
    )


def make_scene(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    day_of_year: float = 180.0,
    cloud_cover: float = 0.3,
    cirrus_opacity: float = 0.15,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    latitude_deg: float = 46.0,
    swath: SwathEdge | None = None,
) -> SyntheticScene:
    """One seeded scene in a single call (tests, training data)."""
    land = make_landscape(shape, origin_px=origin_px, resolution_m=resolution_m, seed=seed)
    zenith, azimuth = solar_position(day_of_year, latitude_deg=latitude_deg)
    weather = Weather(
        cloud_cover=cloud_cover,
        cirrus_cover=0.5 if cirrus_opacity > 0 else 0.0,
        cirrus_opacity=cirrus_opacity,
        seed=seed + 1,
    )
    return synth_scene(
        land,
        day_of_year=day_of_year,
        weather=weather,
        sun_zenith_deg=zenith,
        sun_azimuth_deg=azimuth,
        swath=swath,
    )
