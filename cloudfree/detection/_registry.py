"""The registry of cloud and shadow detectors: each one declared once, with what it needs.

As :mod:`cloudfree.methods._registry`: one table by name. The CLI's ``--mask`` choices, the
flows', the evaluation's, the halo a mosaic reads for the mask and the bad-input checks all
come from :data:`DETECTORS`. The implementation lives in the module named by
:attr:`DetectorSpec.module` (a function ``detect(inp: DetectionInput, **params) ->
Detection``) and is imported only when the detector runs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from cloudfree.errors import InvalidParameterError

Use = Literal["mosaic", "evaluation"]
BoolArray = NDArray[np.bool_]

#: ESA band ids by the asset keys the pipeline uses (Earth Search names) and their
#: own ids; every detector speaks ESA ids (``B02``, ``B8A``...).
_ASSET_TO_ESA = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}


def esa_band_name(name: str) -> str:
    """``name`` as an ESA band id (``blue`` -> ``B02``, ``b8a`` -> ``B8A``); a name that is
    no Sentinel-2 band (``NDVI01``) comes back upper-cased and matches no requirement."""
    key = str(name).strip()
    if key.lower() in _ASSET_TO_ESA:
        return _ASSET_TO_ESA[key.lower()]
    upper = key.upper()
    if len(upper) == 2 and upper[0] == "B" and upper[1].isdigit():  # B2 -> B02
        upper = f"B0{upper[1]}"
    return upper


@dataclass(frozen=True)
class DetectionInput:
    """What a detector sees: a series of one place, decoded.

    Attributes:
        bands: (T, C, H, W) float32 reflectance (0..1, L1C top of atmosphere or L2A
            surface); NaN where there is no data.
        band_names: the C bands as ESA ids (:func:`esa_band_name`).
        days: (T,) float days since 1970-01-01 (time of day included when known).
        resolution_m: the pixel size.
        scl: (T, H, W) uint8 Sen2Cor scene classification, or None.
        sun_zenith_deg, sun_azimuth_deg: (T,) per date, or None when unknown (a detector
            that needs them computes them with :mod:`cloudfree.detection.sun` from
            ``days`` and ``lonlat``).
        lonlat: the (lon, lat) of the series' centre, or None.
        level: ``"L1C"``, ``"L2A"`` or None when unknown.
    """

    bands: NDArray[np.float32]
    band_names: tuple[str, ...]
    days: NDArray[np.float64]
    resolution_m: float
    scl: NDArray[np.uint8] | None = None
    sun_zenith_deg: NDArray[np.float64] | None = None
    sun_azimuth_deg: NDArray[np.float64] | None = None
    lonlat: tuple[float, float] | None = None
    level: str | None = None

    def band(self, *names: str) -> NDArray[np.float32] | None:
        """(T, H, W): the first of ``names`` (ESA ids) the input has, or None."""
        for name in names:
            if name in self.band_names:
                return self.bands[:, self.band_names.index(name)]
        return None

    @property
    def nodata(self) -> BoolArray:
        """(T, H, W): no finite value in any band, or every band 0 (fill)."""
        data = self.bands
        out: BoolArray = np.all(~np.isfinite(data) | (data == 0), axis=1)
        return out


@dataclass
class Detection:
    """A detector's result: (T, H, W) masks. ``cloud`` holds cloud, thin cloud and haze
    (and their dilation), ``shadow`` cloud shadow; a pixel can be neither (clear), or no
    data. ``parameters``: what the detector ran with (recorded in items)."""

    cloud: BoolArray
    shadow: BoolArray
    nodata: BoolArray
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def invalid(self) -> BoolArray:
        """Not usable as an observation: cloud, shadow or no data."""
        out: BoolArray = self.cloud | self.shadow | self.nodata
        return out

    @property
    def clear(self) -> BoolArray:
        out: BoolArray = ~self.invalid
        return out


@dataclass(frozen=True)
class DetectorSpec:
    """One detector's declaration.

    Attributes:
        name: what users type (``--mask NAME``).
        summary: one line for help texts and the README.
        module: the implementing module under :mod:`cloudfree.detection`.
        bands: the band groups it needs, as ESA ids: one band of each group (the first
            present is used), e.g. ``(("B02", "B03"), ("B08", "B8A"))``.
        needs_scl: it reads the Sen2Cor SCL band (L2A only).
        levels: the processing levels it is made for (None: any).
        min_dates: the fewest dates it works with (1 for single-date detectors).
        learned: it runs trained weights.
        weights_env: for a detector whose weights are given by local path: the
            environment variable that names them (never downloaded).
        reach_m: how far from a pixel its result there looks, in metres, at the default
            parameters (the mosaic halo); :meth:`halo_px` turns it into pixels.
        per_date: its result on a date depends on that date's data alone (no other
            dates), so a change to one date changes only that date's mask.
        uses: where it can be used.
    """

    name: str
    summary: str
    module: str
    bands: tuple[tuple[str, ...], ...] = ()
    needs_scl: bool = False
    levels: tuple[str, ...] | None = None
    min_dates: int = 1
    learned: bool = False
    weights_env: str | None = None
    reach_m: float = 0.0
    per_date: bool = False
    uses: tuple[Use, ...] = ("mosaic", "evaluation")

    def load(self) -> Any:
        return importlib.import_module(f"cloudfree.detection.{self.module}")

    def halo_px(self, resolution_m: float, params: Mapping[str, Any] | None = None) -> int:
        """The halo a chunk or tile needs so that its mask equals a whole run's: the
        module's ``reach_m(params)`` when it has one, else :attr:`reach_m`."""
        reach = getattr(self.load(), "reach_m", None)
        metres = float(reach(dict(params or {}))) if callable(reach) else self.reach_m
        return math.ceil(metres / resolution_m)

    def missing(self, band_names: Sequence[str], *, has_scl: bool, n_dates: int,
                level: str | None = None) -> list[str]:
        """What of its needs an input lacks, in words (empty: it can run)."""
        have = {esa_band_name(b) for b in band_names}
        out = [" or ".join(group) for group in self.bands if not have & set(group)]
        if self.needs_scl and not has_scl:
            out.append("scl (the Sen2Cor scene classification, L2A)")
        if n_dates < self.min_dates:
            out.append(f"at least {self.min_dates} dates (got {n_dates})")
        if self.levels is not None and level is not None and level not in self.levels:
            out.append(f"{'/'.join(self.levels)} input (got {level})")
        return out


