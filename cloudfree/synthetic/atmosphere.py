"""The atmosphere of the synthetic world: the sun, thick cumulus, thin cirrus and haze, shadows.

The cloud generators stand alone, e.g. to paste synthetic clouds on real scenes for
training; :func:`cloudfree.masking.cast_shadow` moves a cloud field to where its shadow falls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloudfree.synthetic.noise import fbm_threshold, perlin
from cloudfree.synthetic.spectra import SPECTRA, WAVELENGTHS_NM

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Weather:
    """The atmosphere of one acquisition (one world cloud field per seed)."""

    cloud_cover: float = 0.0  # about the fraction of area under thick cloud
    cloud_height_m: float = 1200.0
    cloud_scale_m: float = 1500.0
    cirrus_cover: float = 0.0
    cirrus_opacity: float = 0.0  # peak thin-cloud opacity at blue
    seed: int = 0


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


def cumulus_opacity(
    shape: tuple[int, int],
    *,
    cover: float,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    scale_m: float = 1500.0,
    seed: int = 0,
) -> F32:
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
    opacity: F32 = (1.0 - np.exp(-tau)).astype(np.float32)
    return opacity


def cirrus_opacity(
    shape: tuple[int, int],
    *,
    cover: float,
    max_opacity: float,
    origin_px: tuple[float, float] = (0.0, 0.0),
    resolution_m: float = 10.0,
    scale_m: tuple[float, float] = (2500.0, 9000.0),
    seed: int = 0,
) -> F32:
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
    opacity: F32 = (max_opacity * x * x * (3 - 2 * x)).astype(np.float32)
    return opacity


def thin_cloud_spectral_opacity(
    opacity_blue: F32,
    *,
    wavelengths_nm: NDArray[np.floating[Any]] = WAVELENGTHS_NM,
    angstrom: float = 1.3,
) -> F32:
    """Per-band opacity (C, H, W) of thin cloud/haze: falls as (lambda / 490 nm) ** -angstrom."""
    factor = (np.asarray(wavelengths_nm, np.float32) / 490.0) ** -angstrom
    per_band: F32 = np.clip(factor[:, None, None] * opacity_blue[None], 0.0, 1.0).astype(np.float32)
    return per_band


def apply_atmosphere(clear: F32, *, cloud: F32, cirrus: F32, shadow: F32) -> F32:
    """Observed reflectance: ground darkened by shadow, under thick cloud, under cirrus.

    Args:
        clear: (C, H, W) clear surface reflectance, bands :data:`~cloudfree.synthetic.BANDS`.
        cloud: (H, W) thick-cloud opacity.
        cirrus: (C, H, W) thin-cloud opacity per band.
        shadow: (H, W) share of the direct sunlight blocked.
    """
    s = SPECTRA
    shaded = clear * (1.0 - shadow[None] * (1.0 - s["diffuse"]))
    brightness = 0.8 + 0.2 * cloud[None]  # thin edges look greyer than cores
    observed = shaded + cloud[None] * (s["cloud"] * brightness - shaded)
    return (observed + cirrus * (s["cirrus"] - observed)).astype(np.float32)
