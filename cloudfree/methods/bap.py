"""``bap``: best-available pixel, the best-scored clear observation taken as is (FORCE-like).

Every clear observation gets a parametric score, a weighted sum of three terms in 0..1:

``cloud``
    the distance in pixels to the nearest unusable pixel (cloud, shadow, nodata) of the
    same date, ``min(d, cloud_distance_px) / cloud_distance_px``: the method's
    neighbourhood, so mosaics compute it with a halo of ``cloud_distance_px``;
``day``
    a Gaussian of the distance in days to the target date, ``exp(-0.5 (Δ / day_sigma)²)``;
    Δ is the circular day-of-year distance (FORCE's DOY score: the same season of another
    year counts as near), or with ``seasonal=False`` the absolute distance in days;
``haze``
    ``min_t(blue) / blue``, the pixel's darkest clear value of the haze band divided by this
    date's, so the clearest date scores 1 (off when no haze band is given).

Ties go to the date nearest in absolute time, then the earliest. ``source_day`` is the
chosen date; ``fill`` is ``observed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from cloudfree.errors import InvalidParameterError
from cloudfree.methods._driver import check_number
from cloudfree.methods._provenance import FILL_NODATA, FILL_OBSERVED

DEFAULTS: dict[str, Any] = {
    "cloud_weight": 0.4,  # FORCE's SCORE_CLOUD_WEIGHT
    "day_weight": 1.0,  # FORCE's SCORE_DOY_WEIGHT
    "haze_weight": 0.3,  # FORCE's SCORE_HAZE_WEIGHT
    "cloud_distance_px": 20.0,  # saturation: 200 m at 10 m
    "day_sigma": 30.0,  # days
    "seasonal": True,  # day-of-year distance
    "haze_band": None,
}
#: Names looked for as the haze band when none is given.
HAZE_BAND_NAMES: tuple[str, ...] = ("blue", "B02", "b02")

Core = tuple[NDArray[Any], NDArray[Any], NDArray[Any]]


def check(params: dict[str, Any], *, n_bands: int) -> dict[str, Any]:
    """The parameters checked in place: weights >= 0 (one > 0), distances > 0."""
    for name in ("cloud_weight", "day_weight", "haze_weight"):
        check_number(params, name, positive=False)
    for name in ("cloud_distance_px", "day_sigma"):
        check_number(params, name, positive=True)
    if params["cloud_weight"] + params["day_weight"] + params["haze_weight"] == 0:
        raise InvalidParameterError("cloud_weight", 0.0, "give at least one weight > 0")
    if not isinstance(params["seasonal"], bool):
        raise InvalidParameterError("seasonal", params["seasonal"], "give True or False")
    band = params["haze_band"]
    if band is not None and (isinstance(band, bool) or not isinstance(band, int | np.integer)
                             or not 0 <= band < n_bands):
        raise InvalidParameterError("haze_band", band,
                                    f"give a band index 0..{n_bands - 1} or None")
    params["haze_band"] = None if band is None else int(band)
    return params


def resolve_haze_band(params: dict[str, Any], bands: list[Any]) -> None:
    """``haze_band`` given by name (or ``"auto"``: the first of :data:`HAZE_BAND_NAMES`
    present) becomes the band's index, in place."""
    band = params.get("haze_band", "auto")
    if band == "auto":
        found = [name for name in HAZE_BAND_NAMES if name in bands]
        params["haze_band"] = bands.index(found[0]) if found else None
    elif isinstance(band, str):
        if band not in bands:
            raise InvalidParameterError("haze_band", band, f"give one of the bands {bands}")
        params["haze_band"] = bands.index(band)


def halo_px(params: dict[str, Any]) -> int:
    """The neighbourhood the score reads: the cloud distance's saturation (0 when unused)."""
    return int(math.ceil(params["cloud_distance_px"])) if params["cloud_weight"] > 0 else 0


def neighbourhood(usable: NDArray[np.bool_], params: dict[str, Any]) -> NDArray[np.float32]:
    """The per-pixel input that needs a halo: :func:`distance_to_unusable`."""
    return distance_to_unusable(usable, cap=params["cloud_distance_px"])


def distance_to_unusable(usable: NDArray[np.bool_], *, cap: float) -> NDArray[np.float32]:
    """(T, H, W) Euclidean distance in pixels from each pixel to the nearest unusable pixel
    of its own frame, capped at ``cap`` (frames with nothing unusable get ``cap``).

    A loop over dates, each frame one ``distance_transform_edt``. Exact within a chunk
    computed with a halo of at least ``cap`` pixels.
    """
    out = np.full(usable.shape, cap, np.float32)
    for t in range(usable.shape[0]):
        frame = usable[t]
        if not frame.any():
            out[t] = 0
        elif not frame.all():
            np.minimum(ndimage.distance_transform_edt(frame), cap, out=out[t], casting="unsafe")
    return out


def _day_distance(days: NDArray[np.float64], target_day: float, seasonal: bool
                  ) -> NDArray[np.float64]:
    delta = np.abs(days - target_day)
    if seasonal:
        delta = np.mod(delta, 365.25)
        delta = np.minimum(delta, 365.25 - delta)
    return delta


def core(values: NDArray[Any], usable: NDArray[np.bool_], days: NDArray[np.float64],
         target_day: float, params: dict[str, Any], neighbourhood: NDArray[Any] | None = None
         ) -> Core:
    """(reflectance, source day, fill) of a (T, C, H, W) stack NaN exactly where not usable;
    ``neighbourhood``: :func:`distance_to_unusable`, computed here when not given."""
    cloud_distance = neighbourhood
    if cloud_distance is None and params["cloud_weight"] > 0:
        cloud_distance = distance_to_unusable(usable, cap=params["cloud_distance_px"])
    # ties (e.g. the same day of year in two years) go to the nearest date in time
    tie_break = -1e-9 * np.abs(days - target_day)
    score = np.broadcast_to(tie_break[:, None, None], usable.shape).copy()
    if params["cloud_weight"] > 0:
        cap = params["cloud_distance_px"]
        assert cloud_distance is not None  # computed above whenever the weight is > 0
        score += params["cloud_weight"] / cap * np.minimum(cloud_distance, cap)
    if params["day_weight"] > 0:
        delta = _day_distance(days, target_day, params["seasonal"])
        day_score = np.exp(-0.5 * (delta / params["day_sigma"]) ** 2)
        score += (params["day_weight"] * day_score)[:, None, None]
    if params["haze_weight"] > 0 and params["haze_band"] is not None:
        haze = values[:, params["haze_band"]]
        darkest = np.fmin.reduce(haze, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            haze_score = np.where(haze > 0, np.clip(darkest / haze, 0, 1), 1.0)
        score += params["haze_weight"] * np.nan_to_num(haze_score, nan=0.0)
    score[~usable] = -np.inf
    pick = np.argmax(score, axis=0)
    refl = np.take_along_axis(values, pick[None, None], axis=0)[0]  # NaN where none usable
    any_clear = usable.any(axis=0)
    source = np.where(any_clear, days[pick], np.nan)
    fill = np.where(any_clear, FILL_OBSERVED, FILL_NODATA)
    return refl, source, fill
