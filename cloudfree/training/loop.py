"""The GAN training loop: resumable checkpoints, loss curve, export of weights and card.

Batches come from synthetic series (``data="synth"``), from a real STAC time cube
(``"stac"``) or from both in turn (``"mixed"``). The options are one
:class:`~cloudfree.training.options.TrainOptions`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from cloudfree.errors import InvalidParameterError, StorageUnreachableError
from cloudfree.models.discriminator import PatchDiscriminator
from cloudfree.models.generator import Generator
from cloudfree.models.weights import MODEL_BANDS, ModelCard, default_normalisation, save_generator
from cloudfree.training import losses
from cloudfree.training.data import SeriesSampler
from cloudfree.training.options import TrainOptions
from cloudfree.training.series_data import SeriesSource

if TYPE_CHECKING:
    from cloudfree.settings import Settings
    from cloudfree.training.stac_data import CubeSampler, SourceDefaults, StacSource

MODEL_VERSION = "0.1.0"
Batch = dict[str, torch.Tensor]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(options: TrainOptions) -> tuple[Generator, PatchDiscriminator]:
    generator = Generator(bands=MODEL_BANDS, base_channels=options.base_channels,
                          depth=options.depth, heads=options.heads)
    discriminator = PatchDiscriminator(n_bands=len(MODEL_BANDS), base_channels=16)
    return generator, discriminator


def initial_weights(generator: Generator, init: str) -> None:
    """Load ``init`` (a shipped model name, or a .pt state dict) into ``generator``; a clear
    error when it is missing, unreadable or of another architecture."""
    from cloudfree.models.weights import WEIGHTS_DIR

    path = Path(init) if init.endswith(".pt") else WEIGHTS_DIR / f"{init}.pt"
    if not path.is_file():
        raise InvalidParameterError("init", init, f"no weights at {path}: give a shipped "
                                    "model name (default) or a .pt state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        generator.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in state.items()})
    except (RuntimeError, AttributeError, OSError) as exc:
        raise InvalidParameterError("init", init, "cannot be loaded into a generator of "
                                    f"these options (base_channels, depth, heads): {exc}"
                                    ) from exc


def train_step(generator: Generator, discriminator: PatchDiscriminator,
               opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, batch: Batch,
               options: TrainOptions, rng: np.random.Generator) -> dict[str, float]:
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
    d_loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
    opt_d.step()

    l1 = losses.masked_l1(out, truth, gap)
    b, t, c, h, w = out.shape
    ssim = losses.ssim_loss(out.reshape(b * t, c, h, w), reference.reshape(b * t, c, h, w))
    temporal = losses.temporal_consistency(out, reference, gap)
    adv = losses.hinge_g(discriminator(out[rows, target], *d_args))
    total = options.w_l1 * l1 + options.w_ssim * ssim + options.w_temporal * temporal + options.w_adv * adv
    cycle = torch.zeros(())
    if options.w_cycle > 0:
        # cycle: hide the observed pixels instead, regenerate them from the filled series
        out2 = generator(out, 1 - clear, doy, present)
        cycle = losses.masked_l1(out2, truth, clear[:, :, None] * pmask)
        total = total + options.w_cycle * cycle
    opt_g.zero_grad()
    total.backward()  # type: ignore[no-untyped-call]  # as above
    torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
    opt_g.step()
    terms = {"total": total, "l1": l1, "ssim": ssim, "temporal": temporal, "adv": adv,
             "d": d_loss, "cycle": cycle}
    return {k: float(v.detach()) for k, v in terms.items()}


def save_checkpoint(path: Path, generator: Generator, discriminator: PatchDiscriminator,
                    opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, step: int,
                    history: list[dict[str, float]], options: TrainOptions,
                    data_fingerprints: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                "history": history, "config": options.record(),
                "data_fingerprints": list(data_fingerprints or []),
                "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def stac_sampler(options: TrainOptions, settings: Settings | None,
                 source_defaults: SourceDefaults | None = None) -> CubeSampler:
    """The STAC cube sampler of ``options``, its cube read once now; a bbox or datetime
    left out comes from ``source_defaults`` (the edge's, e.g. the demo catalog's)."""
    from cloudfree.training.stac_data import CubeSampler

    if settings is None:
        raise InvalidParameterError(
            "settings", None, f"data={options.data!r} reads a STAC API and object storage: pass "
            "settings=Settings() (the CLI and the flow do)")
    try:
        gdal_env = settings.gdal_env()
    except StorageUnreachableError:
        if options.stac_url is None:  # the local demo catalog's scenes are on the local S3
            raise
        gdal_env = {}  # another source: public hrefs need no keys of ours
    return CubeSampler.from_stac(
        options.stac_url or settings.stac_url,
        collection=options.collection or settings.source_collection,
        bbox=options.bbox, datetime=options.datetime, gdal_env=gdal_env, size=options.size,
        frames=options.frames, seed=options.seed, max_px=options.cube_px,
        defaults=source_defaults)


def build_samplers(options: TrainOptions, settings: Settings | None = None,
                   source_defaults: SourceDefaults | None = None,
                   ) -> list[SeriesSampler | CubeSampler]:
    """The samplers of ``options.data``, synthetic first; batch ``step`` comes from
    :func:`sampler_for`, so "mixed" alternates synth and STAC by step."""
    samplers: list[SeriesSampler | CubeSampler] = []
    if options.data in ("synth", "mixed", "synth+series"):
        samplers.append(SeriesSampler(size=options.size, frames=options.frames, seed=options.seed,
                                      n_landscapes=options.n_landscapes, world_px=options.world_px))
    if options.data in ("stac", "mixed"):
        samplers.append(stac_sampler(options, settings, source_defaults))
    if options.data in ("series", "synth+series"):
        samplers += series_samplers(options)
    return samplers


def sampler_for(step: int, samplers: list[SeriesSampler | CubeSampler], synth_steps: int = 1
                ) -> SeriesSampler | CubeSampler:
    """The sampler of batch ``step``: in turn, ``synth_steps`` synthetic batches (when the
    first sampler is the synthetic one) and one batch of each other sampler."""
    if len(samplers) == 1 or not isinstance(samplers[0], SeriesSampler):
        return samplers[step % len(samplers)]
    cycle = synth_steps + len(samplers) - 1
    position = step % cycle
    return samplers[0] if position < synth_steps else samplers[1 + position - synth_steps]


def series_samplers(options: TrainOptions) -> list[CubeSampler]:
    """One sampler per ``options.series`` file; crops are ``options.size`` px, or the
    file's smaller side when it is smaller (a 32 px series gives 32 px crops)."""
    from cloudfree.training.series_data import series_cube
    from cloudfree.training.stac_data import CubeSampler

    samplers = []
    for path in [p.strip() for p in str(options.series).split(",") if p.strip()]:
        cube = series_cube(path)
        size = min(options.size, *cube.reflectance.shape[-2:])
        samplers.append(CubeSampler(cube, size=size, frames=options.frames, seed=options.seed,
                                    nearest=True))
    return samplers


