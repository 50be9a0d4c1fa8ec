"""``cloudfree evaluate``: score methods on evaluation cases under the hidden-pixel protocol
(:mod:`cloudfree.evaluation.harness`), with the case's cloud mask or a detector's; and
``cloudfree evaluate-masks``: score a detector's masks against a case's labels
(:mod:`cloudfree.evaluation.masks`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cloudfree.detection import list_detectors
from cloudfree.errors import InvalidParameterError
from cloudfree.methods import list_methods

CASE_MASK = "case"


def _mask_choices() -> list[str]:
    return [*list_detectors("evaluation"), "auto"]


def _add_mask_options(p: argparse.ArgumentParser, *, with_case: bool) -> None:
    choices = ([CASE_MASK] if with_case else []) + _mask_choices()
    if with_case:
        p.add_argument("--mask", default=CASE_MASK, choices=choices, metavar="NAME",
                       help=f"what the methods see as cloud: {CASE_MASK} (the case's "
                       "cloud_mask, the default), or a detector run on the case's raw bands "
                       f"(and SCL): {', '.join(_mask_choices())}; targets and truth stay the "
                       "case's")
        p.add_argument("--mask-per", default="sample", choices=("sample", "target"),
                       help="run a multi-date detector per sample (default, exact) or once "
                       "per target frame with all its samples' hidden pixels removed")
    else:
        p.add_argument("--mask", required=True, choices=choices, metavar="NAME",
                       help=f"the detector: {', '.join(choices)}")
    p.add_argument("--weights", metavar="PATH",
                   help="local weights file of a learned detector (--mask omnicloudmask); "
                   "else $CLOUDFREE_OMNICLOUDMASK_WEIGHTS. Never downloaded")


def _mask_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"weights": args.weights} if args.weights else {}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cloudfree.evaluation.harness import DEFAULT_PASTES

    choices = ", ".join(list_methods("evaluation"))
    p = sub.add_parser(
        "evaluate", help="score methods on evaluation cases (.npz) under the hidden-pixel "
        "protocol", description="Score cloud-removal methods on evaluation cases: real "
        "cloud masks hide pixels of clear frames; PSNR, SSIM, MAE, RMSE and SAM on those "
        "pixels, and for a method that states a 90 % interval (the corrected ones) its "
        "coverage of them (cover90, calibrated: near 0.9) and mean half-width (±width).")
    p.add_argument("cases", nargs="+", metavar="CASE.npz", help="evaluation case files")
    p.add_argument("--methods", default=",".join(list_methods("evaluation", learned=False)),
                   help=f"comma-separated, from {choices} (default: the non-learned ones)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pasted masks")
    p.add_argument("--pastes", type=int, default=DEFAULT_PASTES,
                   help=f"pasted masks per target frame (default {DEFAULT_PASTES})")
    p.add_argument("--json", metavar="OUT.json", help="also write the records here")
    _add_mask_options(p, with_case=True)
    p.set_defaults(func=run)


def add_masks_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate-masks", help="score a cloud detector's masks against evaluation cases' "
        "labels", description="Run a cloud detector on evaluation cases (.npz) and score "
        "it against their labels: precision, recall, F1 and balanced accuracy for cloud "
        "(against cloud_mask, clouds and shadows) and shadow (against shadow_mask, when the "
        "case has one), and how many dates it calls clear.")
    p.add_argument("cases", nargs="+", metavar="CASE.npz", help="evaluation case files")
    _add_mask_options(p, with_case=False)
    p.add_argument("--json", nargs="?", const="-", metavar="OUT.json",
                   help="print the records as JSON (or, given a path, write them there)")
    p.set_defaults(func=run_masks)


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
    mask = None if args.mask == CASE_MASK else args.mask
    records = evaluate_cases(args.cases, methods, seed=args.seed,
                             pastes_per_target=args.pastes, mask=mask,
                             mask_params=_mask_params(args), mask_per=args.mask_per)
    print(format_table(records))
    if mask is None:
        seen = "mask: the case's cloud_mask"
    else:
        resolved = sorted({str(r["mask"]) for r in records})
        seen = (f"mask: {args.mask} -> {', '.join(resolved)} (detector, run per "
                f"{args.mask_per}; targets and truth from the case's cloud_mask)")
    print(f"{seen}; seed {args.seed}, {args.pastes} pasted masks per target, "
          f"{time.perf_counter() - start:.1f} s in all")
    if args.json:
        _write_json(args.json, records)
        print(f"wrote {args.json}")
    return 0


def _write_json(path: str, records: list[dict[str, Any]]) -> None:
    try:
        Path(path).write_text(json.dumps(records, indent=2) + "\n")
    except OSError as exc:
        raise InvalidParameterError("--json", path,
                                    f"cannot write it ({exc}); give a writable path") from exc


def run_masks(args: argparse.Namespace) -> int:
    from cloudfree.evaluation.masks import evaluate_masks_cases, format_mask_table

    start = time.perf_counter()
    records = evaluate_masks_cases(args.cases, args.mask, _mask_params(args))
    if args.json == "-":
        print(json.dumps(records, indent=2))
        return 0
    print(format_mask_table(records))
    print(f"mask: {args.mask} -> {', '.join(sorted({str(r['mask']) for r in records}))}; "
          f"cloud = its cloud or shadow against cloud_mask, shadow against shadow_mask, "
          f"clear_date = under 1 % flagged; {time.perf_counter() - start:.1f} s in all")
    if args.json:
        _write_json(args.json, records)
        print(f"wrote {args.json}")
    return 0
