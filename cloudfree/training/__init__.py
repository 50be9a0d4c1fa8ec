"""Training of the generator: synthetic series or real STAC time cubes with simulated
gaps, GAN losses, the loop.

The options of a run are one :class:`TrainOptions` (``cloudfree train`` and
``flows/train.py`` both take them); :func:`train` runs it. The loop (and torch) is
imported on first use of :func:`train`, so the options stay cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudfree.training.options import TrainOptions

if TYPE_CHECKING:
    from cloudfree.training.loop import train

__all__ = ["TrainOptions", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from cloudfree.training.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
