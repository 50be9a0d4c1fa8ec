"""The GAN training loop: resumable checkpoints, loss curve, export of weights and card.

Batches come from synthetic series (``data="synth"``), from a real STAC time cube
(``"stac"``, the demo catalog by default) or from both in turn (``"mixed"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from cloudfree.errors import InvalidParameterError, StorageUnreachableError
from cloudfree.models.discriminator import PatchDiscriminator
from cloudfree.models.generator import Generator
from cloudfree.models.weights import MODEL_BANDS, ModelCard, default_normalisation, save_generator
from cloudfree.training import losses
from cloudfree.training.data import SeriesSampler

if TYPE_CHECKING:
    from cloudfree.settings import Settings
    from cloudfree.training.stac_data import CubeSampler, StacSource

MODEL_VERSION = "0.1.0"
DATA_SOURCES = ("synth", "stac", "mixed")


@dataclass
class TrainConfig:
    """Options of one training run (all plain values, so they go into the checkpoint)."""

    steps: int = 500
    batch: int = 4
    size: int = 64
    frames: int = 6
    base_channels: int = 16
    depth: int = 2
    heads: int = 4
    lr: float = 3e-4
    seed: int = 0
    data: Literal["synth", "stac", "mixed"] = "synth"
    #: STAC source of data "stac"/"mixed"; None: the Settings' API (the local demo catalog)
    stac_url: str | None = None
    #: None: the Settings' source collection (the demo catalog's)
    stac_collection: str | None = None
    #: minx, miny, maxx, maxy in degrees; None (with datetime): the demo catalog's region
    bbox: tuple[float, float, float, float] | None = None
    #: "YYYY-MM-DD/YYYY-MM-DD"; None: the demo catalog's season
    datetime: str | None = None
    #: largest side of the in-memory STAC cube, px (memory: dates x bands x cube_px^2 x 4 B)
    cube_px: int = 512
    w_l1: float = 1.0
    w_ssim: float = 0.2
    w_adv: float = 0.01
    w_temporal: float = 0.2
    w_cycle: float = 0.0
    checkpoint_every: int = 100
    n_landscapes: int = 4
    world_px: int = 192

    def __post_init__(self) -> None:
        if self.data not in DATA_SOURCES:
            raise InvalidParameterError("data", self.data,
                                        f"choose one of {', '.join(DATA_SOURCES)}")
        if self.bbox is not None:  # a flow or a JSON config gives a list
            self.bbox = tuple(float(v) for v in self.bbox)  # type: ignore[assignment]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(config: TrainConfig) -> tuple[Generator, PatchDiscriminator]:
    generator = Generator(bands=MODEL_BANDS, base_channels=config.base_channels,
                          depth=config.depth, heads=config.heads)
    discriminator = PatchDiscriminator(n_bands=len(MODEL_BANDS), base_channels=16)
    return generator, discriminator


def train_step(generator, discriminator, opt_g, opt_d, batch, config: TrainConfig,
               rng: np.random.Generator) -> dict[str, float]:
    """One discriminator and one generator update; returns the loss terms.

    ``batch["known"]`` (1 where the truth is real, absent: all ones) keeps the losses off
    pixels whose truth is a real cloud: those are neither to be filled like the truth nor
    shown to the discriminator as real.
    """
    truth, clear = batch["truth"], batch["clear"]
    doy, present = batch["doy"], batch["band_present"]
    known = batch["known"] if "known" in batch else torch.ones_like(clear)
    pmask = present[:, None, :, None, None]
    truth = truth * pmask
    observed = truth * clear[:, :, None]
    out = generator(observed, clear, doy, present)
    hidden = (1 - clear) * known  # simulated gaps over known truth: what the losses score
    gap = hidden[:, :, None] * pmask
    # The truth with the output itself where the truth is unknown (a real cloud): SSIM,
    # temporal consistency and the discriminator compare against this, so the unknown
    # pixels agree on both sides and carry no signal, instead of teaching the generator
    # to paint clouds. With known all ones it is exactly the truth.
    k = known[:, :, None]
    reference = truth * k + out.detach() * (1 - k)
    # the frame of each series with the largest gap goes to the discriminator
    target = hidden.mean(dim=(2, 3)).argmax(dim=1)
    rows = torch.arange(truth.shape[0], device=truth.device)
    d_args = (observed[rows, target], clear[rows, target][:, None], present)

    opt_d.zero_grad()
    d_loss = losses.hinge_d(discriminator(reference[rows, target], *d_args),
                            discriminator(out[rows, target].detach(), *d_args))
    d_loss.backward()
    opt_d.step()

    l1 = losses.masked_l1(out, truth, gap)
    b, t, c, h, w = out.shape
    ssim = losses.ssim_loss(out.reshape(b * t, c, h, w), reference.reshape(b * t, c, h, w))
    temporal = losses.temporal_consistency(out, reference, gap)
    adv = losses.hinge_g(discriminator(out[rows, target], *d_args))
    total = config.w_l1 * l1 + config.w_ssim * ssim + config.w_temporal * temporal + config.w_adv * adv
    cycle = torch.zeros(())
    if config.w_cycle > 0:
        # cycle: hide the observed pixels instead, regenerate them from the filled series
        out2 = generator(out, 1 - clear, doy, present)
        cycle = losses.masked_l1(out2, truth, clear[:, :, None] * pmask)
        total = total + config.w_cycle * cycle
    opt_g.zero_grad()
    total.backward()
    torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
    opt_g.step()
    terms = {"total": total, "l1": l1, "ssim": ssim, "temporal": temporal, "adv": adv,
             "d": d_loss, "cycle": cycle}
    return {k: float(v.detach()) for k, v in terms.items()}


def save_checkpoint(path: Path, generator, discriminator, opt_g, opt_d, step: int,
                    history: list[dict[str, float]], config: TrainConfig,
                    data_fingerprints: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                "history": history, "config": asdict(config),
                "data_fingerprints": list(data_fingerprints or []),
                "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def stac_sampler(config: TrainConfig, settings: Settings | None) -> CubeSampler:
    """The STAC cube sampler of ``config``, its cube read once now."""
    from cloudfree.training.stac_data import CubeSampler

    if settings is None:
        raise InvalidParameterError(
            "settings", None, f"data={config.data!r} reads a STAC API and object storage: pass "
            "settings=Settings() (the CLI and the flow do)")
    try:
        gdal_env = settings.gdal_env()
    except StorageUnreachableError:
        if config.stac_url is None:  # the local demo catalog's scenes are on the local S3
            raise
        gdal_env = {}  # another source: public hrefs need no keys of ours
    return CubeSampler.from_stac(
        config.stac_url or settings.stac_url,
        collection=config.stac_collection or settings.source_collection,
        bbox=config.bbox, datetime=config.datetime, gdal_env=gdal_env, size=config.size,
        frames=config.frames, seed=config.seed, max_px=config.cube_px)


def build_samplers(config: TrainConfig,
                   settings: Settings | None = None) -> list[SeriesSampler | CubeSampler]:
    """The samplers of ``config.data``; batch ``step`` comes from
    ``samplers[step % len(samplers)]``, so "mixed" alternates synth and STAC by step."""
    samplers: list[SeriesSampler | CubeSampler] = []
    if config.data in ("synth", "mixed"):
        samplers.append(SeriesSampler(size=config.size, frames=config.frames, seed=config.seed,
                                      n_landscapes=config.n_landscapes, world_px=config.world_px))
    if config.data in ("stac", "mixed"):
        samplers.append(stac_sampler(config, settings))
    return samplers


def _source_record(source: StacSource) -> dict:
    """A STAC source as plain values for the card: where, when, how many scenes."""
    return {"stac_url": source.stac_url, "collection": source.collection,
            "bbox": list(source.bbox), "datetime": source.datetime,
            "n_scenes": len(source.scene_ids), "fingerprint": source.fingerprint}


def _stac_sources(samplers: list[SeriesSampler | CubeSampler]) -> list[StacSource]:
    return [s.source for s in samplers if not isinstance(s, SeriesSampler)]


def plot_losses(history: list[dict[str, float]], path: Path, *, window: int = 25) -> Path:
    """A loss-curve PNG (Pillow): one panel per term, raw (light) and moving average (dark)."""
    from PIL import Image, ImageDraw

    keys = [k for k in ("l1", "ssim", "temporal", "adv", "d", "cycle")
            if any(h.get(k, 0.0) for h in history)]
    panel_w, panel_h, margin = 300, 150, 30
    cols = 2
    rows = max(1, math.ceil(len(keys) / cols))
    image = Image.new("RGB", (cols * panel_w, rows * panel_h), "white")
    draw = ImageDraw.Draw(image)
    steps = np.array([h["step"] for h in history], float)
    for i, key in enumerate(keys):
        x0, y0 = (i % cols) * panel_w, (i // cols) * panel_h
        box = (x0 + margin, y0 + 20, x0 + panel_w - 10, y0 + panel_h - 20)
        draw.rectangle(box, outline="black")
        values = np.array([h.get(key, 0.0) for h in history], float)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid") \
            if len(values) >= window else values
        lo, hi = float(values.min()), float(values.max())
        draw.text((x0 + margin, y0 + 4), f"{key}: last avg {smooth[-1]:.4f} "
                  f"(range {lo:.3g}..{hi:.3g})", fill="black")
        if len(values) < 2 or hi == lo:
            continue
        span = max(steps[-1] - steps[0], 1.0)

        def xy(s_arr, v_arr, box=box, lo=lo, hi=hi, span=span):
            return [(box[0] + (s - steps[0]) / span * (box[2] - box[0]),
                     box[3] - (v - lo) / (hi - lo) * (box[3] - box[1]))
                    for s, v in zip(s_arr, v_arr, strict=True)]

        draw.line(xy(steps, values), fill=(190, 200, 235), width=1)
        draw.line(xy(steps[len(steps) - len(smooth):], smooth), fill=(20, 40, 160), width=2)
    image.save(path)
    return path


def train(config: TrainConfig, out_dir: str | Path, *, resume: str | Path | None = None,
          device: str = "auto", log=print, settings: Settings | None = None) -> dict:
    """Train (or resume) and write checkpoint.pt, losses.png and the weights + card.

    ``settings`` (STAC API, S3 credentials) is needed for data "stac" and "mixed"; the
    STAC cube is read before anything is written, so a bad source fails fast.
    """
    out_dir = Path(out_dir)
    dev = _device(device)
    samplers = build_samplers(config, settings)
    fingerprints = [source.fingerprint for source in _stac_sources(samplers)]
    torch.manual_seed(config.seed)
    generator, discriminator = build(config)
    generator.to(dev)
    discriminator.to(dev)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.AdamW(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    step, history = 0, []
    if resume is not None:
        state = torch.load(resume, map_location=dev, weights_only=True)
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, history = int(state["step"]), list(state["history"])
        torch.set_rng_state(state["torch_rng"].cpu())
        log(f"resumed from {resume} at step {step}")
        if list(state.get("data_fingerprints", [])) != fingerprints:
            log("warning: the STAC source now returns other scenes than when the checkpoint "
                "was written; the resumed run is not the same as an uninterrupted one")
    ckpt = out_dir / "checkpoint.pt"
    start = time.perf_counter()
    generator.train()
    while step < config.steps:
        arrays = samplers[step % len(samplers)].batch(step, config.batch)
        batch = {k: torch.from_numpy(v).to(dev) for k, v in arrays.items()}
        terms = train_step(generator, discriminator, opt_g, opt_d, batch, config,
                           np.random.default_rng([config.seed, step]))
        step += 1
        history.append({"step": step, **terms})
        if step % 10 == 0 or step == config.steps:
            log(f"step {step}/{config.steps} " + " ".join(f"{k} {v:.4f}" for k, v in terms.items())
                + f" ({time.perf_counter() - start:.0f} s)")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(ckpt, generator, discriminator, opt_g, opt_d, step, history, config,
                            fingerprints)
    plot_losses(history, out_dir / "losses.png")
    tail = history[-min(len(history), 50):]
    final = {k: float(np.mean([h[k] for h in tail])) for k in tail[0] if k != "step"} if tail else {}
    card = ModelCard(
        name="default", version=MODEL_VERSION, bands=MODEL_BANDS,
        normalisation=default_normalisation(),
        training_data=(f"data {config.data!r}: " + " + ".join(s.description for s in samplers)
                       + f"; {config.size} px crops of {config.frames} frames, random quarter "
                       "turns, flips and band subsets"),
        metrics={"final_train_losses_mean_last_50": final},
        architecture={"base_channels": config.base_channels, "depth": config.depth,
                      "heads": config.heads},
        training={**asdict(config), "seconds": round(time.perf_counter() - start, 1),
                  "device": str(dev), "steps_done": step,
                  "stac_sources": [_source_record(src) for src in _stac_sources(samplers)]},
    )
    weights = save_generator(generator.cpu().eval(), card, out_dir)
    if not math.isfinite(final.get("total", 0.0)):
        log("warning: the final loss is not finite")
    return {"checkpoint": str(ckpt), "weights": str(weights), "losses_png": str(out_dir / "losses.png"),
            "step": step, "final": final}
