"""Training of the generator: synthetic series or real STAC time cubes with simulated
gaps, GAN losses, the loop.

``main(argv)`` is the ``cloudfree train`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from cloudfree.errors import CloudFreeError
from cloudfree.grid import parse_bbox
from cloudfree.settings import Settings
from cloudfree.training.loop import TrainConfig, train

__all__ = ["TrainConfig", "build_parser", "main", "train"]


def build_parser(prog: str = "cloudfree train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train the cloud-removal generator "
                                     "(GAN) on Sentinel-2 series with simulated gaps: synthetic "
                                     "ones, or time cubes of a STAC source.")
    parser.add_argument("--data", choices=("synth", "stac", "mixed"), default="synth",
                        help="training series: synth (generated in memory with cloudfree.demo.synth; "
                             "the default, since it needs no running services), stac (a time "
                             "cube of a STAC source, by default the demo catalog: run "
                             "'cloudfree services up' and 'cloudfree demo-catalog' first), or "
                             "mixed (synth and stac batches in turn)")
    parser.add_argument("--stac-url", default=None,
                        help="STAC API of --data stac/mixed (default: CLOUDFREE_STAC_API_URL, "
                             "else the local one with the demo catalog)")
    parser.add_argument("--collection", default=None,
                        help="source collection (default: CLOUDFREE_SOURCE_COLLECTION, "
                             "sentinel-2-l2a, the demo catalog's)")
    parser.add_argument("--bbox", default=None, help="minx,miny,maxx,maxy in degrees (default: "
                        "the demo catalog's region; required for any other collection)")
    parser.add_argument("--datetime", default=None, help="YYYY-MM-DD/YYYY-MM-DD (default: the "
                        "demo catalog's season; required for any other collection)")
    parser.add_argument("--cube-px", type=int, default=512,
                        help="largest side of the in-memory STAC cube, px")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="crop size in px")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--w-cycle", type=float, default=0.0, help="cycle-consistency weight")
    parser.add_argument("--w-adv", type=float, default=0.01, help="adversarial weight")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", metavar="CKPT", help="checkpoint.pt to resume from")
    parser.add_argument("--out", default="runs/train", help="output directory")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = TrainConfig(
            steps=args.steps, batch=args.batch, size=args.size, frames=args.frames,
            base_channels=args.base_channels, depth=args.depth, lr=args.lr, seed=args.seed,
            data=args.data, w_cycle=args.w_cycle, w_adv=args.w_adv,
            checkpoint_every=args.checkpoint_every, stac_url=args.stac_url,
            stac_collection=args.collection, datetime=args.datetime, cube_px=args.cube_px,
            bbox=None if args.bbox is None else parse_bbox(args.bbox).bbox)
        settings = None if args.data == "synth" else Settings()
        result = train(config, args.out, resume=args.resume, device=args.device,
                       settings=settings)
    except CloudFreeError as exc:
        print(f"cloudfree: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result, indent=2))
    return 0
