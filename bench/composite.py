"""Benchmark: composite throughput of every non-learned method on a cloudy in-memory cube.

    python bench/composite.py [--size 1024] [--dates 20] [--bands 6] [--chunk 512]
                              [--methods median,bap,geomedian,interpolate,interpolate_corrected]

The cube is (dates, bands, size, size) uint16 DN: a fixed random surface with a seasonal
swing and sensor noise, under smooth cloud blobs (about 30 % of each date, bright DN),
with the clear mask taken from the blobs. Each method runs in a fresh process (so its
peak resident memory is its own) through ``composite`` on dask chunks with the threads
scheduler. ``interpolate_corrected`` runs through
:func:`cloudfree.methods.interpolate_corrected.mosaic` (interpolation, then the
residual correction with its overlap of ``kernel_radius(32) = 128`` px per chunk and one
choice of width per cube); the target date is the middle of the series for every method.
Prints seconds, output megapixels per second and peak RSS. Figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import dask
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from cloudfree.methods import composite, list_methods
from cloudfree.methods.interpolate_corrected import mosaic as interpolate_corrected_composite

#: The non-learned mosaic methods: the composites and the corrected interpolation.
BENCH_METHODS = list_methods("mosaic", learned=False)


def make_cloudy_cube(n_dates: int, n_bands: int, size: int, seed: int = 0
                     ) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    surface = ndimage.uniform_filter(rng.uniform(1000, 4000, (n_bands, size, size)), (1, 3, 3))
    season = 1 + 0.1 * np.sin(np.linspace(0, np.pi, n_dates))
    cube = np.empty((n_dates, n_bands, size, size), np.uint16)
    clear = np.empty((n_dates, size, size), bool)
    for t in range(n_dates):  # one date at a time keeps the float temporaries small
        noise = rng.normal(0, 40, (n_bands, size, size))
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 12)
        cloud = field > np.quantile(field, 0.7)
        frame = surface * season[t] + noise
        frame[:, cloud] = rng.uniform(6000, 9000)
        cube[t] = np.clip(frame, 1, 65535)
        clear[t] = ~cloud
    coords = {"time": pd.date_range("2024-04-01", periods=n_dates, freq="7D"),
              "band": [f"b{i}" for i in range(n_bands)]}
    return (xr.DataArray(cube, dims=("time", "band", "y", "x"), coords=coords),
            xr.DataArray(clear, dims=("time", "y", "x"), coords={"time": coords["time"]}))


def run_one(args: argparse.Namespace) -> dict:
    cube, clear = make_cloudy_cube(args.dates, args.bands, args.size)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lazy_cube = cube.chunk({"time": -1, "band": -1, "y": args.chunk, "x": args.chunk})
    lazy_clear = clear.chunk({"time": -1, "y": args.chunk, "x": args.chunk})
    start = time.perf_counter()
    if args.method == "interpolate_corrected":
        out = interpolate_corrected_composite(lazy_cube, lazy_clear)
    else:
        out = composite(lazy_cube, lazy_clear, method=args.method)
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        out.compute()
    seconds = time.perf_counter() - start
    mpx = args.size * args.size / 1e6
    return {"method": args.method, "seconds": seconds, "mpx_per_s": mpx / seconds,
            "mvalues_per_s": mpx * args.dates * args.bands / seconds,
            "rss_before_mb": before_mb,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--bands", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--methods", default=",".join(BENCH_METHODS),
                        help=f"comma-separated, from {','.join(BENCH_METHODS)}")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # one method, in a child process
    args = parser.parse_args()
    unknown = sorted(set(args.methods.split(",")) - set(BENCH_METHODS))
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}: choose from {', '.join(BENCH_METHODS)}")
    if args.method:
        print(json.dumps(run_one(args)))
        return
    print(f"cube {args.dates} dates x {args.bands} bands x {args.size}x{args.size} px uint16, "
          f"~30 % cloud; chunks {args.chunk} px; dask threads scheduler, {args.workers} workers")
    print(f"{'method':<22} {'seconds':>8} {'Mpx/s':>7} {'Mvalues/s':>10} "
          f"{'RSS before MB':>14} {'peak RSS MB':>12}")
    common = [f"--size={args.size}", f"--dates={args.dates}", f"--bands={args.bands}",
              f"--chunk={args.chunk}", f"--workers={args.workers}"]
    for method in args.methods.split(","):
        child = subprocess.run([sys.executable, __file__, f"--method={method}", *common],
                               capture_output=True, text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{method:<22} {r['seconds']:>8.2f} {r['mpx_per_s']:>7.3f} "
              f"{r['mvalues_per_s']:>10.1f} {r['rss_before_mb']:>14.0f} {r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
