"""Benchmark: the generator mosaic's cost against the median mosaic's, on the same tiles.

    python bench/generator_cost.py [--tiles 2] [--size 1024] [--dates 24] [--chunk 1024]
                                   [--workers 2] [--repeat 1] [--methods median,...] [--json]

Builds ``--tiles`` adjacent tiles (one row; each its own seed) of a cloudy cube in memory,
as :func:`cloudfree.cube.build_cube` hands them over: (time, band, y, x) uint16 DN, 6 L2A
bands B02 B03 B04 B08 B11 B12, a fixed random surface with a seasonal swing and sensor
noise under smooth cloud blobs (5-70 % of each date, bright DN), the clear mask from the
blobs; dates 7 days apart; chunked with time whole, one band per chunk and ``--chunk`` px in
space (the tile default is 1024). Then, each method in a fresh process (so its peak resident
memory is its own), with the dask threads scheduler and ``--workers`` threads (torch gets as
many), on every tile in turn, through the entry points the tiles use
(:func:`cloudfree.methods.mosaic`, then :func:`cloudfree.methods.compute`), the target date
the middle of the series:

- ``median``: the median mosaic;
- ``interpolate_corrected``: interpolation in time, then the residual correction;
- ``generator``: the network with the target frame hidden, the test-time head, the
  residual correction.

Prints seconds (summed over the tiles, each the fastest of ``--repeat`` runs), the ratio to
the median's, and peak RSS. For the generator, also the time spent inside each stage's
chunk functions (summed over tasks and tiles, of the fastest run: with several threads the
stages overlap, so these are task-seconds, and their shares of the sum say where the time
goes): ``network`` (:func:`cloudfree.methods.generator._network_block`), ``head``
(:mod:`cloudfree.methods._head_stage`'s features, samples, training and application),
``correction`` (:mod:`cloudfree.methods.corrected`'s validation sums and corrected chunks),
and the stage in whose task the peak RSS last rose.
The acceptance is a generator at most 4x the median's time and at most 3 GB peak RSS on two
1024 px tiles. ``--json`` prints the rows as JSON. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
METHODS = ("median", "interpolate_corrected", "generator")
#: The generator's stages: which chunk functions of which module make each.
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "network": ("cloudfree.methods.generator", ("_network_block",)),
    "head": ("cloudfree.methods._head_stage",
             ("_features_block", "_samples_block", "_train_block", "_filling_block",
              "_apply_pair_block")),
    "correction": ("cloudfree.methods.corrected", ("_sums_block", "_corrected_block")),
}


def make_tile_cube(index: int, size: int, n_dates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Tile ``index`` of a row of tiles: DN (T, 6, size, size) uint16, clear, times."""
    rng = np.random.default_rng(seed * 1000 + index)
    level = np.array([600, 900, 800, 3000, 2200, 1400], np.float64)[:, None, None]
    surface = level * ndimage.uniform_filter(rng.uniform(0.6, 1.4, (len(BANDS), size, size)),
                                             (1, 5, 5))
    season = 1 + 0.15 * np.sin(np.linspace(0, np.pi, n_dates))
    cover = rng.uniform(0.05, 0.7, n_dates)
    dn = np.empty((n_dates, len(BANDS), size, size), np.uint16)
    clear = np.empty((n_dates, size, size), bool)
    for t in range(n_dates):  # one date at a time keeps the float temporaries small
        frame = surface * season[t] + rng.normal(0, 30, (len(BANDS), size, size))
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 16)
        cloud = field > np.quantile(field, 1 - cover[t])
        frame[:, cloud] = rng.uniform(6000, 9000)
        dn[t] = np.clip(np.rint(frame + 1000), 1, 65535)
        clear[t] = ~cloud
    times = pd.date_range("2024-04-01", periods=n_dates, freq="7D").values
    return {"dn": dn, "clear": clear, "time": times}


