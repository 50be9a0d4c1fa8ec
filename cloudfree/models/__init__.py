"""Torch networks (one per file) and the weights registry."""

from cloudfree.models.discriminator import PatchDiscriminator
from cloudfree.models.generator import Generator
from cloudfree.models.weights import (
    ModelCard,
    canonical_band,
    load_generator,
    prepare_inputs,
    restore_outputs,
    save_generator,
)

__all__ = ["Generator", "ModelCard", "PatchDiscriminator", "canonical_band", "load_generator",
           "prepare_inputs", "restore_outputs", "save_generator"]
