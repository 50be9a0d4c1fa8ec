"""Sentinel-2 facts in one place: bands and wavelengths, the L2A digital-number encoding,
and the scene classification (SCL) classes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from numpy.typing import NDArray

_Array = TypeVar("_Array", float, NDArray[Any])


@dataclass(frozen=True)
class BandInfo:
    name: str  # Earth Search asset key
    s2_name: str  # ESA band id
    center_wavelength_um: float
    full_width_half_max_um: float
    resolution_m: int


BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        BandInfo("coastal", "B01", 0.443, 0.027, 60),
        BandInfo("blue", "B02", 0.490, 0.098, 10),
        BandInfo("green", "B03", 0.560, 0.045, 10),
        BandInfo("red", "B04", 0.665, 0.038, 10),
        BandInfo("rededge1", "B05", 0.704, 0.019, 20),
        BandInfo("rededge2", "B06", 0.740, 0.018, 20),
        BandInfo("rededge3", "B07", 0.783, 0.028, 20),
        BandInfo("nir", "B08", 0.842, 0.145, 10),
        BandInfo("nir08", "B8A", 0.865, 0.033, 20),
        BandInfo("nir09", "B09", 0.945, 0.026, 60),
        BandInfo("swir16", "B11", 1.610, 0.143, 20),
        BandInfo("swir22", "B12", 2.190, 0.242, 20),
    )
}

#: The reflectance bands cloudfree mosaics by default: visible, NIR and both SWIR.
DEFAULT_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")

#: L2A encoding since processing baseline 04.00: reflectance = DN * SCALE + OFFSET.
SCALE = 0.0001
OFFSET = -0.1
NODATA = 0


def center_wavelengths_nm(bands: tuple[str, ...] = DEFAULT_BANDS) -> tuple[float, ...]:
    """Centre wavelengths of ``bands`` (Earth Search asset keys) in nanometres."""
    return tuple(BANDS[name].center_wavelength_um * 1000.0 for name in bands)


class SCL(IntEnum):
    """Sen2Cor scene classification (SCL) values of Sentinel-2 L2A."""

    NO_DATA = 0
    SATURATED_OR_DEFECTIVE = 1
    DARK_AREA_PIXELS = 2
    CLOUD_SHADOW = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW = 11


#: SCL value -> the class name the STAC ``classification:classes`` of an SCL asset carry.
SCL_CLASSES: dict[int, str] = {int(value): name for value, name in {
    SCL.NO_DATA: "no_data",
    SCL.SATURATED_OR_DEFECTIVE: "saturated_or_defective",
    SCL.DARK_AREA_PIXELS: "dark_area_pixels",
    SCL.CLOUD_SHADOW: "cloud_shadows",
    SCL.VEGETATION: "vegetation",
    SCL.NOT_VEGETATED: "not_vegetated",
    SCL.WATER: "water",
    SCL.UNCLASSIFIED: "unclassified",
    SCL.CLOUD_MEDIUM_PROBABILITY: "cloud_medium_probability",
    SCL.CLOUD_HIGH_PROBABILITY: "cloud_high_probability",
    SCL.THIN_CIRRUS: "thin_cirrus",
    SCL.SNOW: "snow",
}.items()}


def eo_band(name: str) -> dict[str, Any]:
    """The ``eo:bands`` entry of an asset holding band ``name``."""
    info = BANDS.get(name)
    if info is None:
        return {"name": name}
    return {
        "name": info.s2_name,
        "common_name": _COMMON.get(name, name),
        "center_wavelength": info.center_wavelength_um,
        "full_width_half_max": info.full_width_half_max_um,
    }


_COMMON = {
    "nir08": "nir08",
    "nir09": "nir09",
    "swir16": "swir16",
    "swir22": "swir22",
    "rededge1": "rededge",
    "rededge2": "rededge",
    "rededge3": "rededge",
}


def to_reflectance(dn: _Array, *, scale: float = SCALE, offset: float = OFFSET) -> _Array:
    """Digital numbers to surface reflectance (nodata must be masked by the caller)."""
    return dn * scale + offset
