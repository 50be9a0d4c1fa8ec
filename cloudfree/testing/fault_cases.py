"""The fault-injection scenarios shared by ``tests/integration/test_faults.py`` and
``bench/faults.py``: one small tile of the demo catalog, run against the real local stack
with a :class:`~cloudfree.testing.faultproxy.FaultProxy` in front of the STAC API (reader
or writer) or of S3, or with a process killed at a bad moment.

Each case returns a :class:`CaseResult`. Its verdict compares the final state (the API
items of the case's own output collection and the S3 listing under its prefix, as sets
of keys, item ids and inputs hashes, and the bytes of every COG, never timestamps) with
a clean run's, or, for a case that must fail, checks that it failed clearly (a
:class:`~cloudfree.errors.CloudFreeError`) with nothing half-published (no API item whose
files are missing) and nothing lost (what was published before is still there, whole).
``problems`` lists every way a case fell short; a case passes when it is empty and its
faults fired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cloudfree.errors import CloudFreeError
from cloudfree.grid import AOI, DateWindow, Tile, grid_tiles, parse_bbox, parse_date_window
from cloudfree.settings import Settings
from cloudfree.storage import s3_filesystem
from cloudfree.testing.faultproxy import Fault, FaultProxy
from cloudfree.tile import MosaicParams, TileOutcome

#: The demo catalog the cases read (the same as the test suite's ``demo_scenes``).
DEMO = dict(n_tiles=2, n_dates=8, size_px=128, seed=1)
TILE_PX = 64
BANDS = ("red", "green", "blue")
#: Retries of the faulted runs: enough for the injected faults, short backoffs.
RETRIES = 4
BACKOFF_S = 0.2
#: GDAL's HTTP timeout in the stall case, s (the stall is longer).
STALL_TIMEOUT_S = 2
#: The tile locks' time to live, s: a killed run's lock is taken over after this long
#: (the default, a minute, would make the kill cases wait it out).
LOCK_TTL_S = 8.0


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """The stack, the demo scenes, and the one tile every case makes."""

    settings: Settings
    scenes: list[dict[str, Any]]
    tile: Tile
    window: DateWindow
    aoi: AOI
    params: MosaicParams
    clean: State | None = None
    cases_run: int = 0


def make_world(settings: Settings) -> World:
    """Load the demo catalog (a second load with the same parameters writes nothing),
    pick the first grid tile of its region, and set this process's STAC write retries."""
    from cloudfree import _stac_api
    from cloudfree.demo import build_demo_catalog, demo_region

    _call(build_demo_catalog, stac_api_url=_publish_url(settings),
          stac_token=_token(settings), storage_options=settings.storage_options(),
          bucket=settings.bucket, collection_id=settings.source_collection, **DEMO)
    scenes = _all_items(settings.stac_url, settings.source_collection)
    epsg, bbox, window = demo_region(scenes, tile_size_px=TILE_PX)
    aoi = parse_bbox(list(bbox))
    tile = next(iter(grid_tiles(aoi, resolution_m=10, tile_size_px=TILE_PX, epsg=epsg)))
    if hasattr(_stac_api, "configure"):
        _stac_api.configure(retries=RETRIES, backoff_s=BACKOFF_S, max_retry_after_s=10)
    return World(settings=settings, scenes=scenes, tile=tile, window=parse_date_window(window),
                 aoi=aoi, params=MosaicParams(bands=BANDS, chunksize=TILE_PX))


def _publish_url(settings: Settings) -> str:
    return str(getattr(settings, "stac_publish_url", settings.stac_url))


