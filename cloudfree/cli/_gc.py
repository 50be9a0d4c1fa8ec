"""``cloudfree gc``: list (dry run) or delete the output files no live item points at."""

from __future__ import annotations

import argparse
import json

from cloudfree.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gc", help="list (dry run) or delete orphaned output folders and stale locks",
        description="Find the folders under s3://BUCKET/OUTPUT_COLLECTION/ that no item of "
                    "the output collection in the STAC API points at (left by runs killed "
                    "before publishing, or by deleted items), and lock objects no run "
                    "refreshes any more. A dry run unless --delete. Folders written within "
                    "--min-age are kept: a running job may not have published them yet.")
    p.add_argument("--delete", action="store_true",
                   help="delete the orphans (default: only list them)")
    p.add_argument("--min-age", default="6h",
                   help="keep folders written more recently than this (90s, 30m, 6h, 2d; "
                        "default 6h); must exceed the longest a tile runs")
    p.add_argument("--collection", default=None,
                   help="output collection (default from settings: CLOUDFREE_OUTPUT_COLLECTION)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from cloudfree.gc import delete_orphans, find_orphans, parse_duration
    from cloudfree.storage import check_bucket, s3_filesystem

    min_age = parse_duration(args.min_age)
    settings = Settings()
    collection = args.collection or settings.output_collection
    fs = s3_filesystem(settings.storage_options())
    check_bucket(fs, settings.bucket)
    root = f"s3://{settings.bucket}/{collection}"
    plan = find_orphans(fs, root, settings.stac_url, collection, min_age=min_age)
    if args.delete:
        plan = delete_orphans(fs, plan, settings.stac_url, collection)
    if args.json:
        print(json.dumps({**plan.as_dict(), "dry_run": not args.delete}, indent=1))
        return 0
    folders = [o for o in plan.orphans if o.kind == "prefix"]
    locks = [o for o in plan.orphans if o.kind == "lock"]
    print(f"{root}: {plan.live} live folders, {len(folders)} orphaned "
          f"({_mb(sum(o.size for o in folders))}), {len(locks)} stale locks, "
          f"{len(plan.young)} newer than --min-age {args.min_age} (kept)")
    for orphan in plan.orphans:
        state = ("deleted" if orphan.url in plan.deleted else
                 "busy, kept" if orphan.url in plan.busy else
                 "orphan" if not args.delete else "kept")
        print(f"  {state:<10} {orphan.url}  ({orphan.objects} files, {_mb(orphan.size)}, "
              f"newest {orphan.as_dict()['newest']})")
    if not args.delete and plan.orphans:
        print("dry run: nothing deleted; run 'cloudfree gc --delete' to delete them")
    return 0
