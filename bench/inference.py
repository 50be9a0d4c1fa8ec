"""Benchmark: chunked generator inference throughput, CPU and (when present) GPU.

    python bench/inference.py [--size 1024] [--dates 8] [--bands 6] [--tile 256]
                              [--batch 4] [--threads N]

A (dates, bands, size, size) reflectance series with smooth cloud blobs (about 30 % of
every date missing) is filled by :func:`cloudfree.methods.generator.fill_series` with the shipped
``default`` generator, or a randomly initialised generator of the default architecture
when no weights are shipped (the line says which). Prints seconds, megapixels per second of
output frame (size² / seconds: one mosaic frame's worth of pixels, every date filled) and
peak RSS; then one frame with the target-only forward (:func:`fill_frame`: the encoder on
every date, the decoder on that frame alone); then the mosaic path (:func:`generator_composite_array`: the frame in the middle,
the network with it hidden, the test-time head trained on the frame's clear pixels, then
the residual correction). On CUDA the same in bf16
autocast, else that no GPU was found. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from scipy import ndimage

from cloudfree.methods.generator import generator_composite_array
from cloudfree.models.inference import fill_frame, fill_series
from cloudfree.sentinel2 import DEFAULT_BANDS


def make_series(n_dates: int, n_bands: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    surface = ndimage.uniform_filter(rng.uniform(0.02, 0.4, (n_bands, size, size)), (1, 3, 3))
    values = np.empty((n_dates, n_bands, size, size), np.float32)
    for t in range(n_dates):
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 12)
        values[t] = surface * (1 + 0.05 * np.sin(t))
        values[t][:, field > np.quantile(field, 0.7)] = np.nan
    return values, 19800.0 + 12 * np.arange(n_dates)


def load_model(device: str):
    from cloudfree.models.weights import (
        MODEL_BANDS,
        ModelCard,
        default_normalisation,
        load_generator,
    )

    try:
        model, card = load_generator("default", device=device)
        return model, card, f"shipped weights {card.name} v{card.version}"
    except Exception as exc:  # no shipped weights yet
        from cloudfree.models.generator import Generator

        torch.manual_seed(0)
        model = Generator(bands=MODEL_BANDS).to(device).eval()
        card = ModelCard(name="random", version="0", bands=MODEL_BANDS,
                         normalisation=default_normalisation(), training_data="none")
        return model, card, f"randomly initialised default architecture ({exc})"


def run(values, days, bands, *, device: str, precision: str, args) -> float:
    model, card, which = load_model(device)
    print(f"  model: {which}; downsample {model.downsample_factor}, "
          f"halo {model.receptive_radius_px} px")
    warm = values[:, :, :128, :128]
    fill_series(warm, days, bands, model=model, card=card, tile_px=args.tile, device=device,
                precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fill_series(values, days, bands, model=model, card=card, tile_px=args.tile,
                      batch_size=args.batch, device=device, precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert np.isfinite(out).all()
    return seconds


def run_frame(values, days, bands, *, device: str, precision: str, args) -> float:
    """One frame filled with the target-only forward (:func:`fill_frame`), the middle one."""
    model, card, _ = load_model(device)
    frame = len(days) // 2
    start = time.perf_counter()
    out = fill_frame(values, days, bands, frame=frame, model=model, card=card,
                     tile_px=args.tile, batch_size=args.batch, device=device,
                     precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert np.isfinite(out).all()
    return seconds


def run_mosaic(values, days, bands, *, device: str, precision: str, args) -> float:
    """The product path: the mosaic frame, network with the target hidden, the test-time
    head, then the residual correction (width chosen by self-validation)."""
    model, card, _ = load_model(device)
    target = float(days[len(days) // 2])
    start = time.perf_counter()
    result = generator_composite_array(values, days, bands, target_day=target, model=model,
                                       card=card, tile_px=args.tile, batch_size=args.batch,
                                       device=device, precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert np.isfinite(result.reflectance).any()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dates", type=int, default=8)
    parser.add_argument("--bands", type=int, default=6)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bands = list(DEFAULT_BANDS[: args.bands])
    values, days = make_series(args.dates, len(bands), args.size)
    mpx = args.size * args.size / 1e6
    print(f"series: T={args.dates}, {len(bands)} bands, {args.size}x{args.size}, "
          f"{np.isnan(values[:, 0]).mean():.0%} missing; tile {args.tile}, batch {args.batch}")

    print(f"CPU ({torch.get_num_threads()} torch threads, fp32):")
    seconds = run(values, days, bands, device="cpu", precision="fp32", args=args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {seconds:.1f} s, {mpx / seconds:.3f} Mpx/s of output frame "
          f"({mpx * args.dates / seconds:.3f} Mpx/s over all dates), peak RSS {peak:.0f} MB")
    seconds = run_frame(values, days, bands, device="cpu", precision="fp32", args=args)
    print(f"  one frame, target-only forward (fill_frame): {seconds:.1f} s, "
          f"{mpx / seconds:.3f} Mpx/s of output frame")
    seconds = run_mosaic(values, days, bands, device="cpu", precision="fp32", args=args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  mosaic (network + test-time head + correction): {seconds:.1f} s, {mpx / seconds:.3f} Mpx/s "
          f"of mosaic, peak RSS {peak:.0f} MB")

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        print(f"GPU {name} (bf16 autocast):")
        torch.cuda.reset_peak_memory_stats()
        seconds = run(values, days, bands, device="cuda", precision="bf16", args=args)
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"  {seconds:.2f} s, {mpx / seconds:.2f} Mpx/s of output frame "
              f"({mpx * args.dates / seconds:.2f} Mpx/s over all dates), "
              f"peak GPU memory {peak:.0f} MB")
        seconds = run_mosaic(values, days, bands, device="cuda", precision="bf16", args=args)
        print(f"  mosaic (network + test-time head + correction): {seconds:.2f} s, "
              f"{mpx / seconds:.2f} Mpx/s of mosaic")
    else:
        print("GPU: no GPU found (torch.cuda.is_available() is False); no GPU figures")


if __name__ == "__main__":
    main()
