"""Prefect flow: train the cloud-removal generator (deployment ``train`` in prefect.yaml)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cloudfree.settings import Settings
from cloudfree.training import TrainOptions
from cloudfree.training import train as train_generator

#: The flow's default: every option at its declared default.
DEFAULT_OPTIONS = TrainOptions()


@task(retries=0, cache_policy=NO_CACHE)
def train_task(options: TrainOptions, settings: Settings | None = None) -> dict[str, Any]:
    """One training run; a failed run is resumed from its checkpoint, not retried blindly."""
    from cloudfree.demo import demo_defaults

    return train_generator(options, settings=settings, source_defaults=demo_defaults)


@flow(name="train")
def train(options: TrainOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """Train on synthetic series, a STAC time cube or both; write checkpoint, loss curve,
    weights and card.

    Args:
        options: as ``cloudfree train`` (the same fields). For data "stac"/"mixed",
            collection, bbox and datetime default to the demo catalog's (only the demo
            catalog has defaults), and stac_url to the settings' STAC API.
    """
    settings = None if options.data == "synth" else Settings()
    return train_task(options, settings)
