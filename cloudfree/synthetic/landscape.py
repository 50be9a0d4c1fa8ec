"""The ground of the synthetic world: fields with crop calendars, forest, water, villages, roads.

A :class:`Landscape` holds the static per-pixel properties of a window of the world;
:func:`surface_reflectance` turns it into clear-sky L2A surface reflectance on a given day.
Layouts are defined in world metres, so adjacent windows join without seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree.synthetic.noise import hash_u32, perlin, subseed, uniform
from cloudfree.synthetic.spectra import BANDS, SPECTRA

F32 = NDArray[np.float32]


class LandCover(IntEnum):
    """The dominant cover of a pixel."""

    CROPLAND = 1
    FOREST = 2
    WATER = 3
    URBAN = 4
    ROAD = 5


class Crop(IntEnum):
    """The crop of a field, each with its own calendar."""

    WINTER_WHEAT = 0
    RAPESEED = 1
    MAIZE = 2
    SUGAR_BEET = 3
    MEADOW = 4
    FALLOW = 5


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


@dataclass(frozen=True)
class Landscape:
    """Static per-pixel properties of a window of the synthetic world."""

    origin_px: tuple[float, float]
    resolution_m: float
    land_cover: NDArray[np.uint8]  # LandCover of the dominant cover
    crop: NDArray[np.uint8]  # Crop per field (meaningful on cropland)
    field_id: NDArray[np.uint32]  # parcel id
    calendar_shift_days: F32  # per-field shift of the crop calendar
    vigour: F32  # per-field multiplier of the peak vegetation cover
    soil_brightness: F32
    margin_fraction: F32  # grass strips between parcels, sub-pixel
    forest: NDArray[np.bool_]
    conifer_fraction: F32
    urban_fraction: F32
    road_fraction: F32
    water_fraction: F32
    turbidity: F32
    roof_brightness: F32  # per building
    roof_tiles: F32  # 1 for red-tiled roofs
    texture: F32  # multiplicative, about 1

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.land_cover.shape
        return rows, cols


def _voronoi(
    wy: NDArray[np.floating[Any]], wx: NDArray[np.floating[Any]], *, cell_m: float, seed: int
) -> tuple[NDArray[np.uint32], NDArray[np.uint32], F32, F32]:
    """Per pixel: the region of the nearest jittered feature point (world metres), the
    region of the second nearest, the distance to the nearest, and the distance to the
    edge between the two."""
    cy, cx = np.floor(wy / cell_m).astype(np.int64), np.floor(wx / cell_m).astype(np.int64)
    lat_r = np.arange(cy.min() - 1, cy.max() + 2)
    lat_c = np.arange(cx.min() - 1, cx.max() + 2)
    fy = ((lat_r[:, None] + uniform(seed, lat_r[:, None], lat_c[None, :], 1)) * cell_m).ravel()
    fx = ((lat_c[None, :] + uniform(seed, lat_r[:, None], lat_c[None, :], 2)) * cell_m).ravel()
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
    region = hash_u32(seed, (i1 // lat_c.size) + lat_r[0], (i1 % lat_c.size) + lat_c[0])
    other = hash_u32(seed, (i2 // lat_c.size) + lat_r[0], (i2 % lat_c.size) + lat_c[0])
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

    def noise(scale_m: float, octaves: int, name: str, pad: int = 0) -> F32:
        window = (shape[0] + 2 * pad, shape[1] + 2 * pad)
        start = (origin_px[0] - pad, origin_px[1] - pad)
        return perlin(
            window, scale_px=scale_m / m, octaves=octaves, seed=subseed(seed, name), origin=start
        )

    # Farm blocks: Voronoi regions bounded by roads, each with its own field orientation.
    wy = ys + 60.0 * noise(900, 2, "warp-y")
    wx = xs + 60.0 * noise(900, 2, "warp-x")
    region, other, _, edge_m = _voronoi(wy, wx, cell_m=1400.0, seed=subseed(seed, "regions"))
    theta = np.float32(uniform(seed, 1) * np.pi) + (uniform(seed, region, 1) - 0.5) * 0.9
    strip_m = 50.0 + 110.0 * uniform(seed, region, 2)
    length_m = 140.0 + 220.0 * uniform(seed, region, 3)
    u = xs * np.cos(theta) + ys * np.sin(theta)
    v = -xs * np.sin(theta) + ys * np.cos(theta)
    iv = np.floor(v / strip_m)
    u = u + uniform(seed, region, iv) * length_m
    iu = np.floor(u / length_m)
    field_id = hash_u32(seed, region, iv, iu)
    edge_dist = np.minimum(
        np.minimum(v - iv * strip_m, (iv + 1) * strip_m - v),
        np.minimum(u - iu * length_m, (iu + 1) * length_m - u),
    )
    margin = np.clip(0.35 - edge_dist / (2.5 * m), 0.0, 0.35).astype(np.float32)

    crop = np.searchsorted(_CROP_SHARE, uniform(seed, field_id, 4), side="right").astype(np.uint8)
    crop = np.minimum(crop, len(Crop) - 1).astype(np.uint8)
    shift = ((uniform(seed, field_id, 5) - 0.5) * 24.0).astype(np.float32)
    vigour = (0.80 + 0.25 * uniform(seed, field_id, 6)).astype(np.float32)
    soil = (0.75 + 0.45 * uniform(seed, field_id, 7)) * (1 + 0.08 * noise(500, 3, "soil"))

    elevation = noise(5000, 4, "elevation")
    block_forest = uniform(seed, region, 8) < 0.04
    forest = (elevation + 0.25 * noise(500, 3, "forest-edge") > 0.38) | (
        block_forest & (elevation > -0.25)
    )
    conifer = np.clip(0.5 + 1.5 * noise(1500, 3, "conifer"), 0.0, 1.0)

    # Roads on the region edges; every third edge is a wider main road.
    main = uniform(seed, np.minimum(region, other), np.maximum(region, other)) < 0.33
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
    pixel_noise = uniform(seed, (ys / m).astype(np.int64), (xs / m).astype(np.int64), 9)
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
        roof_brightness=(0.75 + 0.5 * uniform(seed, *building, 10)).astype(f32),
        roof_tiles=(uniform(seed, *building, 11) < 0.45).astype(f32),
        texture=texture.astype(f32),
    )


def _sigmoid(x: NDArray[np.floating[Any]] | float) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def surface_reflectance(land: Landscape, *, day_of_year: float) -> F32:
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
    # Per pixel, a sum of elementwise products in a fixed order, not a matrix product: BLAS
    # splits the pixels over threads and kernels by the size of the window, so a pixel's
    # rounding would depend on the window around it and adjacent tiles would not join.
    reflectance = np.zeros((len(BANDS), *land.shape), np.float32)
    for name, abundance in abundances.items():
        reflectance += SPECTRA[name] * np.asarray(abundance, np.float32)
    return reflectance