def _token(settings: Settings) -> str | None:
    get = getattr(settings, "stac_token", None)
    return get() if callable(get) else None


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments it takes (the tile and publish functions
    gain arguments as features land: the token, the read-failure policy)."""
    accepted = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return fn(*args, **kwargs)


def _all_items(api_url: str, collection: str) -> list[dict[str, Any]]:
    url: str | None = f"{api_url.rstrip('/')}/collections/{collection}/items?limit=1000"
    items: list[dict[str, Any]] = []
    while url:
        response = httpx.get(url, timeout=30)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        page = response.json()
        items.extend(page.get("features", []))
        url = next((ln["href"] for ln in page.get("links", []) if ln.get("rel") == "next"),
                   None)
    return items


def proxied(settings: Settings, *, stac: FaultProxy | None = None,
            writer: FaultProxy | None = None, s3: FaultProxy | None = None,
            **overrides: Any) -> Settings:
    """A copy of ``settings`` whose clients go through the given proxies."""
    update: dict[str, Any] = dict(overrides)
    if stac is not None:
        update["stac_api_url"] = stac.url
        update.setdefault("source_stac_api_url", stac.url)
    if writer is not None:
        update["stac_write_url"] = writer.url
    if s3 is not None:
        update["s3_endpoint_url"] = s3.url
    update.setdefault("http_retries", RETRIES)
    update.setdefault("http_backoff_s", BACKOFF_S)
    return settings.model_copy(update=update)


def tile_kwargs(settings: Settings, collection: str, *, force: bool = False,
                policy: str | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`cloudfree.tile.mosaic_tile` for ``settings``, with
    GDAL's block cache off for the bucket (so every read reaches the wire, and the
    proxy, even after an earlier run in this process read the same scene)."""
    gdal_env = {**settings.gdal_env(), "CPL_VSIL_CURL_NON_CACHED": f"/vsis3/{settings.bucket}"}
    return dict(
        api_url=_publish_url(settings), api_token=_token(settings),
        token=_token(settings), source_api_url=settings.stac_url,
        source_collection=settings.source_collection, output_collection=collection,
        output_root=f"s3://{settings.bucket}/{collection}",
        fs=s3_filesystem(settings.storage_options()), gdal_env=gdal_env, force=force,
        read_failure_policy=policy or settings.read_failure_policy, lock_ttl_s=LOCK_TTL_S,
    )


def run_tile(world: World, settings: Settings, collection: str, *,
             items: Sequence[Mapping[str, Any]] | None = None, force: bool = False,
             policy: str | None = None) -> TileOutcome:
    """Make the world's tile into ``collection`` (created first, directly)."""
    from cloudfree.tile import mosaic_tile

    outcome: TileOutcome = _call(
        mosaic_tile, list(items if items is not None else world.scenes), world.tile,
        world.window, world.params, **tile_kwargs(settings, collection, force=force,
                                                  policy=policy))
    return outcome


def ensure_output(world: World, collection: str) -> None:
    from cloudfree.publish import ensure_collection

    settings = world.settings
    _call(ensure_collection, _publish_url(settings), collection, bands=world.params.bands,
          token=_token(settings), api_token=_token(settings))


# --------------------------------------------------------------------------- final state


@dataclass(frozen=True)
class State:
    """What a collection holds: item ids with their inputs hashes (and dropped scenes, if
    any); each item's files as
    ``item_id/name`` with the sha256 of its bytes (``"json"`` for the static JSON, whose
    timestamps differ run to run; ``_root/name`` for what lies at the prefix's root, the
    static collection); the assets whose file is missing; the keys under the prefix that
    belong to no item (orphans; locks are left out)."""

    items: dict[str, str]
    files: dict[str, str]
    missing: tuple[str, ...]
    orphans: tuple[str, ...]
    raw: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)


def snapshot(settings: Settings, collection: str) -> State:
    fs = s3_filesystem(settings.storage_options())
    prefix = f"{settings.bucket}/{collection}"
    found = fs.find(prefix, detail=True) if fs.exists(prefix) else {}
    # files only: the store may list an emptied folder (a removed lock's) as an entry
    keys = {k for k, info in found.items()
            if info.get("type") == "file" and k.rstrip("/") != prefix and not k.endswith("/")}
    items = {it["id"]: it for it in _all_items(settings.stac_url, collection)}
    owned: dict[str, str] = {}  # directory -> item id
    missing = []
    for iid, item in items.items():
        for name, asset in item.get("assets", {}).items():
            key = str(asset["href"]).removeprefix("s3://")
            if key not in keys:
                missing.append(f"{iid}/{name}")
            owned[key.rsplit("/", 1)[0]] = iid
    files: dict[str, str] = {}
    orphans = []
    for key in sorted(keys):
        directory, name = key.rsplit("/", 1)
        iid = owned.get(directory)
        if directory == f"{prefix}/_locks":
            continue  # a lock: not part of a product (gc judges a stale one)
        if directory == prefix:  # the static catalog's collection.json, beside the tiles
            iid = "_root"
        if iid is None:
            orphans.append(key)
        elif name.endswith(".json"):
            files[f"{iid}/{name}"] = "json"
        else:
            files[f"{iid}/{name}"] = hashlib.sha256(fs.cat(key)).hexdigest()
    hashes = {iid: _identity(it) for iid, it in items.items()}
    return State(hashes, files, tuple(sorted(missing)), tuple(orphans), items)


