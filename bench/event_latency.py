"""Benchmark: event mode's time to the first product (issue 16): flow start -> the post
item published, for a 10 km x 10 km area of the demo catalog.

    python bench/event_latency.py [--method median] [--generator] [--km 10]
                                  [--event-date 2024-07-01] [--datetime 2024-04-01/2024-10-28]
                                  [--keep] [--reuse DIR] [--down DIR]

Starts its own local stack (``cloudfree.localstack.up``, a temporary state dir, free
ports, as ``bench/scale.py``), writes the demo catalog (``cloudfree demo-catalog``'s
defaults: two 1024 px scenes side by side, ten dates, seed 0), then runs the
``aoi-mosaic`` flow in event mode, in this process, over a square of ``--km`` km at the
middle of the demo area. A thread polls the readers' STAC API every 0.5 s for the items
of the run's output collection: the time from the flow's call to the post item being
served is the figure (the target: at most 60 s on our 2 cores with the default method);
the pre item's and the flow's own end follow, with the CPU seconds spent by then and the
load average (on a shared machine the wall time grows with the others' load). ``--generator`` also times the generator
(a fresh output collection; it trains a head per tile and costs far more). Figures are
printed, never asserted. ``--keep`` leaves the stack up and prints how to reuse it
(``--reuse DIR``: a stack left by ``--keep``, the demo catalog already there, left
running too; ``--down DIR`` stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = "bench-settings.json"


def _settings(state_dir: Path) -> Any:
    """Settings on a block of free ports, as the test suite's stack gets them."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port_settings

    return free_port_settings(state_dir)


#: Processes of the local stack (never counted in :func:`cpu_seconds`).
SERVICES = ("postgres", "weed", "uvicorn", "prefect server", "pg_ctl")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process (the flow) and its descendants alive now
    (the Dask worker), not the stack's services. On a shared machine the wall time grows
    with the others' load; this does not, much."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            if proc is not me and any(s in " ".join(proc.cmdline()) for s in SERVICES):
                continue
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class Watcher:
    """When each item of an output collection first appears in the readers' API, as
    seconds since :meth:`start`, by event role (the first item of each role), and the CPU
    seconds spent by then (:func:`cpu_seconds`, from :meth:`start`)."""

    def __init__(self, api_url: str, collection: str, every_s: float = 0.5) -> None:
        self.url = f"{api_url.rstrip('/')}/collections/{collection}/items?limit=100"
        self.every_s = every_s
        self.seen: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.t0 = 0.0
        self.cpu0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.cpu0 = cpu_seconds()
        self.t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                try:
                    page = client.get(self.url)
                    features = page.json().get("features", []) if page.status_code == 200 else []
                except httpx.HTTPError:
                    features = []
                now = time.perf_counter() - self.t0
                for feature in features:
                    role = feature["properties"].get("cloudfree:event_role", "mosaic")
                    if role not in self.seen:
                        self.seen[role] = now
                        self.cpu[role] = cpu_seconds() - self.cpu0
                self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _square(km: float) -> list[float]:
    """A ``km`` x ``km`` square (lon/lat bbox of the UTM square) at the middle of the
    demo catalog's two default 1024 px scenes."""
    from cloudfree.demo.layout import DEFAULT_SIZE_PX, EPSG, RESOLUTION_M, WORLD_ORIGIN
    from cloudfree.grid import transform_bbox

    extent = DEFAULT_SIZE_PX * RESOLUTION_M
    cx, cy = WORLD_ORIGIN[0] + extent, WORLD_ORIGIN[1] - extent / 2
    half = km * 500.0
    return [round(v, 5) for v in transform_bbox((cx - half, cy - half, cx + half, cy + half),
                                                EPSG, 4326)]


def _run(settings: Any, args: argparse.Namespace, method: str) -> dict[str, Any]:
    """One event-mode flow run into a fresh output collection; the watcher's figures."""
    from cloudfree.testing import settings_env
    from flows.aoi_mosaic import aoi_mosaic

    collection = f"event-bench-{method}-{uuid.uuid4().hex[:6]}"
    os.environ.update({**settings_env(settings), "CLOUDFREE_OUTPUT_COLLECTION": collection})
    bbox = _square(args.km)
    watcher = Watcher(settings.stac_url, collection)
    watcher.start()
    try:
        result = aoi_mosaic(bbox=bbox, datetime=args.datetime, event_date=args.event_date,
                            method=method)
        total = time.perf_counter() - watcher.t0
        time.sleep(0.3)  # one more poll after the end
    finally:
        watcher.stop()
    tiles = result["tiles"]
    return {"method": method, "bbox": bbox, "total_s": total, "post_s": watcher.seen.get("post"),
            "post_cpu_s": watcher.cpu.get("post"), "load": os.getloadavg()[0],
            "pre_s": watcher.seen.get("pre"), "statuses": [t["status"] for t in tiles],
            "scenes": [t["n_sources"] for t in tiles], "pairs": result["event"]["pairs"]}


