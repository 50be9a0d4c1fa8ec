"""Benchmark: the per-method throughput constants of ``cloudfree plan`` (pixel-dates per second).

    python bench/plan_throughput.py [--size 256] [--dates 12] [--bands 6] [--repeat 2]
                                    [--methods median,interpolate_corrected,...]

Each method runs through the registry (:func:`cloudfree.methods.mosaic`, then
:func:`cloudfree.methods.compute`) on a :func:`cloudfree.testing.make_cube` cube of ``--dates``
dates x ``--bands`` bands x ``--size`` px (uint16 DN 1000..4000) with a seeded random clear
mask (about 70 % clear), dask-backed in one chunk, with dask's default (threads) scheduler on
every core of this machine. The figure is (size x size x dates) / seconds, the best of
``--repeat`` runs after one warm-up run: the pixel-dates per second that
:data:`cloudfree.plan.THROUGHPUT_PIXEL_DATES_PER_S` holds for ``--bands`` bands (the plan scales
it by bands / 6). Learned methods run on the CPU here (torch without a GPU): their figure is a
CPU figure. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import xarray as xr

from cloudfree import methods
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.testing import make_cube

DEFAULT_METHODS = ("median", "interpolate_corrected")


def clear_mask(cube: xr.DataArray, *, seed: int = 1, clear_fraction: float = 0.7) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    shape = (cube.sizes["time"], cube.sizes["y"], cube.sizes["x"])
    return xr.DataArray(rng.random(shape) < clear_fraction, dims=("time", "y", "x"),
                        coords={"time": cube["time"], "y": cube["y"], "x": cube["x"]})


def run_once(method: str, cube: xr.DataArray, clear: xr.DataArray) -> float:
    spec = methods.get_method(method, "mosaic")
    options = {"model_name": "default"} if spec.learned else {}
    start = time.perf_counter()
    lazy = methods.mosaic(method, cube.chunk({"time": -1, "band": -1, "y": -1, "x": -1}),
                          clear.chunk({"time": -1, "y": -1, "x": -1}), **options)
    methods.compute(method, lazy)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--bands", type=int, default=len(DEFAULT_BANDS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {','.join(methods.list_methods('mosaic'))}")
    args = parser.parse_args()
    bands = (DEFAULT_BANDS * 3)[: args.bands]
    cube = make_cube(n_dates=args.dates, bands=bands, size=args.size, seed=0)
    clear = clear_mask(cube)
    pixel_dates = args.size * args.size * args.dates
    print(f"cube {args.dates} dates x {args.bands} bands x {args.size}x{args.size} px uint16, "
          f"~30 % masked; {os.cpu_count()} CPUs; best of {args.repeat} after a warm-up")
    print(f"{'method':<22} {'seconds':>8} {'pixel-dates/s':>14}")
    for method in args.methods.split(","):
        run_once(method, cube, clear)  # warm-up: imports, numba/torch start-up
        seconds = min(run_once(method, cube, clear) for _ in range(args.repeat))
        print(f"{method:<22} {seconds:>8.3f} {pixel_dates / seconds:>14,.0f}")


if __name__ == "__main__":
    main()
