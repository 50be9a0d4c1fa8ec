"""Training of the generator: synthetic series with simulated gaps, GAN losses, the loop.

``main(argv)`` is the ``cloudfree train`` command."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from cloudfree.training.loop import TrainConfig, train

__all__ = ["TrainConfig", "build_parser", "main", "train"]


def build_parser(prog: str = "cloudfree train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train the cloud-removal generator "
                                     "(GAN) on synthetic Sentinel-2 series with simulated gaps.")
    parser.add_argument("--data", choices=("synth",), default="synth",
                        help="training series: synth (generated with cloudfree.synth, what the "
                             "demo catalog is made of; reading series from a STAC catalog is "
                             "not implemented yet)")
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
    config = TrainConfig(steps=args.steps, batch=args.batch, size=args.size, frames=args.frames,
                         base_channels=args.base_channels, depth=args.depth, lr=args.lr,
                         seed=args.seed, data=args.data, w_cycle=args.w_cycle, w_adv=args.w_adv,
                         checkpoint_every=args.checkpoint_every)
    result = train(config, args.out, resume=args.resume, device=args.device)
    print(json.dumps(result, indent=2))
    return 0
