"""Sentinel-2 band names, wavelengths and the L2A digital-number encoding."""

from __future__ import annotations

from dataclasses import dataclass


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


def eo_band(name: str) -> dict:
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


def to_reflectance(dn, *, scale: float = SCALE, offset: float = OFFSET):
    """Digital numbers to surface reflectance (nodata must be masked by the caller)."""
    return dn * scale + offset
