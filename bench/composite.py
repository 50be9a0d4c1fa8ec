"""Benchmark: cloud mask + median composite throughput on an in-memory cube.

    python bench/composite.py [--size 1024] [--dates 20] [--bands 6]

Prints output megapixels per second (per band-less pixel of the mosaic) and the
process's peak resident memory. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import resource
import time

import dask
import numpy as np
import xarray as xr

from cloudfree.composite import composite
from cloudfree.masking import scl_clear_mask
from cloudfree.testing import make_cube


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--bands", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    names = [f"b{i}" for i in range(args.bands)]
    cube = make_cube(n_dates=args.dates, bands=names, size=args.size, seed=0)
    rng = np.random.default_rng(1)
    scl = rng.choice(np.array([4, 5, 6, 8, 9, 3], np.uint16), p=[.5, .2, .1, .1, .05, .05],
                     size=(args.dates, args.size, args.size))
    scl = xr.DataArray(scl, dims=("time", "y", "x"), coords={"time": cube.time})
    chunks = {"time": -1, "band": 1, "y": args.chunk, "x": args.chunk}
    lazy_cube = cube.chunk(chunks)
    lazy_scl = scl.chunk({"time": -1, "y": args.chunk, "x": args.chunk})

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clear = scl_clear_mask(lazy_scl, resolution_m=10, dilation_m=100)
        out = composite(lazy_cube, clear)
        with dask.config.set(scheduler="threads"):
            out.compute()
        times.append(time.perf_counter() - t0)
    best = min(times)
    mpx = args.size * args.size / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cube {args.dates} dates x {args.bands} bands x {args.size}x{args.size} px "
          f"(chunks {args.chunk} px), threads scheduler")
    print(f"mask+median: best {best:.2f} s of {args.repeat} -> {mpx / best:.2f} Mpx/s of mosaic "
          f"({mpx * args.dates * args.bands / best:.1f} M input values/s)")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
