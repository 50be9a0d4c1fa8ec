"""The ``cloudfree`` command: parses arguments, calls the library, returns exit codes.

One parser tree, one subcommand per job (each in its own module), and one error handler:
a :class:`~cloudfree.errors.CloudFreeError` becomes a one-line message on stderr and its
exit code, never a traceback. Flows are imported only inside the subcommands that run them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cloudfree.cli import _evaluate, _gc, _local, _mosaic, _plan, _train, _view
from cloudfree.errors import CloudFreeError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudfree", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _local.add_parsers(sub)  # services, demo-catalog
    _mosaic.add_parser(sub)
    _plan.add_parser(sub)
    _evaluate.add_parser(sub)
    _evaluate.add_masks_parser(sub)  # evaluate-masks
    _train.add_parser(sub)
    _gc.add_parser(sub)
    _local.add_demo_parser(sub)
    _view.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CloudFreeError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"cloudfree: error: {message}", file=sys.stderr)
        return exc.exit_code