def _identity(item: Mapping[str, Any]) -> str:
    """An item's inputs hash, and the scenes it had to drop (a dropped scene makes another
    product, even where its pixels happen to be the same)."""
    props = item["properties"]
    dropped = sorted(f"{d.get('id')}/{d.get('asset')}"
                     for d in props.get("cloudfree:dropped_sources") or [])
    return f"{props.get('cloudfree:inputs_hash')}" + (f" dropped {dropped}" if dropped else "")


def compare(final: State, expected: State) -> tuple[list[str], int, int]:
    """Problems of ``final`` against ``expected``; and the items and files of
    ``expected`` that ``final`` lost."""
    problems = []
    lost_items = [i for i, h in expected.items.items() if final.items.get(i) != h]
    lost_files = [f for f, h in expected.files.items() if final.files.get(f) != h]
    extra_items = sorted(set(final.items) - set(expected.items))
    extra_files = sorted(set(final.files) - set(expected.files))
    if lost_items:
        problems.append(f"items lost or changed: {lost_items}")
    if lost_files:
        problems.append(f"files lost or changed: {lost_files}")
    if extra_items:
        problems.append(f"items that a clean run does not make: {extra_items}")
    if extra_files:
        problems.append(f"files that a clean run does not make: {extra_files}")
    if final.missing:
        problems.append(f"half-published (items whose files are missing): {list(final.missing)}")
    return problems, len(lost_items), len(lost_files)


def orphan_problems(settings: Settings, collection: str, state: State) -> list[str]:
    """Orphans left under the prefix must be listed by ``cloudfree gc`` (its dry run)."""
    if not state.orphans:
        return []
    listed = gc_listed(settings, collection)
    if listed is None:
        return [f"orphans left and no cloudfree gc to list them: {list(state.orphans)}"]
    unlisted = [k for k in state.orphans if not any(k.startswith(p.removeprefix("s3://"))
                                                    for p in listed)]
    return [f"orphans that cloudfree gc does not list: {unlisted}"] if unlisted else []


def gc_listed(settings: Settings, collection: str) -> list[str] | None:
    """The orphaned folders ``cloudfree gc`` lists for ``collection`` (its dry run, with
    no minimum age), or None when gc is not there."""
    try:
        from cloudfree.gc import find_orphans
    except ImportError:
        return None
    plan = _call(find_orphans, s3_filesystem(settings.storage_options()),
                 f"s3://{settings.bucket}/{collection}", settings.stac_url, collection,
                 min_age=dt.timedelta(0), token=_token(settings))
    return [str(o.url) for o in plan.orphans]


# --------------------------------------------------------------------------- results


@dataclass
class CaseResult:
    case: str
    fault: str
    injections: int = 0
    outcome: str = ""
    items_lost: int = 0
    files_lost: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The faulted run's TileOutcome.status, where the case has one.
    tile_status: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.injections > 0


def clean_state(world: World) -> State:
    """The clean run's state (made once, into its own collection)."""
    if world.clean is None:
        collection = "faults-clean"
        ensure_output(world, collection)
        run_tile(world, world.settings, collection)
        world.clean = snapshot(world.settings, collection)
        if not world.clean.items or world.clean.missing or world.clean.orphans:
            raise AssertionError(f"the clean run is not clean: {world.clean}")
    return world.clean


