"""Benchmark: peak memory of a regional mosaic over 1x and 4x the demo area (issue 13, P3).

    python bench/scale.py [--size 256] [--tile 128] [--dates 8] [--factors 1,4]

Starts its own local stack (``cloudfree.localstack.up``, a temporary state dir, free
ports), then for each factor builds the demo catalog of two demo scenes side by side,
``--size x sqrt(factor)`` px each (1x: 256 px; 4x: 512 px, four times the area; the demo
generator's swaths leave some of 8 scenes empty, so the area grows by scene size) and
runs the regional flow over the demo region in ``--tile`` px grid tiles, in a child
process, into a fresh output collection. The flow process reports its own peak RSS
(``VmHWM``); while it runs, the process tree is sampled (psutil, every 0.1 s): the largest
worker process, and the flow process with its Dask workers and nannies. Prints the tiles, the seconds and each peak RSS, and the ratio of the last
factor's peaks to the first's. The goal is a ratio of at most 1.2: tiles run whole on
the workers, a bounded number at a time (``max_tiles_in_flight``), and only their
outcomes come back to the flow, so memory does not grow with the area. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _settings(state_dir: Path) -> Any:
    """Settings on a block of free ports, as the test suite's stack gets them."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port_settings

    return free_port_settings(state_dir)


class Sampler:
    """Peak RSS of a process, of its largest descendant, and of it with all its descendants
    (the Dask workers and their nannies), sampled every ``every`` s."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.flow = 0
        self.total = 0
        self.worker = 0  # the largest single worker process
        self.workers = 0
        self.series: list[int] = []  # the flow process's RSS, each sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                own = self.proc.memory_info().rss
                children = self.proc.children(recursive=True)
            except psutil.Error:
                break
            rest = 0
            for child in children:
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                rest += rss
                self.worker = max(self.worker, rss)
            self.series.append(own)
            self.flow, self.workers = max(self.flow, own), max(self.workers, len(children))
            self.total = max(self.total, own + rest)
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(args: argparse.Namespace) -> None:
    """The flow process: one regional mosaic; prints its tiles and its own peak RSS."""
    import warnings

    from cloudfree.errors import CloudFreeWarning
    from flows.regional_mosaic import regional_mosaic

    warnings.simplefilter("ignore", CloudFreeWarning)
    region = json.loads(args.child)
    result = regional_mosaic(datetime=region["window"], bbox=region["bbox"],
                             epsg=region["epsg"], tile_size_px=args.tile)
    statuses = [t["status"] for t in result["tiles"]]
    print(json.dumps({"tiles": len(statuses), "published": statuses.count("published"),
                      "flow_hwm": _high_water_mark()}))


def _high_water_mark() -> int:
    """This process's peak RSS, bytes: ``VmHWM``, which exec resets. Not ``ru_maxrss``: a
    process started by fork/vfork + exec inherits its parent's peak in it (here the
    bench's, which generated the demo scenes), and the workers the flow's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _run(settings: Any, factor: int, args: argparse.Namespace) -> dict[str, Any]:
    from pystac_client import Client

    from cloudfree.demo import build_demo_catalog, demo_region
    from cloudfree.testing import settings_env

    build_demo_catalog(stac_api_url=settings.stac_publish_url,
                       storage_options=settings.storage_options(), bucket=settings.bucket,
                       collection_id=settings.source_collection, n_tiles=2,
                       n_dates=args.dates, size_px=_side(args.size, factor), seed=1,
                       stac_token=settings.stac_token())
    items = list(Client.open(settings.stac_url).search(
        collections=[settings.source_collection], max_items=10_000).items_as_dicts())
    epsg, bbox, window = demo_region(items, tile_size_px=args.tile)
    env = {**os.environ, **settings_env(settings), "PREFECT_API_URL": settings.prefect_url,
           "CLOUDFREE_OUTPUT_COLLECTION": f"scale-{factor}x-{uuid.uuid4().hex[:6]}",
           "CLOUDFREE_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    region = json.dumps({"epsg": epsg, "bbox": list(bbox), "window": window})
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, __file__, "--tile", str(args.tile), "--child",
                             region], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    with Sampler(proc.pid) as sampler:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the {factor}x run failed (exit {proc.returncode})")
    record = json.loads(out.strip().splitlines()[-1])
    return {"factor": factor, "scenes": len(items), "seconds": time.monotonic() - start,
            "flow_peak": sampler.flow, "total_peak": sampler.total, "worker_peak": sampler.worker,
            "processes": sampler.workers + 1, "series": _quartiles(sampler.series), **record}


def _quartiles(series: list[int]) -> list[int]:
    """The flow process's RSS at 25, 50, 75 and 100 % of its run (does it grow per tile?)."""
    if not series:
        return [0, 0, 0, 0]
    return [series[min(len(series) - 1, len(series) * q // 4)] for q in (1, 2, 3, 4)]


def _side(size: int, factor: int) -> int:
    side = round(size * math.sqrt(factor))
    return side + side % 2  # the demo takes even sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="demo scene size, px")
    parser.add_argument("--tile", type=int, default=128, help="grid tile size, px")
    parser.add_argument("--dates", type=int, default=8, help="demo dates")
    parser.add_argument("--factors", default="1,4", help="area factors (1, 2 or 4 ...)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from cloudfree import localstack

    state_dir = Path(tempfile.mkdtemp(prefix="cloudfree-scale-"))
    state_dir.chmod(0o755)  # as root, Postgres runs as 'postgres' and must enter it
    settings = _settings(state_dir)
    rows = []
    try:
        localstack.up(settings)
        for factor in (int(f) for f in args.factors.split(",")):
            rows.append(_run(settings, factor, args))
    finally:
        localstack.down(settings)
        shutil.rmtree(state_dir, ignore_errors=True)
    mib = 2**20
    print(f"\nRegional mosaic, two demo scenes of {args.size} px x sqrt(area), {args.dates} dates, "
          f"{args.tile} px tiles ({os.cpu_count()} cores):")
    print(f"{'area':>5} {'scenes':>6} {'tiles':>5} {'s':>6} {'flow MiB':>9} "
          f"{'flow+workers MiB':>17} {'procs':>5} {'largest worker MiB':>19}")
    for r in rows:
        print(f"{r['factor']:>4}x {r['scenes']:>6} {r['tiles']:>5} {r['seconds']:>6.1f} "
              f"{r['flow_hwm'] / mib:>9.0f} {r['total_peak'] / mib:>17.0f} "
              f"{r['processes']:>5} {r['worker_peak'] / mib:>19.0f}   flow MiB at 25/50/75/"
              f"100 %: {'/'.join(f'{v / mib:.0f}' for v in r['series'])}")
    first, last = rows[0], rows[-1]
    print(f"ratio {last['factor']}x / {first['factor']}x: flow process "
          f"{last['flow_hwm'] / first['flow_hwm']:.2f}, flow + workers "
          f"{last['total_peak'] / first['total_peak']:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
