"""Benchmark: the cloud detectors' cost against the median mosaic's, on the same tiles.

    python bench/detection.py [--tiles 2] [--size 512] [--dates 24] [--chunk 512]
                              [--resolution 10] [--workers N] [--repeat 2] [--json]

Builds ``--tiles`` adjacent tiles of the synthetic world (:mod:`cloudfree.synthetic`: its
landscape, crop calendars, cumulus with their shadows, cirrus and SCL; one sun per date)
in memory, as :func:`cloudfree.cube.build_cube` would hand them over: (time, band, y, x)
uint16 DN in cloudfree's encoding (0 = no data), 6 bands, the SCL beside, chunked with
time whole and ``--chunk`` px in space. Then, each in a fresh process (so its peak
resident memory is its own), with the dask threads scheduler, on every tile:

- ``median (scl mask)``: the median mosaic as it ran before other detectors, its clear
  mask the ``scl`` detector's (:func:`cloudfree.detection._dask.detect_cube`), computed;
- ``multitemporal``: the multitemporal detector's mask alone, computed;
- ``scl``: the SCL detector's mask alone, computed;
- ``median (multitemporal mask)``: the median mosaic masked by the multitemporal detector
  (what ``--mask auto`` runs on an L2A series).

Prints seconds (summed over the tiles, each the fastest of ``--repeat`` runs), the ratio to the median's, and peak RSS; the
acceptance is a multitemporal detector at most 1.5x the median's time. ``--json`` prints
the rows as JSON. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
RUNS = ("median (scl mask)", "multitemporal", "scl", "median (multitemporal mask)")
LATITUDE = 46.0


def make_tile_cube(index: int, size: int, n_dates: int, resolution_m: float, seed: int = 0
                   ) -> dict[str, np.ndarray]:
    """Tile ``index`` of a row of adjacent tiles of the synthetic world: DN, SCL, sun."""
    from cloudfree import synthetic as synth

    land = synth.make_landscape((size, size), origin_px=(0, index * size),
                                resolution_m=resolution_m, seed=seed)
    days = 91 + np.round(np.linspace(0, 180, n_dates)).astype(int)  # April to September
    rng = np.random.default_rng(seed)
    dn = np.empty((n_dates, len(BANDS), size, size), np.uint16)
    scl = np.empty((n_dates, size, size), np.uint16)
    zenith, azimuth = np.empty(n_dates), np.empty(n_dates)
    for t, doy in enumerate(days):
        zenith[t], azimuth[t] = synth.solar_position(float(doy), latitude_deg=LATITUDE)
        weather = synth.Weather(cloud_cover=float(rng.choice([0.0, 0.1, 0.3, 0.6])),
                                cirrus_cover=0.4, cirrus_opacity=float(rng.uniform(0, 0.15)),
                                seed=seed * 1000 + t)
        scene = synth.synth_scene(land, day_of_year=float(doy), weather=weather,
                                  sun_zenith_deg=float(zenith[t]),
                                  sun_azimuth_deg=float(azimuth[t]))
        values = np.clip(np.rint(scene.reflectance * 1e4 + 1000), 1, 65535)
        dn[t] = np.where(scene.valid, values, 0).astype(np.uint16)
        scl[t] = scene.scl
    times = (pd.Timestamp("2024-01-01") + pd.to_timedelta(days - 1, "D")).values
    return {"dn": dn, "scl": scl, "time": times, "zenith": zenith, "azimuth": azimuth}


def _cubes(path: Path, chunk: int) -> tuple[xr.DataArray, xr.DataArray]:
    data = np.load(path)
    coords = {"time": data["time"], "s2:mean_solar_zenith": ("time", data["zenith"]),
              "s2:mean_solar_azimuth": ("time", data["azimuth"])}
    cube = xr.DataArray(data["dn"], dims=("time", "band", "y", "x"),
                        coords={**coords, "band": list(BANDS)})
    scl = xr.DataArray(data["scl"], dims=("time", "y", "x"), coords=coords)
    # as build_cube chunks: time whole, one band per chunk, space in chunks
    return (cube.chunk({"time": -1, "band": 1, "y": chunk, "x": chunk}),
            scl.chunk({"time": -1, "y": chunk, "x": chunk}))


def run_one(args: argparse.Namespace) -> dict[str, float | str]:
    import dask

    from cloudfree import methods
    from cloudfree.detection._dask import detect_cube

    seconds = 0.0
    for path in args.cube_files.split(","):
        cube, scl = _cubes(Path(path), args.chunk)
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            kw = {"resolution_m": args.resolution, "level": "L2A"}
            with dask.config.set(scheduler="threads", num_workers=args.workers):
                if args.run.startswith("median"):
                    name = "scl" if "scl" in args.run else "multitemporal"
                    clear = detect_cube(name, cube, scl, **kw)
                    methods.compute("median", methods.mosaic("median", cube, clear))
                else:
                    detect_cube(args.run, cube, scl, **kw).compute()
            best = min(best, time.perf_counter() - start)
        seconds += best
    return {"run": args.run, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--resolution", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2, help="runs per tile; the fastest counts")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one run, in a child process
    parser.add_argument("--cube-files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args)))
        return
    from cloudfree.detection import get_detector
    from cloudfree.detection._dask import detector_parameters

    halo = get_detector("multitemporal").halo_px(args.resolution,
                                                 detector_parameters("multitemporal"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        files = []
        for index in range(args.tiles):
            path = Path(tmp) / f"tile{index}.npz"
            np.savez(path, **make_tile_cube(index, args.size, args.dates, args.resolution))
            files.append(str(path))
        built = time.perf_counter() - start
        common = [f"--size={args.size}", f"--dates={args.dates}", f"--chunk={args.chunk}",
                  f"--resolution={args.resolution}", f"--workers={args.workers}",
                  f"--repeat={args.repeat}",
                  f"--cube-files={','.join(files)}"]
        rows = []
        for run in RUNS:
            child = subprocess.run([sys.executable, __file__, f"--run={run}", *common],
                                   capture_output=True, text=True, check=True)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    median = rows[0]["seconds"]
    for row in rows:
        row["ratio_to_median"] = row["seconds"] / median
    if args.json:
        print(json.dumps({"tiles": args.tiles, "size_px": args.size, "dates": args.dates,
                          "bands": len(BANDS), "chunk_px": args.chunk,
                          "resolution_m": args.resolution, "workers": args.workers,
                          "multitemporal_halo_px": halo, "rows": rows}, indent=1))
        return
    print(f"{args.tiles} synthetic-world tiles of {args.size} px, {args.dates} dates x "
          f"{len(BANDS)} bands uint16 at {args.resolution:g} m (built in {built:.0f} s); "
          f"chunks {args.chunk} px; multitemporal halo {halo} px; dask threads, "
          f"{args.workers} workers")
    print(f"{'run':<30} {'seconds':>8} {'x median':>9} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['run']:<30} {row['seconds']:>8.2f} {row['ratio_to_median']:>9.2f} "
              f"{row['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