def _print(rows: list[dict[str, Any]], args: argparse.Namespace, tile: Any) -> None:
    print(f"\nEvent mode, {args.km:g} km x {args.km:g} km ({tile.shape[0]} x {tile.shape[1]} "
          f"px at 10 m), event {args.event_date}, window {args.datetime}, demo catalog "
          f"(2 x 1024 px scenes, 10 dates), {os.cpu_count()} cores:")
    print(f"{'method':>10} {'to post item':>13} {'CPU to post':>12} {'to pre item':>12} "
          f"{'flow':>7} {'load':>5}  scenes post/pre")
    for r in rows:
        post = "-" if r["post_s"] is None else f"{r['post_s']:.1f} s"
        cpu = "-" if r["post_cpu_s"] is None else f"{r['post_cpu_s']:.1f} s"
        pre = "-" if r["pre_s"] is None else f"{r['pre_s']:.1f} s"
        print(f"{r['method']:>10} {post:>13} {cpu:>12} {pre:>12} {r['total_s']:>5.1f} s "
              f"{r['load']:>5.1f}  {'/'.join(map(str, r['scenes']))}   "
              f"{', '.join(r['statuses'])}")
    print("(wall times from the flow's call to the item served by the STAC API; CPU: the "
          "flow's process and its Dask worker, not the stack's services; load: the 1-minute "
          "load average at the end, on the machine's cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--km", type=float, default=10.0, help="side of the square AOI, km")
    parser.add_argument("--event-date", default="2024-07-01")
    parser.add_argument("--datetime", default="2024-04-01/2024-10-28")
    parser.add_argument("--method", default="median", help="the method (default median)")
    parser.add_argument("--generator", action="store_true",
                        help="also time the generator (slow: minutes on 2 cores)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--reuse", default=None, metavar="DIR",
                        help="the state dir of a stack left by --keep")
    parser.add_argument("--down", default=None, metavar="DIR",
                        help="stop the stack left by --keep in DIR, and remove DIR")
    args = parser.parse_args()
    os.environ.setdefault("CLOUDFREE_PROGRESS", "0")
    import warnings

    from cloudfree import localstack
    from cloudfree.errors import CloudFreeWarning

    warnings.simplefilter("ignore", CloudFreeWarning)
    if args.reuse or args.down:
        from cloudfree.settings import Settings

        state_dir = Path(args.reuse or args.down)
        settings = Settings(**json.loads((state_dir / SETTINGS_FILE).read_text()))
        if args.down:
            localstack.down(settings)
            shutil.rmtree(state_dir, ignore_errors=True)
            return
    else:
        state_dir = Path(tempfile.mkdtemp(prefix="cloudfree-event-bench-"))
        state_dir.chmod(0o755)  # as root, Postgres runs as 'postgres' and must enter it
        settings = _settings(state_dir)
    keep = args.keep or bool(args.reuse)
    os.environ["PREFECT_API_URL"] = settings.prefect_url  # before Prefect is imported
    try:
        localstack.up(settings)
        if not args.reuse:
            from cloudfree.demo import build_demo_catalog

            start = time.perf_counter()
            build_demo_catalog(stac_api_url=settings.stac_publish_url,
                               stac_token=settings.stac_token(),
                               storage_options=settings.storage_options(),
                               bucket=settings.bucket, collection_id=settings.source_collection)
            print(f"demo catalog written in {time.perf_counter() - start:.0f} s")
        from cloudfree.grid import aoi_tile, parse_bbox

        tile = aoi_tile(parse_bbox(_square(args.km)), resolution_m=10.0)
        methods = [args.method, *(["generator"] if args.generator else [])]
        rows = [_run(settings, args, method) for method in methods]
    finally:
        if keep:
            (state_dir / SETTINGS_FILE).write_text(json.dumps({
                k: getattr(settings, k) for k in ("state_dir", "seaweed_port_base", "pg_port",
                                                  "stac_port", "s3_port", "prefect_port",
                                                  "stac_write_port")}, default=str))
            print(f"stack left running: --reuse {state_dir}; stop it: --down {state_dir}")
        else:
            localstack.down(settings)
            shutil.rmtree(state_dir, ignore_errors=True)
    _print(rows, args, tile)


if __name__ == "__main__":
    main()
