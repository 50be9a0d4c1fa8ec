"""Benchmark: seams between grid tiles of a regional mosaic, with and without tile halos.

    python bench/seams.py [--size 256] [--dates 8] [--tile 64] [--seed 1]
                          [--methods median,bap,interpolate_corrected,generator]

Renders the demo world (two adjacent demo scenes of ``--size`` px, ``--dates`` dates) to
local GeoTIFFs, cuts the region they cover into grid tiles of ``--tile`` px, and mosaics
every tile with :func:`cloudfree.tile.compute_tile`, once as cloudfree does (each tile on its
bounds grown by :func:`cloudfree.tile.halo_px`, then cropped) and once with no halo (how
tiles were computed before). For each, over every pair of pixels across a tile edge and
every pair one 20 m SCL pixel inside a tile on either side (a pair that, like one
across an edge, straddles two SCL pixels), it prints the share whose ``clear_count``
differs, and the mean absolute red jump in DN. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cloudfree import tile as tile_module
from cloudfree.demo import demo_region, generate_scenes
from cloudfree.errors import CloudFreeWarning
from cloudfree.grid import grid_tiles, parse_bbox
from cloudfree.tile import MosaicParams, compute_tile, items_for_tile


def _sink(data: bytes, href: str) -> None:
    path = Path(href)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _edges(layers: dict[tuple[int, int], np.ndarray]
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(across, inside): per edge, the pairs across it and one column or row inside."""
    across, inside = [], []
    for (x0, y0), a in layers.items():
        east, south = layers.get((x0 + 1, y0)), layers.get((x0, y0 - 1))
        # Inside: the pair one 20 m SCL pixel in from the edge, on either side. A pair one
        # 10 m column in lies inside one SCL pixel and never differs by the SCL, while a
        # pair across an (even) edge always straddles two: comparing those would count
        # the SCL's own 20 m grid as a seam.
        if east is not None:
            across.append(np.stack([a[..., :, -1], east[..., :, 0]]))
            inside.append(np.stack([a[..., :, -3], a[..., :, -2]]))
            inside.append(np.stack([east[..., :, 1], east[..., :, 2]]))
        if south is not None:
            across.append(np.stack([a[..., -1, :], south[..., 0, :]]))
            inside.append(np.stack([a[..., -3, :], a[..., -2, :]]))
            inside.append(np.stack([south[..., 1, :], south[..., 2, :]]))
    return across, inside


def _figures(results: dict[tuple[int, int], Any]) -> dict[str, float]:
    counts = {k: r["clear_count"].values.astype(int) for k, r in results.items()}
    reds = {k: r["reflectance"].sel(band="red").values.astype(float) for k, r in results.items()}
    out: dict[str, float] = {}
    for name, layers in (("count", counts), ("red", reds)):
        across, inside = _edges(layers)
        a = np.concatenate([p.reshape(2, -1) for p in across], axis=1)
        i = np.concatenate([p.reshape(2, -1) for p in inside], axis=1)
        if name == "count":
            out["count_across"], out["count_inside"] = (float(np.mean(a[0] != a[1])),
                                                        float(np.mean(i[0] != i[1])))
        else:
            ok_a, ok_i = (a > 0).all(axis=0), (i > 0).all(axis=0)
            out["red_across"] = float(np.mean(np.abs(a[0] - a[1])[ok_a]))
            out["red_inside"] = float(np.mean(np.abs(i[0] - i[1])[ok_i]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dates", type=int, default=8)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--methods", default="median,bap,interpolate_corrected,generator")
    args = parser.parse_args()
    warnings.simplefilter("ignore", CloudFreeWarning)
    with tempfile.TemporaryDirectory() as tmp:
        items = generate_scenes(base_url=tmp, sink=_sink, n_tiles=2, n_dates=args.dates,
                                size_px=args.size, seed=args.seed)
        epsg, bbox, window = demo_region(items, tile_size_px=args.tile)
        tiles = grid_tiles(parse_bbox(list(bbox)), resolution_m=10.0, tile_size_px=args.tile,
                           epsg=epsg)
        tiles = [t for t in tiles if items_for_tile(items, t)]
        print(f"{len(items)} scenes of {args.size} px, {len(tiles)} tiles of {args.tile} px")
        original = tile_module.halo_px
        for method in args.methods.split(","):
            for label, halo in (("no halo", lambda params, *_: 0), ("halo", original)):
                tile_module.halo_px = halo  # the "no halo" row: how tiles were computed before
                start = time.perf_counter()
                try:
                    params = MosaicParams(method=method, chunksize=args.tile)
                    results = {}
                    for t in tiles:
                        *_, ix, iy = t.tile_id.split("-")
                        results[(int(ix[1:]), int(iy[1:]))] = compute_tile(
                            items_for_tile(items, t), t, params)
                finally:
                    tile_module.halo_px = original
                f = _figures(results)
                print(f"{method:22s} {label:8s} clear_count differs across edges "
                      f"{f['count_across']:6.2%} / inside {f['count_inside']:6.2%}; "
                      f"mean red jump {f['red_across']:6.1f} / {f['red_inside']:6.1f} DN "
                      f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
