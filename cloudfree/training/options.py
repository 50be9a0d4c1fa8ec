"""The options of a training run, declared once.

:class:`TrainOptions` is what ``cloudfree train`` parses (its arguments are generated from
these fields: name, type, default and ``description``) and what the Prefect flow
``flows/train.py:train`` takes as its parameter (Prefect builds and checks its schema from
the same fields, descriptions included). The training loop reads it; every field that is
not a run option (where and how to run, see :func:`option`) goes into the checkpoint and
the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args

from cloudfree.errors import InvalidParameterError
from cloudfree.grid import Bbox, parse_bbox

DataSource = Literal["synth", "stac", "mixed", "series", "synth+series"]
Device = Literal["auto", "cpu", "cuda"]
DATA_SOURCES: tuple[str, ...] = get_args(DataSource)
DEVICES: tuple[str, ...] = get_args(Device)

_T = TypeVar("_T")


def option(default: _T, description: str, *, flag: str | None = None,
           metavar: str | None = None, run: bool = False) -> _T:
    """A :class:`TrainOptions` field.

    Args:
        default: its default value.
        description: one line for ``cloudfree train --help`` and the flow's schema.
        flag: the CLI flag, when not ``--`` and the name with dashes.
        metavar: the CLI's placeholder for the value.
        run: where or how to run (output directory, device...), not what is trained:
            kept out of the checkpoint and the model card.
    """
    metadata = {"description": description, "flag": flag, "metavar": metavar, "run": run}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainOptions:
    """Every option of one training run (plain values: they go into the checkpoint)."""

    steps: int = option(500, "generator and discriminator updates")
    batch: int = option(4, "series per batch")
    size: int = option(64, "crop size in px")
    frames: int = option(6, "dates per series")
    base_channels: int = option(16, "channels of the generator's first level")
    depth: int = option(2, "levels of the generator's U-Net")
    heads: int = option(4, "heads of the generator's temporal self-attention")
    lr: float = option(3e-4, "AdamW learning rate of both networks")
    seed: int = option(0, "seed of the data draws and of the networks' initial weights")
    data: DataSource = option(
        "synth", "training series: synth (generated in memory by the synthetic world; the "
        "default, since it needs no running services), stac (a time cube of a STAC source, "
        "by default the demo catalog: run 'cloudfree services up' and 'cloudfree "
        "demo-catalog' first), mixed (synth and stac batches in turn), series (the --series "
        "files) or synth+series (synth and series batches in turn)")
    series: str | None = option(
        None, "data series/synth+series: comma-separated evaluation-format .npz series "
        "(bands, band_names, dates, cloud_mask; see cloudfree.evaluation.harness) to train on; "
        "their real cloud masks are pasted onto their own clear pixels", metavar="NPZ[,NPZ]")
    synth_steps: int = option(
        1, "of data mixed and synth+series: synthetic batches for each batch of the real "
        "source(s), which keeps the band sets the real data lacks (visible bands, ndvi)")
    init: str | None = option(
        None, "start from these generator weights: a shipped model name (default) or a "
        ".pt state dict of the same architecture; the discriminator starts fresh",
        metavar="WEIGHTS")
    stac_url: str | None = option(
        None, "STAC API of data stac/mixed (default: CLOUDFREE_STAC_API_URL, else the local "
        "one with the demo catalog)")
    collection: str | None = option(
        None, "source collection of data stac/mixed (default: CLOUDFREE_SOURCE_COLLECTION, "
        "sentinel-2-l2a, the demo catalog's)")
    bbox: Bbox | str | None = option(
        None, "minx,miny,maxx,maxy in degrees (default: the demo catalog's region; required "
        "for any other collection)")
    datetime: str | None = option(
        None, "YYYY-MM-DD/YYYY-MM-DD (default: the demo catalog's season; required for any "
        "other collection)")
    cube_px: int = option(
        512, "largest side of the in-memory STAC cube, px (memory: dates x bands x cube_px^2 "
        "x 4 B)")
    w_l1: float = option(1.0, "weight of the masked L1 loss")
    w_ssim: float = option(0.2, "weight of the SSIM loss")
    w_adv: float = option(0.01, "adversarial weight")
    w_temporal: float = option(0.2, "weight of the temporal-consistency loss")
    w_cycle: float = option(0.0, "cycle-consistency weight")
    checkpoint_every: int = option(100, "write checkpoint.pt every this many steps")
    n_landscapes: int = option(4, "synthetic landscapes of data synth/mixed")
    world_px: int = option(192, "side of each synthetic landscape, px")
    out_dir: str = option("runs/train", "output directory", flag="--out", run=True)
    resume: str | None = option(None, "checkpoint.pt to resume from", metavar="CKPT", run=True)
    device: Device = option("auto", "torch device (auto: cuda when there is one)", run=True)
    threads: int = option(0, "torch CPU threads (0: torch's default)", run=True)

    def __post_init__(self) -> None:
        for name, value, choices in (("data", self.data, DATA_SOURCES),
                                     ("device", self.device, DEVICES)):
            if value not in choices:
                raise InvalidParameterError(name, value, f"choose one of {', '.join(choices)}")
        if self.data in ("series", "synth+series") and not self.series:
            raise InvalidParameterError("series", self.series, f"data={self.data!r} trains on "
                                        "series files: give --series PATH.npz[,PATH.npz]")
        if self.synth_steps < 1:
            raise InvalidParameterError("synth_steps", self.synth_steps, "give 1 or more")
        if self.bbox is not None:  # the CLI gives a string, a flow or a JSON config a list
            object.__setattr__(self, "bbox", parse_bbox(self.bbox).bbox)

    def record(self) -> dict[str, Any]:
        """The options that define what is trained (not the run options), as plain values."""
        run = {f.name for f in fields(self) if f.metadata["run"]}
        return {key: value for key, value in asdict(self).items() if key not in run}