# The multi-temporal detector's reach: its shadow confirmation looks up to 1 km towards the
# sun (cloudfree.detection.multitemporal.reach_m gives the exact figure with its dilation).
DETECTORS: dict[str, DetectorSpec] = {spec.name: spec for spec in (
    DetectorSpec("scl", "the Sen2Cor scene classification: cloud, cirrus and shadow classes, "
                 "dilated", "scl", needs_scl=True, levels=("L2A",), per_date=True),
    DetectorSpec("multitemporal", "per date against a robust reference of nearby clear dates: "
                 "a blue/visible brightness excess (cloud, haze), a NIR+SWIR darkening "
                 "confirmed by projected cloud (shadow); combined with SCL when present",
                 "multitemporal", bands=(("B02", "B01", "B03", "B04", "B05"),
                                         ("B08", "B8A"), ("B11", "B12")),
                 min_dates=4),
    # s2cloudless: the ten L1C bands of its model (masking.S2CLOUDLESS_BANDS); cloud only.
    DetectorSpec("s2cloudless", "Sentinel Hub's single-date LightGBM cloud model (its "
                 "weights ship in its wheel), L1C only; cloud only, no shadow",
                 "s2cloudless",
                 bands=tuple((b,) for b in ("B01", "B02", "B04", "B05", "B08", "B8A", "B09",
                                            "B10", "B11", "B12")), levels=("L1C",),
                 reach_m=140.0, per_date=True),
    # OmniCloudMask: red, green, NIR (its inputs, in that order); L1C or L2A.
    DetectorSpec("omnicloudmask", "OmniCloudMask's learned cloud and shadow model, from "
                 "weights at a local path (never downloaded; needs the omnicloudmask "
                 "package)", "omnicloud",
                 bands=(("B04",), ("B03",), ("B8A", "B08")), learned=True,
                 weights_env="CLOUDFREE_OMNICLOUDMASK_WEIGHTS", reach_m=3000.0,
                 per_date=True),
)}

