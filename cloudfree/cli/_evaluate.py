"""``cloudfree evaluate``: score methods on evaluation cases under the hidden-pixel protocol
(:mod:`cloudfree.evaluation.harness`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cloudfree.errors import InvalidParameterError
from cloudfree.methods import list_methods


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cloudfree.evaluation.harness import DEFAULT_PASTES

    choices = ", ".join(list_methods("evaluation"))
    p = sub.add_parser(
        "evaluate", help="score methods on evaluation cases (.npz) under the hidden-pixel "
        "protocol", description="Score cloud-removal methods on evaluation cases: real "
        "cloud masks hide pixels of clear frames; PSNR, SSIM, MAE, RMSE and SAM on those "
        "pixels.")
    p.add_argument("cases", nargs="+", metavar="CASE.npz", help="evaluation case files")
    p.add_argument("--methods", default=",".join(list_methods("evaluation", learned=False)),
                   help=f"comma-separated, from {choices} (default: the non-learned ones)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pasted masks")
    p.add_argument("--pastes", type=int, default=DEFAULT_PASTES,
                   help=f"pasted masks per target frame (default {DEFAULT_PASTES})")
    p.add_argument("--json", metavar="OUT.json", help="also write the records here")
    p.set_defaults(func=run)


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names, each one of the registry's evaluation methods."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    choices = list_methods("evaluation")
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        raise InvalidParameterError("methods", ",".join(unknown) or text,
                                    f"choose from {', '.join(choices)}")
    return names


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    from cloudfree.evaluation.harness import evaluate_cases, format_table

    start = time.perf_counter()
    records = evaluate_cases(args.cases, methods, seed=args.seed,
                             pastes_per_target=args.pastes)
    print(format_table(records))
    print(f"seed {args.seed}, {args.pastes} pasted masks per target, "
          f"{time.perf_counter() - start:.1f} s in all")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
        except OSError as exc:
            raise InvalidParameterError("--json", args.json,
                                        f"cannot write it ({exc}); give a writable path") from exc
        print(f"wrote {args.json}")
    return 0
