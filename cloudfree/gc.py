"""Garbage collection of the output bucket: files no live item points at.

The publisher removes the previous making of an item once the new one is live
(:func:`cloudfree.tile.mosaic_tile`), but a run killed between its uploads and its publish,
or one that failed while the STAC API was down, leaves a folder behind; so do items
deleted from the API and products published before item ids named the product. This
module finds them:

* :func:`plan_gc` (pure) takes the object listing and the folders live items point at, and
  says which folders are orphans, which are too young to judge, and which stale locks can
  go.
* :func:`find_orphans` and :func:`delete_orphans` are the edges: the S3 listing, the STAC
  API's item pages, and the deletes.

What is a candidate: only the layout the publisher writes, ``{root}/{tile}/{item}/{run}/``
(a folder three levels down; the item's files and its static JSON copy), and lock objects
``{root}/_locks/*.lock``. Nothing else under the root (a static catalog, files of another
tool) is ever touched.

Why it is safe next to running jobs:

* The bucket is listed before the API, so a folder that becomes live between the two is
  seen live.
* A folder written within ``min_age`` is never an orphan: it may belong to a run that has
  not published yet. ``min_age`` must exceed the longest a tile takes from its first upload
  to its publish (the task timeout, ``CLOUDFREE_TASK_TIMEOUT_S``); the default, 6 h, is six
  times the default timeout.
* A folder is deleted under its item's lock (:mod:`cloudfree.locks`), taken without
  waiting (a folder whose item is being made is skipped as busy), after checking again
  that no live item points at it and that nothing in it is younger than ``min_age``.
* A lock is an orphan when not refreshed for its time to live (plus a minute for clock
  differences between this machine and the store); it is deleted only if it is still the
  version listed.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cloudfree.errors import InvalidParameterError, TileLockError, UnknownCollectionError
from cloudfree.locks import (
    DEFAULT_TTL_S,
    LOCK_SUFFIX,
    LOCKS_DIR,
    LockInfo,
    TileLock,
    delete_lock,
    lock_url,
)
from cloudfree.publish import item_prefix, prefixes_overlap

#: The default of ``--min-age``.
DEFAULT_MIN_AGE = dt.timedelta(hours=6)
#: Slack for clocks (this machine's against the store's) when judging a lock stale.
LOCK_CLOCK_SLACK = dt.timedelta(minutes=1)
#: Items per page asked of the STAC API.
PAGE_LIMIT = 500

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> dt.timedelta:
    """``90``, ``90s``, ``30m``, ``6h`` or ``2d`` -> a duration (0 or more)."""
    match = _DURATION.match(str(text).lower())
    if match is None:
        raise InvalidParameterError("--min-age", text, "give a duration such as 90s, 30m, 6h "
                                                       "or 2d (0 judges every folder)")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class StoredObject:
    """One object under the output root."""

    path: str  # relative to the root, '/'-separated
    size: int
    modified: dt.datetime
    etag: str = ""


@dataclass(frozen=True)
class Orphan:
    """A folder (``kind="prefix"``) or lock object no live item or run needs."""

    url: str
    kind: Literal["prefix", "lock"]
    item_id: str
    objects: int
    size: int
    newest: dt.datetime
    etag: str = ""  # a lock's, as listed

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "kind": self.kind, "item_id": self.item_id,
                "objects": self.objects, "size": self.size,
                "newest": self.newest.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass(frozen=True)
class GcPlan:
    """What :func:`plan_gc` found under one output root."""

    root: str
    min_age: dt.timedelta
    orphans: tuple[Orphan, ...]
    live: int  # folders a live item points at
    young: tuple[str, ...]  # folders no item points at, written within min_age: kept
    other: int  # objects outside the layout: never touched
    deleted: tuple[str, ...] = field(default=())
    busy: tuple[str, ...] = field(default=())  # orphans whose item was being made: kept

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "min_age_s": self.min_age.total_seconds(),
                "orphans": [o.as_dict() for o in self.orphans], "live": self.live,
                "young": list(self.young), "other": self.other,
                "orphan_bytes": sum(o.size for o in self.orphans),
                "deleted": list(self.deleted), "busy": list(self.busy)}


def plan_gc(objects: Iterable[StoredObject], live_prefixes: Iterable[str], *, root: str,
            now: dt.datetime, min_age: dt.timedelta,
            lock_ttls: Mapping[str, float] | None = None) -> GcPlan:
    """The orphans under ``root`` (pure).

    ``objects``: every object under the root; ``live_prefixes``: the folders of the live
    items' files (URLs); ``lock_ttls``: each lock's time to live (s) by its path, as its
    holder wrote it (default :data:`~cloudfree.locks.DEFAULT_TTL_S`)."""
    if min_age < dt.timedelta(0):
        raise InvalidParameterError("--min-age", min_age, "give a duration of 0 or more")
    root = root.rstrip("/")
    live = [p.rstrip("/") for p in live_prefixes]
    ttls = dict(lock_ttls or {})
    folders: dict[tuple[str, str, str], list[StoredObject]] = {}
    orphans: list[Orphan] = []
    other = 0
    for obj in objects:
        parts = obj.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == LOCKS_DIR and parts[1].endswith(LOCK_SUFFIX):
            ttl = dt.timedelta(seconds=ttls.get(obj.path, DEFAULT_TTL_S))
            if now - obj.modified > ttl + LOCK_CLOCK_SLACK:
                orphans.append(Orphan(f"{root}/{obj.path}", "lock",
                                      parts[1].removesuffix(LOCK_SUFFIX), 1, obj.size,
                                      obj.modified, obj.etag))
        elif len(parts) >= 4 and not parts[0].startswith(("_", ".")):
            folders.setdefault((parts[0], parts[1], parts[2]), []).append(obj)
        else:
            other += 1
    n_live = 0
    young: list[str] = []
    for (tile, item, run), members in sorted(folders.items()):
        url = f"{root}/{tile}/{item}/{run}"
        if any(prefixes_overlap(url, p) for p in live):
            n_live += 1
            continue
        newest = max(o.modified for o in members)
        if now - newest < min_age:
            young.append(url)
            continue
        orphans.append(Orphan(url, "prefix", item, len(members), sum(o.size for o in members),
                              newest))
    return GcPlan(root=root, min_age=min_age, orphans=tuple(orphans), live=n_live,
                  young=tuple(young), other=other)


# --------------------------------------------------------------------------- edges


def _path(url: str) -> str:
    return url.removeprefix("s3://").removeprefix("file://")


def list_objects(fs: Any, root: str) -> list[StoredObject]:
    """Every object under ``root`` (``s3://bucket/prefix`` through s3fs, or a local path)."""
    base = _path(root).rstrip("/")
    if not root.startswith("s3://"):
        folder = Path(base)
        return [StoredObject(str(p.relative_to(folder)), p.stat().st_size,
                             dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC))
                for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    found: dict[str, dict[str, Any]] = fs.find(base, detail=True)
    return [StoredObject(path=name[len(base) + 1:], size=int(info.get("size", 0)),
                         modified=info["LastModified"], etag=str(info.get("ETag", "")))
            for name, info in found.items() if info.get("type") == "file"]


def live_prefixes(api_url: str, collection: str, *, token: str | None = None) -> list[str]:
    """The folders of every item of ``collection``, paging through the item listing by its
    ``next`` links."""
    from cloudfree._stac_api import get_json

    api = api_url.rstrip("/")
    if get_json(f"{api}/collections/{collection}", token=token) is None:
        listing = get_json(f"{api}/collections", token=token) or {}
        raise UnknownCollectionError(collection, api, [c.get("id", "?") for c in
                                                       listing.get("collections", [])])
    url: str | None = f"{api}/collections/{collection}/items?limit={PAGE_LIMIT}"
    seen: set[str] = set()
    prefixes: list[str] = []
    while url is not None and url not in seen:
        seen.add(url)
        page = get_json(url, token=token) or {}
        for item in page.get("features", []):
            prefix = item_prefix(item)
            if prefix is not None:
                prefixes.append(prefix)
        url = next((link["href"] for link in page.get("links", [])
                    if link.get("rel") == "next" and link.get("href")), None)
    return prefixes


def _lock_ttls(fs: Any, root: str, objects: Iterable[StoredObject]) -> dict[str, float]:
    from cloudfree.locks import read_lock

    ttls: dict[str, float] = {}
    for obj in objects:
        if obj.path.startswith(f"{LOCKS_DIR}/") and obj.path.endswith(LOCK_SUFFIX):
            found = read_lock(f"{root.rstrip('/')}/{obj.path}", fs)
            info: LockInfo | None = found[0] if found else None
            if info is not None:
                ttls[obj.path] = info.ttl_s
    return ttls


def find_orphans(fs: Any, root: str, api_url: str, collection: str, *,
                 min_age: dt.timedelta = DEFAULT_MIN_AGE, token: str | None = None,
                 now: dt.datetime | None = None) -> GcPlan:
    """List the bucket, then the live items (in that order, see the module docstring), and
    plan."""
    objects = list_objects(fs, root)
    live = live_prefixes(api_url, collection, token=token)
    return plan_gc(objects, live, root=root, now=now or dt.datetime.now(dt.UTC),
                   min_age=min_age, lock_ttls=_lock_ttls(fs, root, objects))


def remove_prefix(fs: Any, url: str) -> None:
    """Delete every object under the folder ``url`` (by path segment: ``a/b`` never takes
    ``a/b-c``)."""
    path = _path(url).rstrip("/")
    if url.startswith("s3://"):
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        return
    shutil.rmtree(path, ignore_errors=True)


def delete_orphans(fs: Any, plan: GcPlan, api_url: str, collection: str, *,
                   token: str | None = None, now: dt.datetime | None = None) -> GcPlan:
    """Delete the plan's orphans (stale locks first, then folders, each under its item's
    lock, checked again there); returns the plan with ``deleted`` and ``busy`` filled."""
    from cloudfree.publish import published_item

    deleted: list[str] = []
    busy: list[str] = []
    for orphan in plan.orphans:
        if orphan.kind == "lock" and delete_lock(orphan.url, fs, orphan.etag):
            deleted.append(orphan.url)
    for orphan in plan.orphans:
        if orphan.kind != "prefix":
            continue
        lock = TileLock(lock_url(plan.root, orphan.item_id), fs=fs, wait_s=0)
        try:
            lock.acquire()
        except TileLockError:  # a run is making this item now
            busy.append(orphan.url)
            continue
        try:
            item = published_item(api_url, collection, orphan.item_id, token=token)
            held = item_prefix(item) if item is not None else None
            newest = max((o.modified for o in list_objects(fs, orphan.url)), default=None)
            current = now or dt.datetime.now(dt.UTC)
            if (held is not None and prefixes_overlap(held, orphan.url)) or \
                    (newest is not None and current - newest < plan.min_age):
                busy.append(orphan.url)
                continue
            remove_prefix(fs, orphan.url)
            deleted.append(orphan.url)
        finally:
            lock.release()
    return GcPlan(root=plan.root, min_age=plan.min_age, orphans=plan.orphans, live=plan.live,
                  young=plan.young, other=plan.other, deleted=tuple(deleted), busy=tuple(busy))


__all__ = ("DEFAULT_MIN_AGE", "GcPlan", "Orphan", "StoredObject", "delete_orphans",
           "find_orphans", "list_objects", "live_prefixes", "parse_duration", "plan_gc",
           "remove_prefix")
