"""Prefect flow: train the cloud-removal generator (deployment ``train`` in prefect.yaml)."""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cloudfree.grid import parse_bbox
from cloudfree.settings import Settings
from cloudfree.training import TrainConfig
from cloudfree.training import train as train_generator


@task(retries=0, cache_policy=NO_CACHE)
def train_task(config: dict, out_dir: str, resume: str | None, device: str,
               settings: Settings | None = None) -> dict:
    """One training run; a failed run is resumed from its checkpoint, not retried blindly."""
    return train_generator(TrainConfig(**config), out_dir, resume=resume, device=device,
                           settings=settings)


@flow(name="train")
def train(steps: int = 500, batch: int = 4, out_dir: str = "runs/train", resume: str | None = None,
          device: str = "auto", seed: int = 0, base_channels: int = 16, depth: int = 2,
          size: int = 64, frames: int = 6, data: Literal["synth", "stac", "mixed"] = "synth",
          collection: str | None = None, bbox: list[float] | str | None = None,
          datetime: str | None = None, stac_url: str | None = None) -> dict:
    """Train on synthetic series, a STAC time cube or both; write checkpoint, loss curve,
    weights and card.

    Args: as ``cloudfree train``. For data "stac"/"mixed", collection, bbox and datetime
    default to the demo catalog's (only the demo catalog has defaults), and stac_url to
    the settings' STAC API.
    """
    config = {"steps": steps, "batch": batch, "seed": seed, "base_channels": base_channels,
              "depth": depth, "size": size, "frames": frames, "data": data,
              "stac_collection": collection, "datetime": datetime, "stac_url": stac_url,
              "bbox": None if bbox is None else parse_bbox(bbox).bbox}
    settings = None if data == "synth" else Settings()
    return train_task(config, out_dir, resume, device, settings)