#: What ``auto`` tries, best first: the first whose needs an input meets runs.
AUTO_ORDER: tuple[str, ...] = ("multitemporal", "scl", "s2cloudless")
#: ``auto``'s order on L1C input: s2cloudless's model is made for top-of-atmosphere
#: reflectance, and an L1C series has no SCL to seed the multi-temporal reference.
AUTO_ORDER_L1C: tuple[str, ...] = ("s2cloudless", "multitemporal", "scl")


def auto_order(level: str | None) -> tuple[str, ...]:
    """What ``auto`` tries, best first, on input of ``level``."""
    return AUTO_ORDER_L1C if level == "L1C" else AUTO_ORDER


def list_detectors(use: Use | None = None) -> tuple[str, ...]:
    """Detector names in registry order (``auto`` is not one; see :func:`choose`)."""
    return tuple(n for n, s in DETECTORS.items() if use is None or use in s.uses)


def get_detector(name: str, use: Use | None = None) -> DetectorSpec:
    """The declaration of detector ``name``; a clear error naming the choices otherwise."""
    spec = DETECTORS.get(name)
    if spec is None or (use is not None and use not in spec.uses):
        raise InvalidParameterError(
            "mask", name, f"choose one of {', '.join((*list_detectors(use), 'auto'))}")
    return spec


def runnable(band_names: Sequence[str], *, has_scl: bool, n_dates: int,
             level: str | None = None, weights: Mapping[str, Any] | None = None) -> list[str]:
    """The detectors whose needs an input meets, in registry order. A learned detector is
    listed only when its weights are given: in ``weights`` (detector name -> local path)
    or in its environment variable (:attr:`DetectorSpec.weights_env`)."""
    return [name for name, spec in DETECTORS.items()
            if not spec.missing(band_names, has_scl=has_scl, n_dates=n_dates, level=level)
            and (spec.weights_env is None or _weights_given(spec, weights))]


def _weights_given(spec: DetectorSpec, weights: Mapping[str, Any] | None = None) -> bool:
    import os

    if weights and weights.get(spec.name):
        return True
    return bool(spec.weights_env and os.environ.get(spec.weights_env))


def choose(name: str, band_names: Sequence[str], *, has_scl: bool, n_dates: int,
           level: str | None = None, weights: Mapping[str, Any] | None = None) -> str:
    """The detector ``name`` resolves to for an input: ``auto`` becomes the first of
    :func:`auto_order` (:data:`AUTO_ORDER`, :data:`AUTO_ORDER_L1C` on L1C) that can run; any other name is checked, and a detector that
    cannot run is :class:`~cloudfree.errors.MissingDetectorInputError`, naming what it
    lacks and the detectors that would run. (A learned detector named explicitly passes
    here without weights: running it raises
    :class:`~cloudfree.errors.DetectorWeightsError`, which says what to give.)"""
    from cloudfree.errors import MissingDetectorInputError

    can = runnable(band_names, has_scl=has_scl, n_dates=n_dates, level=level, weights=weights)
    if name == "auto":
        order = auto_order(level)
        for candidate in order:
            if candidate in can:
                return candidate
        lacks = [f"for {candidate}, " + " and ".join(DETECTORS[candidate].missing(
            band_names, has_scl=has_scl, n_dates=n_dates, level=level))
            for candidate in order]
        raise MissingDetectorInputError("auto", lacks, list(band_names), can)
    spec = get_detector(name)
    lacks = spec.missing(band_names, has_scl=has_scl, n_dates=n_dates, level=level)
    if lacks:
        raise MissingDetectorInputError(name, lacks, list(band_names), can)
    return name


def detect(name: str, inp: DetectionInput, **params: Any) -> Detection:
    """Run detector ``name`` (``auto`` resolved by :func:`choose`) on a numpy input;
    ``parameters`` of the result start with ``{"detector": resolved name}``."""
    given = {name: params["weights"]} if params.get("weights") else None
    resolved = choose(name, inp.band_names, has_scl=inp.scl is not None,
                      n_dates=inp.bands.shape[0], level=inp.level, weights=given)
    function: Callable[..., Detection] = DETECTORS[resolved].load().detect
    result = function(inp, **params)
    result.parameters = {"detector": resolved, **result.parameters}
    return result
