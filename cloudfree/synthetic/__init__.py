"""The synthetic Sentinel-2 L2A world: landscapes, crop calendars, clouds, shadows, cirrus, SCL.

Every generator is a pure, seeded numpy function of *world* pixel coordinates: a window
``origin_px`` (row, col) into an unbounded world, so adjacent tiles join without seams.
Reflectances are L2A surface reflectance (0..1) in the band order :data:`BANDS`. The demo
catalog is made of it, and training draws series and clouds from it::

    from cloudfree import synthetic as synth
    land = synth.make_landscape((256, 256), seed=0)
    scene = synth.synth_scene(land, day_of_year=180, weather=synth.Weather(cloud_cover=0.3),
                              sun_zenith_deg=40.0, sun_azimuth_deg=150.0)
"""

from cloudfree.masking import cast_shadow, shadow_offset_px
from cloudfree.sentinel2 import SCL
from cloudfree.synthetic.atmosphere import (
    Weather,
    apply_atmosphere,
    cirrus_opacity,
    cumulus_opacity,
    solar_position,
    thin_cloud_spectral_opacity,
)
from cloudfree.synthetic.landscape import (
    Crop,
    LandCover,
    Landscape,
    make_landscape,
    surface_reflectance,
)
from cloudfree.synthetic.noise import fbm_threshold, perlin
from cloudfree.synthetic.scene import (
    CIRRUS_MIN,
    CLOUD_HIGH_MIN,
    CLOUD_MEDIUM_MIN,
    SHADOW_MIN,
    VEGETATION_NDVI_MIN,
    WEAK_SHADOW_MIN,
    SwathEdge,
    SyntheticScene,
    block_mean,
    downsample_scl,
    make_scene,
    scene_classification,
    swath_valid,
    synth_scene,
)
from cloudfree.synthetic.spectra import BANDS, SPECTRA, WAVELENGTHS_NM

__all__ = [
    "BANDS",
    "CIRRUS_MIN",
    "CLOUD_HIGH_MIN",
    "CLOUD_MEDIUM_MIN",
    "SCL",
    "SHADOW_MIN",
    "SPECTRA",
    "VEGETATION_NDVI_MIN",
    "WAVELENGTHS_NM",
    "WEAK_SHADOW_MIN",
    "Crop",
    "LandCover",
    "Landscape",
    "SwathEdge",
    "SyntheticScene",
    "Weather",
    "apply_atmosphere",
    "block_mean",
    "cast_shadow",
    "cirrus_opacity",
    "cumulus_opacity",
    "downsample_scl",
    "fbm_threshold",
    "make_landscape",
    "make_scene",
    "perlin",
    "scene_classification",
    "shadow_offset_px",
    "solar_position",
    "surface_reflectance",
    "swath_valid",
    "synth_scene",
    "thin_cloud_spectral_opacity",
]
