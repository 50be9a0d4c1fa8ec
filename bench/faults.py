"""Benchmark: the fault-injection cases, against a local stack of their own, as a table.

    python bench/faults.py [--cases search-503,upload-reset,...] [--json]

Starts a local stack (``cloudfree.localstack.up``) on free ports in a temporary state
directory, loads the demo catalog, runs every case of
:mod:`cloudfree.testing.fault_cases` (the same scenarios as
``tests/integration/test_faults.py``) and prints, per case: the fault, how many faults
were injected, the outcome, the items and files lost (must be 0) and the seconds; then
stops the stack. Exits 1 when a case lost anything or fell short of its verdict.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudfree import localstack  # noqa: E402
from cloudfree.errors import CloudFreeWarning  # noqa: E402
from cloudfree.testing import fault_cases  # noqa: E402
from tests.conftest import free_port_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(fault_cases.CASES),
                        help="comma-separated case names (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    args = parser.parse_args(argv)
    names = [n for n in args.cases.split(",") if n]
    unknown = sorted(set(names) - set(fault_cases.CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(fault_cases.CASES)}")

    # the demo scenes match no catalog profile (a warning per tile), and a killed worker's
    # restart is the point of a case: neither is news here
    warnings.simplefilter("ignore", CloudFreeWarning)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="cloudfree-faults-") as tmp:
        state_dir = Path(tmp)
        if os.geteuid() == 0:  # Postgres runs as 'postgres', which must enter it
            state_dir.chmod(0o755)
        settings = free_port_settings(state_dir)
        localstack.up(settings, echo=lambda *_: None)
        try:
            world = fault_cases.make_world(settings)
            results = []
            for name in names:
                result = fault_cases.run_case(world, name)
                results.append(result)
                if args.json:
                    print(json.dumps({**vars(result), "ok": result.ok}), flush=True)
        finally:
            localstack.down(settings, echo=lambda *_: None)

    if not args.json:
        header = ("fault", "injections", "outcome", "items lost", "files lost", "s")
        rows = [(r.fault, str(r.injections), r.outcome, str(r.items_lost), str(r.files_lost),
                 f"{r.seconds:.1f}") for r in results]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        line = " | ".join(f"{{:<{w}}}" for w in widths)
        print(line.format(*header))
        print("-+-".join("-" * w for w in widths))
        for row in rows:
            print(line.format(*row))
        for r in results:
            for problem in r.problems:
                print(f"  {r.case}: {problem}")
    lost = sum(r.items_lost + r.files_lost for r in results)
    print(f"\n{len(results)} cases, {sum(r.ok for r in results)} as expected, "
          f"{lost} items or files lost")
    return 0 if lost == 0 and all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
