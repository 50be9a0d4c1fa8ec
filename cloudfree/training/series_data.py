"""Training series from files in the evaluation format: real cubes without a STAC API.

A real Sentinel-2 series saved as an evaluation case (``bands``, ``band_names``, ``dates``,
``cloud_mask``; :func:`cloudfree.evaluation.harness.load_case` reads and checks it) becomes a
:class:`~cloudfree.training.stac_data.TrainingCube`, and the cube sampler draws from it as
from a STAC cube: crops of the nearest dates around a target, the series' own real cloud
masks pasted onto its clear pixels, Perlin clouds and shadows, quarter turns and flips.
Losses count only pixels the file's ``cloud_mask`` calls clear.

Which files may be trained on is the user's decision, recorded in the model card with each
file's SHA-256. For cloudfree's shipped weights, ``../shared/data/README.md`` says which:
``l2a_31UES_146_20m.npz`` may be trained on; the other cases are for evaluation only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudfree.errors import InvalidParameterError
from cloudfree.grid import Tile
from cloudfree.models.weights import MODEL_BANDS, canonical_band

if TYPE_CHECKING:
    from cloudfree.training.stac_data import TrainingCube


@dataclass(frozen=True)
class SeriesSource:
    """Where a training series came from: a file, its content hash and its extent."""

    path: str
    sha256: str
    collection: str  # the file's stem, where a STAC source names its collection
    bbox: tuple[float, float, float, float]  # pixel box (0, 0, W, H): files need no CRS
    datetime: str  # first/last date
    resolution_m: float
    masking: str = "the file's cloud_mask"
    scene_ids: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """The file's content: a resume on another file says it is not exact."""
        return self.sha256[:16]

    def record(self) -> dict[str, object]:
        """Plain values for the model card."""
        return {"path": self.path, "sha256": self.sha256, "dates": self.datetime,
                "n_dates": len(self.scene_ids), "resolution_m": self.resolution_m}


def series_cube(path: str | Path) -> TrainingCube:
    """The evaluation-format series at ``path`` as a training cube.

    Raises :class:`~cloudfree.errors.InvalidCaseError` for a file that is not a valid case
    and :class:`~cloudfree.errors.InvalidParameterError` for bands the model does not know."""
    from cloudfree.evaluation.harness import load_case
    from cloudfree.training.stac_data import TrainingCube

    path = Path(path)
    case = load_case(path)
    try:
        bands = [canonical_band(name) for name in case.band_names]
    except InvalidParameterError as exc:
        raise InvalidParameterError("series", str(path), f"its bands {list(case.band_names)} "
                                    f"are not all model bands ({', '.join(MODEL_BANDS)})") from exc
    unknown = [b for b in bands if b not in MODEL_BANDS]
    if unknown or len(set(bands)) != len(bands):
        raise InvalidParameterError("series", str(path), f"its bands {list(case.band_names)} "
                                    f"must be distinct model bands ({', '.join(MODEL_BANDS)})")
    order = sorted(range(len(bands)), key=lambda i: MODEL_BANDS.index(bands[i]))
    reflectance = case.bands[:, order].astype(np.float32)
    band_ids = tuple(bands[i] for i in order)
    if {"B04", "B08"} <= set(band_ids):
        red, nir = reflectance[:, band_ids.index("B04")], reflectance[:, band_ids.index("B08")]
        ndvi = np.clip((nir - red) / np.maximum(np.abs(nir + red), 1e-6), -1.0, 1.0)
        reflectance = np.concatenate([reflectance, ((ndvi + 1) / 2)[:, None]], axis=1)
        band_ids = (*band_ids, "ndvi")
    days = case.days
    order_t = np.argsort(days, kind="stable")
    height, width = reflectance.shape[-2:]
    source = SeriesSource(
        path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        collection=path.stem, bbox=(0.0, 0.0, float(width), float(height)),
        datetime=f"{case.dates[order_t[0]][:10]}/{case.dates[order_t[-1]][:10]}",
        resolution_m=case.resolution_m, scene_ids=tuple(case.dates[i] for i in order_t))
    clear = ~case.cloud_mask[order_t] & np.isfinite(reflectance[order_t]).all(axis=1)
    tile = Tile(tile_id=path.stem, epsg=0, bounds=(0.0, 0.0, width * case.resolution_m,
                                                   height * case.resolution_m),
                resolution_m=case.resolution_m)
    return TrainingCube(reflectance=reflectance[order_t], clear=clear,
                        days=days[order_t].astype(np.float64), bands=band_ids, tile=tile,
                        source=source)
