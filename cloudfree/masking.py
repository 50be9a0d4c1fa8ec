"""Cloud masking: clear-observation masks from the Sentinel-2 scene classification (SCL)
or s2cloudless (L1C), morphological clean-up, and cloud-shadow projection."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from scipy import ndimage

from cloudfree.errors import InvalidParameterError
from cloudfree.sentinel2 import SCL, SCL_CLASSES

BoolArray = NDArray[np.bool_]
_Scalar = TypeVar("_Scalar", bound=np.generic)

__all__ = [
    "DEFAULT_DILATE_CLASSES", "DEFAULT_DILATION_M", "DEFAULT_INVALID_CLASSES",
    "S2CLOUDLESS_BANDS", "SCL_CLASSES", "cast_shadow", "dilate", "erode", "opening",
    "project_shadows", "s2cloudless_clear_mask", "s2cloudless_probability", "scl_clear_mask",
    "shadow_offset_px",
]

#: Classes never used as observations: no data, defective, cloud shadow, clouds and cirrus.
DEFAULT_INVALID_CLASSES: tuple[int, ...] = tuple(int(c) for c in (
    SCL.NO_DATA, SCL.SATURATED_OR_DEFECTIVE, SCL.CLOUD_SHADOW,
    SCL.CLOUD_MEDIUM_PROBABILITY, SCL.CLOUD_HIGH_PROBABILITY, SCL.THIN_CIRRUS,
))
#: Classes grown by the dilation: SCL under-detects cloud and shadow fringes.
DEFAULT_DILATE_CLASSES: tuple[int, ...] = tuple(int(c) for c in (
    SCL.CLOUD_SHADOW, SCL.CLOUD_MEDIUM_PROBABILITY, SCL.CLOUD_HIGH_PROBABILITY, SCL.THIN_CIRRUS,
))
DEFAULT_DILATION_M = 100.0


def _check_classes(name: str, classes: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(c) for c in classes)
    unknown = sorted(set(out) - set(SCL_CLASSES))
    if unknown:
        raise InvalidParameterError(
            name, list(out), f"unknown SCL classes {unknown}; valid are 0..11 ({SCL_CLASSES})"
        )
    return out


def erode(mask: BoolArray, *, radius_px: float) -> BoolArray:
    """Shrink a boolean (..., y, x) mask by a Euclidean radius in pixels, per 2-D frame."""
    if radius_px <= 0:
        return mask
    return ~dilate(~mask, radius_px=radius_px)


def opening(mask: BoolArray, *, radius_px: float) -> BoolArray:
    """Morphological opening (erosion, then dilation): removes specks narrower than
    about ``2 * radius_px`` (bright roofs, glint) and keeps larger clouds whole."""
    if radius_px <= 0:
        return mask
    return dilate(erode(mask, radius_px=radius_px), radius_px=radius_px)


def dilate(mask: BoolArray, *, radius_px: float) -> BoolArray:
    """Grow a boolean (..., y, x) mask by a Euclidean radius in pixels, per 2-D frame:
    True where a True pixel lies within ``radius_px`` (outside the array counts as False).

    The same mask as ``distance_transform_edt(~frame) <= radius_px`` per frame, built as
    the union of row-shifted 1-D maximum filters (one per disk row width): O(radius)
    passes over the whole stack, several times faster than a distance transform per frame.
    """
    if radius_px <= 0 or not mask.any():
        return mask.copy()
    mask = np.ascontiguousarray(mask, dtype=bool)
    r = int(math.floor(radius_px))
    data = mask.view(np.uint8)
    out = np.zeros_like(mask)
    rows = mask.shape[-2]
    widths: dict[int, NDArray[np.uint8]] = {}
    for dy in range(-r, r + 1):
        if abs(dy) >= rows:
            continue
        w = int(math.floor(math.sqrt(max(radius_px * radius_px - dy * dy, 0.0))))
        if w not in widths:
            widths[w] = ndimage.maximum_filter1d(data, size=2 * w + 1, axis=-1,
                                                 mode="constant", cval=0)
        grown = widths[w].view(bool)
        if dy >= 0:  # a pixel dy rows below a True pixel
            out[..., dy:, :] |= grown[..., : rows - dy, :]
        else:
            out[..., :dy, :] |= grown[..., -dy:, :]
    return out


def scl_clear_mask(
    scl: xr.DataArray,
    *,
    resolution_m: float,
    invalid_classes: Iterable[int] = DEFAULT_INVALID_CLASSES,
    dilate_classes: Iterable[int] = DEFAULT_DILATE_CLASSES,
    dilation_m: float = DEFAULT_DILATION_M,
    opening_m: float = 0.0,
) -> xr.DataArray:
    """Clear-observation mask (True = usable) from an SCL cube (time, y, x).

    A pixel is clear when its class is not in ``invalid_classes`` and it lies
    further than ``dilation_m`` from any pixel of ``dilate_classes``. With
    ``opening_m`` > 0, the ``dilate_classes`` mask is first opened with that radius,
    so isolated false detections are not grown. Works lazily on dask arrays: the
    clean-up runs per chunk with a halo of the radii.
    """
    invalid = _check_classes("invalid_classes", invalid_classes)
    grow = _check_classes("dilate_classes", dilate_classes)
    if dilation_m < 0:
        raise InvalidParameterError("dilation_m", dilation_m, "give a distance >= 0 metres")
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    if opening_m < 0:
        raise InvalidParameterError("opening_m", opening_m, "give a distance >= 0 metres")
    radius_px = dilation_m / resolution_m
    open_px = opening_m / resolution_m

    def _clear(block: NDArray[Any]) -> BoolArray:
        bad = np.isin(block, invalid)
        if grow:
            cloud = opening(np.isin(block, grow), radius_px=open_px)
            if open_px > 0:  # opened-away specks no longer count
                bad &= ~(np.isin(block, grow) & ~cloud)
            bad |= dilate(cloud, radius_px=radius_px)
        return ~bad

    clear = _blockwise_2d(scl.data, _clear, halo_px=radius_px + 2 * open_px)
    out = xr.DataArray(clear, coords=scl.coords, dims=scl.dims, name="clear")
    out.attrs.update(
        invalid_classes=list(invalid), dilate_classes=list(grow), dilation_m=float(dilation_m),
        opening_m=float(opening_m),
    )
    return out


def _blockwise_2d(data: Any, fn: Callable[[NDArray[Any]], BoolArray], *, halo_px: float) -> Any:
    """Apply ``fn`` to numpy data, or per dask chunk with a spatial halo (last two axes)."""
    if not hasattr(data, "map_overlap"):
        return fn(np.asarray(data))
    depth = {i: 0 for i in range(data.ndim)}
    depth[data.ndim - 1] = depth[data.ndim - 2] = int(np.ceil(halo_px))
    return data.map_overlap(fn, depth=depth, boundary="none", dtype=bool)


# --- cloud shadows ------------------------------------------------------------------------


def shadow_offset_px(
    *, cloud_height_m: float, sun_zenith_deg: float, sun_azimuth_deg: float, resolution_m: float
) -> tuple[float, float]:
    """(rows, cols) from a cloud to its shadow: height x tan(zenith), away from the sun.

    The azimuth is clockwise from north; rows grow southwards, columns eastwards.
    """
    length = cloud_height_m * math.tan(math.radians(sun_zenith_deg)) / resolution_m
    azimuth = math.radians(sun_azimuth_deg)
    return length * math.cos(azimuth), -length * math.sin(azimuth)


def cast_shadow(opacity: NDArray[_Scalar], *, offset_px: tuple[float, float]) -> NDArray[_Scalar]:
    """``opacity`` (H, W) shifted by ``offset_px`` (rounded); what enters from outside
    the array counts as cloud-free."""
    dr, dc = (int(round(o)) for o in offset_px)
    out = np.zeros_like(opacity)
    h, w = opacity.shape
    if abs(dr) < h and abs(dc) < w:
        out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = opacity[
            max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
        ]
    return out


def project_shadows(
    cloud: NDArray[Any],
    *,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
    resolution_m: float,
    cloud_heights_m: Sequence[float] = tuple(range(400, 4001, 200)),
    dark: NDArray[Any] | None = None,
) -> BoolArray:
    """Where the shadows of ``cloud`` (H, W) can fall, for cloud tops at any of
    ``cloud_heights_m``: the union of the cloud mask shifted away from the sun.

    The heights are unknown from one image, so the search covers a range (as Fmask
    does); pass ``dark`` (e.g. NIR below a threshold) to keep only pixels dark enough
    to be in shadow. Cloud pixels themselves are not shadow.
    """
    if not 0 <= sun_zenith_deg < 90:
        raise InvalidParameterError("sun_zenith_deg", sun_zenith_deg, "give 0 <= zenith < 90")
    if resolution_m <= 0:
        raise InvalidParameterError("resolution_m", resolution_m, "give a positive resolution")
    cloud = np.asarray(cloud, dtype=bool)
    shadow = np.zeros_like(cloud)
    done: set[tuple[int, int]] = set()
    for height in cloud_heights_m:
        dr, dc = shadow_offset_px(cloud_height_m=height, sun_zenith_deg=sun_zenith_deg,
                                  sun_azimuth_deg=sun_azimuth_deg, resolution_m=resolution_m)
        key = (int(round(dr)), int(round(dc)))
        if key not in done:
            done.add(key)
            shadow |= cast_shadow(cloud, offset_px=key)
    shadow &= ~cloud
    if dark is not None:
        shadow &= np.asarray(dark, dtype=bool)
    return shadow


# --- s2cloudless (L1C) --------------------------------------------------------------------

#: The ten L1C bands s2cloudless's model takes, in its order.
S2CLOUDLESS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12",
)


def s2cloudless_probability(l1c: NDArray[Any], band_names: Sequence[str]) -> NDArray[Any]:
    """Cloud probability (T, H, W) from L1C top-of-atmosphere reflectance (T, C, H, W)
    with s2cloudless's LightGBM model, which ships in its wheel and runs offline.

    ``band_names`` name the C bands (ESA ids, e.g. "B01" ... "B12", "B8A"); the ten
    the model needs, B10 included, must be among them.
    """
    names = [str(b).upper() for b in band_names]
    missing = [b for b in S2CLOUDLESS_BANDS if b not in names]
    if missing:
        raise InvalidParameterError(
            "band_names", list(band_names),
            f"s2cloudless needs the L1C bands {list(S2CLOUDLESS_BANDS)}; missing {missing}. "
            "For L2A input use the SCL band instead.",
        )
    try:
        from s2cloudless import S2PixelCloudDetector  # type: ignore[attr-defined]  # untyped
    except ImportError as exc:  # the optional [l1c] extra
        raise InvalidParameterError(
            "masking", "s2cloudless", "install it: pip install 'cloudfree[l1c]'"
        ) from exc
    order = [names.index(b) for b in S2CLOUDLESS_BANDS]
    data = np.moveaxis(np.asarray(l1c, dtype=np.float32)[:, order], 1, -1)  # (T, H, W, 10)
    detector = S2PixelCloudDetector(all_bands=False, average_over=1, dilation_size=0)
    probability: NDArray[Any] = detector.get_cloud_probability_maps(np.nan_to_num(data, nan=0.0))
    return probability


def s2cloudless_clear_mask(
    l1c: NDArray[Any],
    band_names: Sequence[str],
    *,
    resolution_m: float,
    threshold: float = 0.4,
    opening_m: float = 20.0,
    dilation_m: float = DEFAULT_DILATION_M,
) -> BoolArray:
    """Clear mask (T, H, W) from s2cloudless: probability above ``threshold`` is cloud,
    opened by ``opening_m`` and dilated by ``dilation_m``; nodata (NaN or 0 in every
    band) is never clear."""
    if not 0 < threshold < 1:
        raise InvalidParameterError("threshold", threshold, "give a probability in (0, 1)")
    probability = s2cloudless_probability(l1c, band_names)
    cloud = opening(probability > threshold, radius_px=opening_m / resolution_m)
    cloud = dilate(cloud, radius_px=dilation_m / resolution_m)
    data = np.asarray(l1c)
    nodata = np.all(np.isnan(data) | (data == 0), axis=1)
    clear: BoolArray = ~cloud & ~nodata
    return clear