def _collection(world: World, case: str) -> str:
    world.cases_run += 1
    name = f"faults-{case}-{os.getpid()}-{world.cases_run}"
    ensure_output(world, name)
    return name


def _expect_clean(world: World, result: CaseResult, collection: str,
                  error: BaseException | None) -> CaseResult:
    if error is not None:
        result.problems.append(f"the run failed: {type(error).__name__}: {error}")
        result.outcome = f"failed: {type(error).__name__}"
    final = snapshot(world.settings, collection)
    problems, result.items_lost, result.files_lost = compare(final, clean_state(world))
    result.problems += problems
    result.problems += orphan_problems(world.settings, collection, final)
    if not result.outcome:
        result.outcome = "same as clean" if not result.problems else "differs from clean"
    if final.orphans and not result.problems:
        result.outcome += f" + {len(final.orphans)} orphan files, listed by cloudfree gc"
    return result


def _expect_clear_failure(world: World, result: CaseResult, collection: str,
                          before: State, error: BaseException | None) -> CaseResult:
    if error is None:
        result.problems.append("the run did not fail")
        result.outcome = "did not fail"
    elif not isinstance(error, CloudFreeError):
        result.problems.append(f"not a clear error: {type(error).__name__}: {error}")
        result.outcome = f"unclear failure: {type(error).__name__}"
    else:
        result.outcome = f"failed clearly: {type(error).__name__}"
    final = snapshot(world.settings, collection)
    lost_items = [i for i, h in before.items.items() if final.items.get(i) != h]
    lost_files = [f for f, h in before.files.items() if final.files.get(f) != h]
    result.items_lost, result.files_lost = len(lost_items), len(lost_files)
    if lost_items or lost_files:
        result.problems.append(f"lost: items {lost_items}, files {lost_files}")
    if set(final.items) - set(before.items):
        result.problems.append(f"published despite the failure: "
                               f"{sorted(set(final.items) - set(before.items))}")
    if final.missing:
        result.problems.append(f"half-published: {list(final.missing)}")
    result.problems += orphan_problems(world.settings, collection, final)
    return result


