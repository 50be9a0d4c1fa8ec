"""Synthetic L2A scenes: the landscape seen through the weather, with its SCL and swath edge."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from cloudfree.masking import shadow_offset_px
from cloudfree.sentinel2 import SCL
from cloudfree.synthetic.atmosphere import (
    Weather,
    apply_atmosphere,
    cirrus_opacity,
    cumulus_opacity,
    solar_position,
    thin_cloud_spectral_opacity,
)
from cloudfree.synthetic.landscape import LandCover, Landscape, make_landscape, surface_reflectance
from cloudfree.synthetic.noise import subseed

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
Bool = NDArray[np.bool_]

# SCL thresholds on the truth (opacities at blue). Fainter fringes go unflagged, like Sen2Cor;
# snow is never classified: the synthetic season is April-October in the lowlands.
CLOUD_MEDIUM_MIN = 0.15
CLOUD_HIGH_MIN = 0.5
SHADOW_MIN = 0.3
WEAK_SHADOW_MIN = 0.12
CIRRUS_MIN = 0.06
VEGETATION_NDVI_MIN = 0.4

# Which SCL class wins when pixels are merged, first to last: no data, clouds, shadow first.
_SCL_PRECEDENCE = (
    SCL.NO_DATA,
    SCL.CLOUD_HIGH_PROBABILITY,
    SCL.CLOUD_MEDIUM_PROBABILITY,
    SCL.CLOUD_SHADOW,
    SCL.THIN_CIRRUS,
    SCL.SATURATED_OR_DEFECTIVE,
    SCL.DARK_AREA_PIXELS,
    SCL.SNOW,
    SCL.UNCLASSIFIED,
    SCL.WATER,
    SCL.NOT_VEGETATED,
    SCL.VEGETATION,
)
_PRIORITY_TO_SCL = np.array(_SCL_PRECEDENCE[::-1], np.uint8)  # priority -> SCL value
_SCL_PRIORITY = np.argsort(_PRIORITY_TO_SCL).astype(np.uint8)  # SCL value -> priority


def scene_classification(
    *,
    land_cover: U8,
    clear_reflectance: F32,
    cloud: F32,
    cirrus_blue: F32,
    shadow: F32,
    valid: Bool,
) -> U8:
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


def downsample_scl(scl: U8, factor: int = 2) -> U8:
    """SCL at a coarser resolution: per block, the class that matters most wins."""
    h, w = scl.shape[0] // factor, scl.shape[1] // factor
    blocks = scl[: h * factor, : w * factor].reshape(h, factor, w, factor)
    merged: U8 = _PRIORITY_TO_SCL[_SCL_PRIORITY[blocks].max(axis=(1, 3))]
    return merged


def block_mean(array: F32, factor: int = 2) -> F32:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes.

    The block's values are added in a fixed order, along each block row and then over
    the rows, so a block's mean does not depend on the size of the array around it
    (a reduction over several axes at once may pick its order by shape).
    """
    h, w = array.shape[-2] // factor, array.shape[-1] // factor
    cropped = array[..., : h * factor, : w * factor]
    rows = []
    for i in range(factor):
        row = cropped[..., i::factor, 0::factor]
        for j in range(1, factor):
            row = row + cropped[..., i::factor, j::factor]
        rows.append(row)
    total = rows[0]
    for row in rows[1:]:
        total = total + row
    return total / np.float32(factor * factor)


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
) -> Bool:
    """Boolean (H, W): inside the swath (True everywhere when ``edge`` is None)."""
    if edge is None:
        return np.ones(shape, bool)
    ys = ((origin_px[0] + np.arange(shape[0]) + 0.5) * resolution_m)[:, None]
    xs = ((origin_px[1] + np.arange(shape[1]) + 0.5) * resolution_m)[None, :]
    edge_x = edge.x_m - ys * math.tan(math.radians(edge.angle_deg))
    return (xs < edge_x) if edge.nodata_side == "east" else (xs >= edge_x)


@dataclass(frozen=True)
class SyntheticScene:
    """An observed L2A scene with its ground truth (band order :data:`~cloudfree.synthetic.BANDS`)."""

    reflectance: F32  # (C, H, W) observed; 0 outside the swath
    scl: U8  # (H, W)
    clear_reflectance: F32  # (C, H, W) surface without atmosphere
    cloud_opacity: F32  # (H, W) thick cloud
    cirrus_opacity: F32  # (C, H, W) thin cloud per band
    shadow_opacity: F32  # (H, W) share of direct sun blocked
    valid: Bool  # (H, W) inside the swath
    land_cover: U8
    day_of_year: float
    sun_zenith_deg: float
    sun_azimuth_deg: float

    @property
    def shadow_mask(self) -> Bool:
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
        seed=subseed(weather.seed, "cumulus"),
    )
    cloud = field[top : top + shape[0], left : left + shape[1]]
    shadow = field[top - dr : top - dr + shape[0], left - dc : left - dc + shape[1]]
    cirrus_blue = cirrus_opacity(
        shape,
        cover=weather.cirrus_cover,
        max_opacity=weather.cirrus_opacity,
        origin_px=origin,
        resolution_m=m,
        seed=subseed(weather.seed, "cirrus"),
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
