"""The registry of methods: each one declared once, with what the pipeline needs to know.

As torchgeo's ``models/api.py``: one table by name. The CLI choices, the flows' accepted
methods, the evaluation's method list, the item labels and the tile halos all come from
:data:`METHODS`. The implementation lives in the module named by :attr:`MethodSpec.module`
and is imported only when the method is used (the learned ones need torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from cloudfree.errors import InvalidParameterError

#: Where a method can be used: in mosaics (the CLI, the flows) and in the evaluation.
Use = Literal["mosaic", "evaluation"]


@dataclass(frozen=True)
class MethodSpec:
    """One method's declaration.

    Attributes:
        name: the name users type (CLI, flows, evaluation, item ids).
        summary: one line for help texts.
        module: the implementing module under :mod:`cloudfree.methods`.
        targeted: it aims at a target date (default: the middle of the window) and records
            it; the others summarise the whole window.
        learned: it uses trained weights (torch).
        corrected: it shows one real date and fits its gaps to that date's clear pixels by
            the residual correction (:mod:`cloudfree.methods.correction`), choosing the
            correction once per tile.
        halo_px: the neighbourhood it reads around a pixel at its default settings, in
            pixels: a chunk (or a tile) computed with this much overlap equals a whole run.
            0 for per-pixel methods.
        fill_classes: the ``fill`` codes (names of :data:`~cloudfree.methods.FILL_CLASSES`)
            its output can hold.
        uses: where it can be used.
        evaluate_fn: the module's function the evaluation calls (the composites, which
            have a per-pixel ``core``, run through :mod:`cloudfree.methods._composite`).
    """

    name: str
    summary: str
    module: str
    targeted: bool
    learned: bool
    corrected: bool
    halo_px: int
    fill_classes: tuple[str, ...]
    uses: tuple[Use, ...] = ("mosaic", "evaluation")
    evaluate_fn: str = "evaluate"

    def load(self) -> ModuleType:
        """The implementing module."""
        return importlib.import_module(f"cloudfree.methods.{self.module}")


# The correction reaches kernel_radius(32 px) = 128 px; bap's cloud score saturates at
# 20 px; the generator's reaches add up: the shipped network's 36 px, the head's 1 px, then
# the correction's. tests/unit/test_boundaries.py derives each number from the code.
_CORRECTION_PX = 128
_GENERATOR_PX = 36 + 1 + _CORRECTION_PX

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("median", "per-band median of the clear observations", "median",
               targeted=False, learned=False, corrected=False, halo_px=0,
               fill_classes=("nodata", "observed", "composited")),
    MethodSpec("bap", "best-available pixel: the best-scored clear observation (FORCE-like)",
               "bap", targeted=True, learned=False, corrected=False, halo_px=20,
               fill_classes=("nodata", "observed")),
    MethodSpec("geomedian", "multi-band geometric median of the clear observations",
               "geomedian", targeted=False, learned=False, corrected=False, halo_px=0,
               fill_classes=("nodata", "observed", "composited")),
    MethodSpec("interpolate", "linear in time between the clear dates around the target",
               "interpolate", targeted=True, learned=False, corrected=False, halo_px=0,
               fill_classes=("nodata", "observed", "interpolated")),
    MethodSpec("interpolate_corrected",
               "the target date, its gaps interpolated in time and fitted to its own clear "
               "pixels", "interpolate_corrected", targeted=True, learned=False, corrected=True,
               halo_px=_CORRECTION_PX, fill_classes=("nodata", "observed", "composited")),
    MethodSpec("generator",
               "the target date, its gaps filled by a network trained on its own clear "
               "pixels from the nearest dates, then fitted to them", "generator", targeted=True,
               learned=True, corrected=True, halo_px=_GENERATOR_PX,
               fill_classes=("nodata", "observed", "generated", "composited")),
    MethodSpec("network",
               "the generator network's own prediction: interpolation plus the network's "
               "residual, scaled per band by self-validation (no head, no correction)",
               "network", targeted=True, learned=True, corrected=False, halo_px=36,
               fill_classes=("observed", "generated"), uses=("evaluation",)),
    MethodSpec("generator_no_tta",
               "the pretrained generator network alone, without test-time training (ablation)",
               "generator", targeted=True, learned=True, corrected=False, halo_px=36,
               fill_classes=("observed", "generated"), uses=("evaluation",),
               evaluate_fn="evaluate_no_tta"),
)}


def list_methods(use: Use | None = None, *, learned: bool | None = None) -> tuple[str, ...]:
    """Method names in registry order, optionally only those for ``use`` and/or (not) learned."""
    return tuple(name for name, spec in METHODS.items()
                 if (use is None or use in spec.uses)
                 and (learned is None or spec.learned == learned))


def get_method(name: str, use: Use | None = None) -> MethodSpec:
    """The declaration of method ``name``; a clear error naming the choices otherwise."""
    spec = METHODS.get(name)
    if spec is None or (use is not None and use not in spec.uses):
        raise InvalidParameterError("method", name,
                                    f"choose one of {', '.join(list_methods(use))}")
    return spec
