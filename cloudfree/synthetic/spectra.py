"""Endmember spectra of the synthetic world: typical L2A surface reflectance per band."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cloudfree.sentinel2 import DEFAULT_BANDS, center_wavelengths_nm

#: Band order of every synthetic reflectance array: the bands cloudfree mosaics by default.
BANDS: tuple[str, ...] = DEFAULT_BANDS
#: Centre wavelengths of :data:`BANDS` in nanometres.
WAVELENGTHS_NM: NDArray[np.float32] = np.array(center_wavelengths_nm(BANDS), np.float32)

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
#: Each spectrum as a (C, 1, 1) float32 array, ready to broadcast over (C, H, W).
SPECTRA: dict[str, NDArray[np.float32]] = {
    k: np.array(v, np.float32)[:, None, None] for k, v in _S.items()
}
