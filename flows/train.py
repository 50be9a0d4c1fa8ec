"""Prefect flow: train the cloud-removal generator (deployment ``train`` in prefect.yaml)."""

from __future__ import annotations

from prefect import flow, task

from cloudfree.training import TrainConfig
from cloudfree.training import train as train_generator


@task(retries=0)
def train_task(config: dict, out_dir: str, resume: str | None, device: str) -> dict:
    """One training run; a failed run is resumed from its checkpoint, not retried blindly."""
    return train_generator(TrainConfig(**config), out_dir, resume=resume, device=device)


@flow(name="train")
def train(steps: int = 500, batch: int = 4, out_dir: str = "runs/train", resume: str | None = None,
          device: str = "auto", seed: int = 0, base_channels: int = 16, depth: int = 2) -> dict:
    """Train on synthetic series (cloudfree.synth); write checkpoint, loss curve, weights, card."""
    config = {"steps": steps, "batch": batch, "seed": seed, "base_channels": base_channels,
              "depth": depth}
    return train_task(config, out_dir, resume, device)
