"""The s2cloudless detector: Sentinel Hub's single-date LightGBM cloud model on L1C
top-of-atmosphere reflectance (:func:`cloudfree.masking.s2cloudless_probability`; the model
ships in its wheel and runs offline). It detects cloud only: ``shadow`` is always empty."""

from __future__ import annotations

from typing import Any

import numpy as np

from cloudfree.detection._registry import Detection, DetectionInput
from cloudfree.errors import InvalidParameterError
from cloudfree.masking import dilate, opening, s2cloudless_probability

#: Defaults as :func:`cloudfree.masking.s2cloudless_clear_mask` (and Sentinel Hub's own
#: recommendation of 0.4 for the probability), not tuned on any evaluation case.
DEFAULT_THRESHOLD = 0.4
DEFAULT_OPENING_M = 20.0
DEFAULT_DILATION_M = 100.0


def reach_m(params: dict[str, Any]) -> float:
    """The opening (twice its radius) plus the dilation: the model itself is per pixel
    (``average_over=1``)."""
    return 2 * float(params.get("opening_m", DEFAULT_OPENING_M)) + float(
        params.get("dilation_m", DEFAULT_DILATION_M))


def detect(inp: DetectionInput, *, threshold: float = DEFAULT_THRESHOLD,
           opening_m: float = DEFAULT_OPENING_M,
           dilation_m: float = DEFAULT_DILATION_M) -> Detection:
    """Cloud where the probability is above ``threshold``, opened by ``opening_m`` (drops
    bright specks) and dilated by ``dilation_m``; no data (NaN or 0 in every band) is never
    cloud. The registry declares its ten L1C bands (B10 among them)."""
    if not 0 < threshold < 1:
        raise InvalidParameterError("threshold", threshold, "give a probability in (0, 1)")
    if opening_m < 0 or dilation_m < 0:
        raise InvalidParameterError("opening_m/dilation_m", (opening_m, dilation_m),
                                    "give distances of 0 m or more")
    probability = np.asarray(s2cloudless_probability(inp.bands, inp.band_names))
    cloud = opening(probability > threshold, radius_px=opening_m / inp.resolution_m)
    cloud = dilate(cloud, radius_px=dilation_m / inp.resolution_m)
    nodata = inp.nodata
    return Detection(cloud=cloud & ~nodata, shadow=np.zeros_like(nodata), nodata=nodata,
                     parameters={"threshold": float(threshold), "opening_m": float(opening_m),
                                 "dilation_m": float(dilation_m), "shadow": "not detected"})