def _source_record(source: StacSource | SeriesSource) -> dict[str, Any]:
    """A STAC source as plain values for the card: where, when, how many scenes."""
    if isinstance(source, SeriesSource):
        return source.record()
    return {"stac_url": source.stac_url, "collection": source.collection,
            "bbox": list(source.bbox), "datetime": source.datetime,
            "n_scenes": len(source.scene_ids), "fingerprint": source.fingerprint}


def _stac_sources(samplers: list[SeriesSampler | CubeSampler]
                  ) -> list[StacSource | SeriesSource]:
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

        def xy(s_arr: NDArray[Any], v_arr: NDArray[Any], box: tuple[int, int, int, int] = box,
               lo: float = lo, hi: float = hi, span: float = span) -> list[tuple[float, float]]:
            return [(box[0] + (s - steps[0]) / span * (box[2] - box[0]),
                     box[3] - (v - lo) / (hi - lo) * (box[3] - box[1]))
                    for s, v in zip(s_arr, v_arr, strict=True)]

        draw.line(xy(steps, values), fill=(190, 200, 235), width=1)
        draw.line(xy(steps[len(steps) - len(smooth):], smooth), fill=(20, 40, 160), width=2)
    image.save(path)
    return path


def train(options: TrainOptions, *, log: Callable[[str], object] = print,
          settings: Settings | None = None,
          source_defaults: SourceDefaults | None = None) -> dict[str, Any]:
    """Train (or resume from ``options.resume``) and write checkpoint.pt, losses.png and
    the weights + card into ``options.out_dir``.

    ``settings`` (STAC API, S3 credentials) is needed for data "stac" and "mixed"; the
    STAC cube is read before anything is written, so a bad source fails fast. A bbox or
    datetime left out of the options comes from ``source_defaults`` (the CLI and the flow
    pass the demo catalog's); without it the library refuses a source without both.
    """
    out_dir, resume = Path(options.out_dir), options.resume
    if options.threads:
        torch.set_num_threads(options.threads)
    dev = _device(options.device)
    samplers = build_samplers(options, settings, source_defaults)
    fingerprints = [source.fingerprint for source in _stac_sources(samplers)]
    torch.manual_seed(options.seed)
    generator, discriminator = build(options)
    if options.init is not None and resume is None:
        initial_weights(generator, options.init)
        log(f"generator initialised from {options.init}")
    generator.to(dev)
    discriminator.to(dev)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=options.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.AdamW(discriminator.parameters(), lr=options.lr, betas=(0.5, 0.999))
    step, history = 0, list[dict[str, float]]()
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
    while step < options.steps:
        arrays = sampler_for(step, samplers, options.synth_steps).batch(step, options.batch)
        batch = {k: torch.from_numpy(v).to(dev) for k, v in arrays.items()}
        terms = train_step(generator, discriminator, opt_g, opt_d, batch, options,
                           np.random.default_rng([options.seed, step]))
        step += 1
        history.append({"step": step, **terms})
        if step % 10 == 0 or step == options.steps:
            log(f"step {step}/{options.steps} " + " ".join(f"{k} {v:.4f}" for k, v in terms.items())
                + f" ({time.perf_counter() - start:.0f} s)")
        if step % options.checkpoint_every == 0 or step == options.steps:
            save_checkpoint(ckpt, generator, discriminator, opt_g, opt_d, step, history, options,
                            fingerprints)
    plot_losses(history, out_dir / "losses.png")
    tail = history[-min(len(history), 50):]
    final = {k: float(np.mean([h[k] for h in tail])) for k in tail[0] if k != "step"} if tail else {}
    card = ModelCard(
        name="default", version=MODEL_VERSION, bands=MODEL_BANDS,
        normalisation=default_normalisation(),
        training_data=(f"data {options.data!r}: " + " + ".join(s.description for s in samplers)
                       + f"; {options.size} px crops of {options.frames} frames, random quarter "
                       "turns, flips and band subsets"),
        metrics={"final_train_losses_mean_last_50": final},
        architecture={"base_channels": options.base_channels, "depth": options.depth,
                      "heads": options.heads},
        training={**options.record(), "seconds": round(time.perf_counter() - start, 1),
                  "device": str(dev), "steps_done": step,
                  "stac_sources": [_source_record(src) for src in _stac_sources(samplers)]},
    )
    weights = save_generator(generator.cpu().eval(), card, out_dir)
    if not math.isfinite(final.get("total", 0.0)):
        log("warning: the final loss is not finite")
    return {"checkpoint": str(ckpt), "weights": str(weights), "losses_png": str(out_dir / "losses.png"),
            "step": step, "final": final}