def _cubes(path: Path, chunk: int) -> tuple[xr.DataArray, xr.DataArray]:
    data = np.load(path)
    cube = xr.DataArray(data["dn"], dims=("time", "band", "y", "x"),
                        coords={"time": data["time"], "band": list(BANDS)})
    clear = xr.DataArray(data["clear"], dims=("time", "y", "x"), coords={"time": data["time"]})
    # as build_cube chunks: time whole, one band per chunk, space in chunks
    return (cube.chunk({"time": -1, "band": 1, "y": chunk, "x": chunk}),
            clear.chunk({"time": -1, "y": chunk, "x": chunk}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageTimer:
    """Task-seconds spent inside the generator's stage functions (wrapped in place)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_stage = ""  # the stage in whose call the process's peak RSS last rose
        self._lock = threading.Lock()

    def install(self) -> None:
        import importlib

        for stage, (module_name, names) in STAGES.items():
            module = importlib.import_module(module_name)
            for name in names:
                setattr(module, name, self._wrap(stage, getattr(module, name)))

    def _wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            peak = _peak_rss_mb()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] += time.perf_counter() - start
                    if _peak_rss_mb() > peak:
                        self.peak_stage = stage
        return timed


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    import dask
    import torch

    from cloudfree import methods

    torch.set_num_threads(args.workers)
    timer = StageTimer()
    if args.method == "generator":
        timer.install()
    seconds, stages = 0.0, defaultdict(float)
    for path in args.cube_files.split(","):
        cube, clear = _cubes(Path(path), args.chunk)
        best, best_stages = float("inf"), {}
        for _ in range(args.repeat):
            timer.seconds.clear()
            start = time.perf_counter()
            with dask.config.set(scheduler="threads", num_workers=args.workers):
                methods.compute(args.method, methods.mosaic(args.method, cube, clear))
            took = time.perf_counter() - start
            if took < best:
                best, best_stages = took, dict(timer.seconds)
        seconds += best
        for stage, value in best_stages.items():
            stages[stage] += value
    return {"method": args.method, "seconds": seconds, "stages": dict(stages),
            "peak_rss_mb": _peak_rss_mb(), "peak_rss_stage": timer.peak_stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeat", type=int, default=1, help="runs per tile; the fastest counts")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {','.join(METHODS)}; the first is the "
                             "reference of the ratios")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # one method, in a child process
    parser.add_argument("--cube-files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_one(args)))
        return
    chosen = args.methods.split(",")
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        files = []
        for index in range(args.tiles):
            path = Path(tmp) / f"tile{index}.npz"
            np.savez(path, **make_tile_cube(index, args.size, args.dates))
            files.append(str(path))
        built = time.perf_counter() - start
        common = [f"--chunk={args.chunk}", f"--workers={args.workers}",
                  f"--repeat={args.repeat}", f"--cube-files={','.join(files)}"]
        rows = []
        for method in chosen:
            child = subprocess.run([sys.executable, __file__, f"--method={method}", *common],
                                   capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"{method} failed:\n{child.stderr[-4000:]}")
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    reference = rows[0]["seconds"]
    for row in rows:
        row["ratio"] = row["seconds"] / reference
    if args.json:
        print(json.dumps({"tiles": args.tiles, "size_px": args.size, "dates": args.dates,
                          "bands": list(BANDS), "chunk_px": args.chunk,
                          "workers": args.workers, "reference": chosen[0], "rows": rows},
                         indent=1))
        return
    print(f"{args.tiles} tiles of {args.size} px, {args.dates} dates x {len(BANDS)} bands "
          f"uint16 (built in {built:.0f} s); chunks {args.chunk} px; dask threads, "
          f"{args.workers} workers and torch threads; load average before "
          f"{load:.1f}")
    print(f"{'method':<24} {'seconds':>8} {'x ' + chosen[0]:>12} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['method']:<24} {row['seconds']:>8.2f} {row['ratio']:>12.2f} "
              f"{row['peak_rss_mb']:>12.0f}")
        if row.get("peak_rss_stage"):
            print(f"  (peak RSS last rose inside a {row['peak_rss_stage']} task)")
        total = sum(row["stages"].values())
        for stage in STAGES:
            if stage in row["stages"]:
                value = row["stages"][stage]
                print(f"  {stage:<22} {value:>8.2f} task-s ({value / total:.0%} of stage time)")
    print("(stage times are summed over the tasks of the fastest run per tile; with several "
          "threads they overlap)")


if __name__ == "__main__":
    main()