def _attempt(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:  # the verdict looks at what was raised
        return None, exc


def _injections(*proxies: FaultProxy) -> int:
    return sum(sum(p.counts.values()) for p in proxies)


# --------------------------------------------------------------------------- cases


def case_search_503(world: World) -> CaseResult:
    """The STAC API answers 503 to every second request of the search (landing page,
    collection and pages) three times: the search retries, and the tile made from its
    scenes equals a clean run's."""
    from cloudfree.search import search_scenes

    result = CaseResult("search-503", "STAC search: 503 on every 2nd request (x3)")
    collection = _collection(world, "search-503")
    with FaultProxy(world.settings.stac_url) as stac:
        stac.add(Fault(kind="status", status=503, every=2, times=3))
        found, error = _attempt(lambda: search_scenes(
            stac.url, collection=world.settings.source_collection, aoi=world.aoi,
            window=world.window, retries=RETRIES, backoff_s=BACKOFF_S))
        result.injections = _injections(stac)
    if error is None:
        _, error = _attempt(lambda: run_tile(world, world.settings, collection, items=found))
    return _expect_clean(world, result, collection, error)


def case_search_429(world: World) -> CaseResult:
    """429 with ``Retry-After: 1`` on the search POST, twice: the search waits as told
    (at least 2 s in all) and returns every scene."""
    from cloudfree.search import search_scenes

    result = CaseResult("search-429", "STAC search: 429 Retry-After 1 s (x2)")
    collection = _collection(world, "search-429")
    with FaultProxy(world.settings.stac_url) as stac:
        stac.add(Fault(kind="status", status=429, retry_after=1, match=r"^POST /search",
                       times=2))
        start = time.monotonic()
        found, error = _attempt(lambda: search_scenes(
            stac.url, collection=world.settings.source_collection, aoi=world.aoi,
            window=world.window, retries=RETRIES, backoff_s=0.01))
        waited = time.monotonic() - start
        result.injections = _injections(stac)
    if error is None and waited < 2.0:
        result.problems.append(f"Retry-After not honoured: the search took {waited:.2f} s")
    if error is None:
        _, error = _attempt(lambda: run_tile(world, world.settings, collection, items=found))
    return _expect_clean(world, result, collection, error)


def _publish_case(world: World, name: str, fault: Fault, label: str) -> CaseResult:
    result = CaseResult(name, label)
    collection = _collection(world, name)
    with FaultProxy(_publish_url(world.settings)) as writer:
        writer.add(fault)
        _, error = _attempt(lambda: run_tile(world, proxied(world.settings, writer=writer),
                                             collection))
        result.injections = _injections(writer)
    return _expect_clean(world, result, collection, error)


def case_publish_503(world: World) -> CaseResult:
    """The writer API answers 503 to the item POST twice: the publish retries (the COGs
    are not re-uploaded), and the state equals a clean run's."""
    return _publish_case(world, "publish-503", Fault(
        kind="status", status=503, match=r"^(POST|PUT) /collections/[^/]+/items", times=2),
        "STAC publish: 503 on the item write (x2)")


def case_publish_429(world: World) -> CaseResult:
    """429 with ``Retry-After: 1`` on the item POST: honoured, then published."""
    return _publish_case(world, "publish-429", Fault(
        kind="status", status=429, retry_after=1,
        match=r"^(POST|PUT) /collections/[^/]+/items", times=1),
        "STAC publish: 429 Retry-After 1 s")


def case_publish_reset(world: World) -> CaseResult:
    """The connection of the item POST is reset before the API sees it: retried."""
    return _publish_case(world, "publish-reset", Fault(
        kind="reset", match=r"^(POST|PUT) /collections/[^/]+/items", times=1),
        "STAC publish: connection reset")


def _upload_case(world: World, name: str, fault: Fault, label: str) -> CaseResult:
    result = CaseResult(name, label)
    collection = _collection(world, name)
    with FaultProxy(world.settings.s3_url) as s3:
        fault.match = _upload_pattern(world, collection)
        s3.add(fault)
        _, error = _attempt(lambda: run_tile(world, proxied(world.settings, s3=s3), collection))
        result.injections = _injections(s3)
    return _expect_clean(world, result, collection, error)


def _upload_pattern(world: World, collection: str, *, locks: bool = False) -> str:
    """The PUTs of the tile's files (``locks``: of its lock objects instead)."""
    base = rf"^PUT /{world.settings.bucket}/{collection}/"
    return base + (r"_locks/" if locks else r"(?!_locks/)")


def case_upload_503(world: World) -> CaseResult:
    """S3 answers 503 to every second COG upload, three times: botocore retries."""
    return _upload_case(world, "upload-503", Fault(kind="status", status=503, every=2,
                                                   times=3),
                        "S3 upload: 503 on every 2nd PUT (x3)")


def case_upload_reset(world: World) -> CaseResult:
    """The connection of every third upload is reset (RST), twice: retried."""
    return _upload_case(world, "upload-reset", Fault(kind="reset", every=3, times=2),
                        "S3 upload: connection reset on every 3rd PUT (x2)")


def _source_key(world: World, asset: str = "red", index: int = 0) -> tuple[str, str]:
    """The S3 key (``bucket/key``) of one source scene's asset, and the scene id."""
    from cloudfree.tile import halo_px, items_for_tile

    sources = items_for_tile(world.scenes, world.tile, halo=halo_px(world.params))
    scene = sorted(sources, key=lambda it: it["id"])[index]
    return str(scene["assets"][asset]["href"]).removeprefix("s3://"), str(scene["id"])


def case_source_stall(world: World) -> CaseResult:
    """The first read of a source COG stalls past GDAL's HTTP timeout (2 s here): GDAL
    gives up on it and retries, and the tile equals a clean run's."""
    result = CaseResult("source-stall", f"source read: stall > GDAL timeout {STALL_TIMEOUT_S} s")
    collection = _collection(world, "source-stall")
    key, _ = _source_key(world)
    stall_s = 60.0
    with FaultProxy(world.settings.s3_url) as s3:
        stall = s3.add(Fault(kind="stall", stall_s=stall_s, match=rf"^GET /{key}", times=1))
        settings = proxied(world.settings, s3=s3, gdal_http_timeout_s=STALL_TIMEOUT_S)
        start = time.monotonic()
        outcome, error = _attempt(lambda: run_tile(world, settings, collection))
        seconds = time.monotonic() - start
        result.injections = _injections(s3)
        stalled = [e for e in s3.requests if e.fault == stall.name]
        retried = [e for e in s3.requests if e.fault is None and e.path.startswith(f"/{key}")]
    if error is None and seconds >= stall_s:
        result.problems.append(f"the stall was waited out ({seconds:.1f} s), not timed out")
    if stalled and stalled[0].status is not None:
        result.problems.append("GDAL did not give up on the stalled read (it was answered)")
    if not retried:
        result.problems.append("the stalled read was never retried")
    result.tile_status = getattr(outcome, "status", None)
    if outcome is not None and result.tile_status != "published":
        result.problems.append(f"the tile says {result.tile_status!r}, not 'published'")
    return _expect_clean(world, result, collection, error)


def case_source_truncated(world: World, policy: str = "drop") -> CaseResult:
    """Every read of one source scene's red COG is cut short (full Content-Length, half
    the body). With policy ``drop`` the tile is published without the scene, which the
    item names in ``cloudfree:dropped_sources``; with ``fail`` the tile fails clearly
    (a SourceReadError naming the scene) and nothing is published."""
    name = f"source-truncated-{policy}"
    result = CaseResult(name, f"source read: truncated body (policy {policy})")
    collection = _collection(world, name)
    key, scene_id = _source_key(world)
    before = snapshot(world.settings, collection)
    with FaultProxy(world.settings.s3_url) as s3:
        s3.add(Fault(kind="truncate", match=rf"^GET /{key}"))
        outcome, error = _attempt(lambda: run_tile(world, proxied(world.settings, s3=s3),
                                                   collection, policy=policy))
        result.injections = _injections(s3)
    if policy == "fail":
        result = _expect_clear_failure(world, result, collection, before, error)
        if error is not None and scene_id not in str(error):
            result.problems.append(f"the error does not name the scene {scene_id}: {error}")
        return result
    if error is not None:
        result.problems.append(f"the run failed: {type(error).__name__}: {error}")
        result.outcome = f"failed: {type(error).__name__}"
    final = snapshot(world.settings, collection)
    if final.missing:
        result.problems.append(f"half-published: {list(final.missing)}")
    if len(final.items) != 1:
        result.problems.append(f"expected one item, found {sorted(final.items)}")
    for item in final.raw.values():
        dropped = item["properties"].get("cloudfree:dropped_sources") or []
        if not any(d.get("id") == scene_id for d in dropped):
            result.problems.append(f"item {item['id']} does not record the dropped scene "
                                   f"{scene_id}: cloudfree:dropped_sources={dropped}")
    result.tile_status = getattr(outcome, "status", None)
    tile_dropped = getattr(outcome, "dropped", None) if outcome is not None else None
    if outcome is not None and not any(d.get("id") == scene_id for d in tile_dropped or []):
        result.problems.append(f"the tile outcome does not list the dropped scene: "
                               f"{tile_dropped}")
    result.problems += orphan_problems(world.settings, collection, final)
    if not result.outcome:
        result.outcome = "scene dropped and recorded" if not result.problems else "wrong"
    return result


def case_source_truncated_fail(world: World) -> CaseResult:
    return case_source_truncated(world, "fail")


def _persistent_case(world: World, name: str, label: str, *, target: str,
                     pattern: Callable[[str], str]) -> CaseResult:
    """A forced re-run of a published tile while ``target`` (``"writer"`` or ``"s3"``)
    answers 503 to every request matching ``pattern(collection)``: it must fail clearly,
    the published item and its files untouched."""
    result = CaseResult(name, label)
    collection = _collection(world, name)
    run_tile(world, world.settings, collection)
    before = snapshot(world.settings, collection)
    upstream = _publish_url(world.settings) if target == "writer" else world.settings.s3_url
    with FaultProxy(upstream) as proxy:
        proxy.add(Fault(kind="status", status=503, match=pattern(collection)))
        settings = proxied(world.settings, http_retries=1,
                           **({"writer": proxy} if target == "writer" else {"s3": proxy}))
        _, error = _attempt(lambda: run_tile(world, settings, collection, force=True))
        result.injections = _injections(proxy)
    return _expect_clear_failure(world, result, collection, before, error)


def case_publish_503_persistent(world: World) -> CaseResult:
    """The item write always gets 503: the publish fails clearly after its retries."""
    return _persistent_case(world, "publish-503-persistent",
                            "STAC publish: 503 always (forced re-run)", target="writer",
                            pattern=lambda _: r"^(POST|PUT) /collections/[^/]+/items")


def case_upload_503_persistent(world: World) -> CaseResult:
    """The COG uploads always get 503: the run fails clearly (StorageUnreachableError)."""
    return _persistent_case(world, "upload-503-persistent",
                            "S3 upload: 503 always (forced re-run)", target="s3",
                            pattern=lambda c: _upload_pattern(world, c))


def case_lock_503_persistent(world: World) -> CaseResult:
    """The tile lock cannot be written (503 to every PUT under ``_locks/``): the run fails
    clearly before any upload."""
    return _persistent_case(world, "lock-503-persistent",
                            "S3 lock write: 503 always (forced re-run)", target="s3",
                            pattern=lambda c: _upload_pattern(world, c, locks=True))


def case_worker_killed(world: World) -> CaseResult:
    """A Dask worker process (of 2) is killed (SIGKILL) while it runs the tile, held on a
    stalled source read: distributed reschedules the task on a fresh worker, and the
    state equals a clean run's."""
    from distributed import Client, LocalCluster

    from cloudfree.tile import mosaic_tile

    result = CaseResult("worker-killed", "Dask worker SIGKILLed mid-tile")
    collection = _collection(world, "worker-killed")
    key, _ = _source_key(world)
    with FaultProxy(world.settings.s3_url) as s3, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                         dashboard_address=None, worker_dashboard_address=None) as cluster, \
            Client(cluster) as client:  # type: ignore[no-untyped-call]
        stall = s3.add(Fault(kind="stall", stall_s=120, match=rf"^GET /{key}", times=1))
        client.run(_warm)  # so the surviving worker takes over the tile at once
        settings = proxied(world.settings, s3=s3)
        kwargs = tile_kwargs(settings, collection)
        accepted = inspect.signature(mosaic_tile).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        future = client.submit(mosaic_tile, list(world.scenes), world.tile, world.window,
                               world.params, pure=False, **kwargs)
        error: BaseException | None = None
        if not s3.wait_injected(stall, timeout_s=120):
            error = TimeoutError("the tile never reached the stalled read")
        else:
            pids = client.run(os.getpid)
            busy = [addr for addr, keys in client.processing().items() if future.key in keys]
            if not busy:
                error = RuntimeError("no worker is processing the tile")
            else:
                os.kill(pids[busy[0]], signal.SIGKILL)
                _, error = _attempt(lambda: future.result(timeout=180))
        result.injections = _injections(s3)
    return _expect_clean(world, result, collection, error)


