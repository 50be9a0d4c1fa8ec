"""Weights registry: model cards, loading shipped weights, mapping case bands onto a model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cloudfree.errors import InvalidParameterError
from cloudfree.models.generator import Generator

WEIGHTS_DIR = Path(__file__).parent / "weights"

#: Every band the generator knows: the 13 L1C bands (ESA ids) and NDVI stored as
#: (NDVI + 1) / 2 in 0..1 (the evaluation case convention). L2A bands are the same ids.
MODEL_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                "B8A", "B09", "B10", "B11", "B12", "ndvi")

#: Names accepted for each model band (case-insensitive): ESA ids, Earth Search names.
BAND_ALIASES: dict[str, str] = {
    "b1": "B01", "coastal": "B01", "blue": "B02", "b2": "B02", "green": "B03", "b3": "B03",
    "red": "B04", "b4": "B04", "rededge1": "B05", "b5": "B05", "rededge2": "B06", "b6": "B06",
    "rededge3": "B07", "b7": "B07", "nir": "B08", "b8": "B08", "nir08": "B8A",
    "b8a": "B8A", "nir09": "B09", "b9": "B09", "cirrus": "B10", "b10": "B10",
    "swir16": "B11", "b11": "B11", "swir22": "B12", "b12": "B12",
    "ndvi": "ndvi", "ndvi01": "ndvi",
}


def canonical_band(name: str) -> str:
    """A case band name -> the model band it is; raises InvalidParameterError if unknown."""
    key = str(name).strip()
    for band in MODEL_BANDS:
        if key.upper() == band.upper():
            return band
    if key.lower() in BAND_ALIASES:
        return BAND_ALIASES[key.lower()]
    raise InvalidParameterError("band", name, f"use one of {', '.join(MODEL_BANDS)} or "
                                              "Earth Search names (blue, nir08, swir16, ...)")


def default_normalisation(bands: Sequence[str] = MODEL_BANDS) -> dict[str, Any]:
    """``(x - offset) / scale`` per band: reflectance around 0.2, ndvi01 around 0.7."""
    return {"formula": "(x - offset) / scale",
            "offset": {b: 0.7 if b == "ndvi" else 0.2 for b in bands},
            "scale": {b: 0.15 for b in bands}}


@dataclass(frozen=True)
class ModelCard:
    """What a set of weights is: bands, normalisation, training data, metrics, version."""

    name: str
    version: str
    bands: tuple[str, ...]
    normalisation: dict[str, Any]
    training_data: str
    metrics: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        data["bands"] = tuple(data["bands"])
        return cls(**data)


def save_generator(model: Generator, card: ModelCard, directory: str | Path,
                   name: str | None = None) -> Path:
    """Write ``<name>.pt`` (a plain state dict, half precision) and ``<name>.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = name or card.name
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    torch.save(state, directory / f"{name}.pt")
    (directory / f"{name}.json").write_text(card.to_json())
    return directory / f"{name}.pt"


def load_generator(name: str = "default", *, device: str | torch.device = "cpu",
                   directory: str | Path = WEIGHTS_DIR) -> tuple[Generator, ModelCard]:
    """The shipped generator ``name`` in eval mode, and its card (weights_only load)."""
    directory = Path(directory)
    card_path, weights_path = directory / f"{name}.json", directory / f"{name}.pt"
    if not card_path.is_file() or not weights_path.is_file():
        raise InvalidParameterError("model", name, f"no {name}.pt/{name}.json in {directory}")
    card = ModelCard.from_json(card_path.read_text())
    arch = card.architecture
    model = Generator(bands=card.bands, base_channels=arch.get("base_channels", 32),
                      depth=arch.get("depth", 3), heads=arch.get("heads", 4))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.to(device).eval(), card


def _band_index(band_names: Sequence[str], card: ModelCard) -> list[int]:
    index = []
    for name in band_names:
        band = canonical_band(name)
        if band not in card.bands:
            raise InvalidParameterError("band", name, f"model {card.name} knows "
                                                      f"{', '.join(card.bands)}")
        index.append(card.bands.index(band))
    return index


def day_of_year(days: NDArray[Any]) -> NDArray[np.float32]:
    """Days since 1970-01-01 -> day of year 1..366."""
    dates = np.datetime64("1970-01-01") + np.floor(np.asarray(days, float)).astype("timedelta64[D]")
    years = dates.astype("datetime64[Y]")
    doy: NDArray[np.float32] = ((dates - years).astype(float) + 1.0).astype(np.float32)
    return doy


def prepare_inputs(values: NDArray[Any], days: NDArray[Any], band_names: Sequence[str],
                   card: ModelCard) -> dict[str, torch.Tensor]:
    """(T, C', H, W) reflectance (NaN = unusable) -> batch-of-1 inputs of the generator.

    Case bands are matched to ``card.bands`` by name; a pixel is clear in a frame when all
    its bands are finite there. Frames must be in time order."""
    values = np.asarray(values, np.float32)
    n_dates, _, height, width = values.shape
    index = _band_index(band_names, card)
    norm = card.normalisation
    full = np.zeros((n_dates, len(card.bands), height, width), np.float32)
    present = np.zeros(len(card.bands), np.float32)
    for src, dst in enumerate(index):
        band = card.bands[dst]
        full[:, dst] = (values[:, src] - norm["offset"][band]) / norm["scale"][band]
        present[dst] = 1.0
    clear = np.isfinite(values).all(axis=1)
    full = np.where(clear[:, None], np.nan_to_num(full), 0.0)
    return {"values": torch.from_numpy(full)[None],
            "clear": torch.from_numpy(clear.astype(np.float32))[None],
            "doy": torch.from_numpy(day_of_year(days))[None],
            "band_present": torch.from_numpy(present)[None]}


def restore_outputs(
    out: torch.Tensor, band_names: Sequence[str], card: ModelCard
) -> NDArray[np.float32]:
    """Generator output (1, T, C, H, W) or (T, C, H, W) -> (T, C', H, W) reflectance."""
    array = out.detach().cpu().float().numpy()
    if array.ndim == 5:
        array = array[0]
    index = _band_index(band_names, card)
    norm = card.normalisation
    bands = [card.bands[i] for i in index]
    return np.stack([array[:, i] * norm["scale"][b] + norm["offset"][b]
                     for i, b in zip(index, bands, strict=True)], axis=1).astype(np.float32)