def _warm() -> None:
    """Import what a tile needs (on a Dask worker)."""
    import cloudfree.cube
    import cloudfree.tile  # noqa: F401


def _tile_subprocess(world: World, settings: Settings, collection: str) -> subprocess.Popen[bytes]:
    """Run the tile in a child Python (so it can be SIGKILLed), from a pickle of its
    inputs."""
    state = tempfile.NamedTemporaryFile(prefix="cloudfree-fault-", suffix=".pkl", delete=False)
    with state:
        pickle.dump({"settings": settings, "scenes": world.scenes, "tile": world.tile,
                     "window": world.window, "aoi": world.aoi, "params": world.params,
                     "collection": collection}, state)
    code = ("import sys; from cloudfree.testing.fault_cases import _child_main; "
            "_child_main(sys.argv[1])")
    return subprocess.Popen([sys.executable, "-c", code, state.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _child_main(path: str) -> None:
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    Path(path).unlink(missing_ok=True)
    world = World(settings=data["settings"], scenes=data["scenes"], tile=data["tile"],
                  window=data["window"], aoi=data["aoi"], params=data["params"])
    run_tile(world, world.settings, data["collection"])


def case_killed_before_publish(world: World) -> CaseResult:
    """The process is SIGKILLed after its COG uploads, while its item POST is held at the
    writer API (a stall): nothing is published (no item without files); a re-run then
    completes, and the state equals a clean run's (orphans, if any remain by design, are
    listed by ``cloudfree gc``)."""
    result = CaseResult("killed-before-publish", "process SIGKILLed between upload and publish")
    collection = _collection(world, "killed")
    error: BaseException | None = None
    with FaultProxy(_publish_url(world.settings)) as writer:
        stall = writer.add(Fault(kind="stall", stall_s=300,
                                 match=r"^(POST|PUT) /collections/[^/]+/items"))
        child = _tile_subprocess(world, proxied(world.settings, writer=writer), collection)
        try:
            if not writer.wait(lambda p: p.injected(stall) >= 1 or child.poll() is not None,
                               timeout_s=240) or child.poll() is not None:
                stderr = child.stderr.read().decode()[-2000:] if child.stderr else ""
                error = RuntimeError(f"the child never reached the publish: {stderr}")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            if child.stderr:
                child.stderr.close()
        result.injections = _injections(writer)
    mid = snapshot(world.settings, collection)
    if mid.items:
        result.problems.append(f"published although killed before the publish: {sorted(mid.items)}")
    if mid.missing:
        result.problems.append(f"half-published after the kill: {list(mid.missing)}")
    if error is None:
        _, error = _attempt(lambda: run_tile(world, world.settings, collection))
    return _expect_clean(world, result, collection, error)


def case_concurrent_runs(world: World) -> CaseResult:
    """Two forced runs of one published tile at once (two threads): each publishes, skips
    or fails clearly (a lock held by the other); the collection ends with one consistent
    item, equal to a clean run's, and the replaced files gone or listed by gc."""
    result = CaseResult("concurrent-runs", "two forced runs of one tile at once")
    collection = _collection(world, "concurrent")
    run_tile(world, world.settings, collection)
    outcomes: list[tuple[Any, BaseException | None]] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        outcomes.append(_attempt(lambda: run_tile(world, world.settings, collection,
                                                  force=True)))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    result.injections = 2  # two runs at once are the fault
    unclear = [e for _, e in outcomes if e is not None and not isinstance(e, CloudFreeError)]
    if unclear:
        result.problems.append(f"unclear failures: {[repr(e) for e in unclear]}")
    if all(e is not None for _, e in outcomes):
        result.problems.append(f"both runs failed: {[str(e) for _, e in outcomes]}")
    result = _expect_clean(world, result, collection, None)
    result.outcome = ", ".join(
        ("error " + type(e).__name__) if e is not None else str(getattr(o, "status", o))
        for o, e in outcomes) + ("; one consistent item" if not result.problems else "")
    return result


#: Every case, in the order the bench prints them.
CASES: dict[str, Callable[[World], CaseResult]] = {
    "search-503": case_search_503,
    "search-429": case_search_429,
    "publish-503": case_publish_503,
    "publish-429": case_publish_429,
    "publish-reset": case_publish_reset,
    "publish-503-persistent": case_publish_503_persistent,
    "upload-503": case_upload_503,
    "upload-reset": case_upload_reset,
    "upload-503-persistent": case_upload_503_persistent,
    "lock-503-persistent": case_lock_503_persistent,
    "source-stall": case_source_stall,
    "source-truncated-drop": case_source_truncated,
    "source-truncated-fail": case_source_truncated_fail,
    "worker-killed": case_worker_killed,
    "killed-before-publish": case_killed_before_publish,
    "concurrent-runs": case_concurrent_runs,
}


def run_case(world: World, name: str) -> CaseResult:
    start = time.monotonic()
    result = CASES[name](world)
    result.seconds = time.monotonic() - start
    return result
