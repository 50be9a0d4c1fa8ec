"""Prefect tasks shared by the mosaic flows: thin wrappers over the library.

Bounded work: :func:`run_tiles` keeps at most ``max_tiles_in_flight`` tile tasks in flight.
Each :func:`tile_task` submits ONE Dask task (:func:`mosaic_on_worker`) that plans,
computes (with a local threaded scheduler, inside the task), encodes the COGs and
publishes the tile on a worker; only the small :class:`~cloudfree.tile.TileOutcome` comes
back to the flow process, never an array. A failed tile is caught, recorded as a failed
outcome and the others go on; the run ends Failed, after every tile, with a per-tile table
artifact (``mosaic-tiles``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Annotated, Any, TypedDict

from distributed import Client, get_client
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.futures import PrefectFuture, as_completed
from pydantic import Field

from cloudfree import catalogs, progress
from cloudfree.cluster import KubeClusterConfig, make_cluster
from cloudfree.detection import AUTO_ORDER, list_detectors
from cloudfree.errors import CloudFreeError, TilesFailedError, TileTimeoutError
from cloudfree.event import Event, check_sides
from cloudfree.grid import AOI, DateWindow, Tile
from cloudfree.methods import get_method, list_methods
from cloudfree.plan import Budgets, Plan, area_tiles, build_plan, check_budgets
from cloudfree.publish import ensure_collection
from cloudfree.search import search_options, search_scenes
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.settings import Settings
from cloudfree.storage import check_bucket, s3_filesystem
from cloudfree.tile import (
    MosaicParams,
    TileOutcome,
    halo_px,
    items_for_tile,
    mosaic_tile,
    plan_tile,
)

#: A flow's ``method`` parameter: the registry's mosaic methods, as an enum in the flow's
#: parameter schema, so Prefect refuses any other name before a run starts.
MosaicMethod = Annotated[str, Field(
    description="how gaps are filled: " + ", ".join(list_methods("mosaic")),
    json_schema_extra={"enum": list(list_methods("mosaic"))})]


#: A flow's ``mask`` parameter: the registry's cloud detectors and ``auto``, as an enum.
MaskName = Annotated[str, Field(
    description="the cloud and shadow detector: " + ", ".join(
        (*list_detectors("mosaic"), "auto")) + " (auto: per tile, the first of "
    + ", ".join(AUTO_ORDER) + " that can run)",
    json_schema_extra={"enum": [*list_detectors("mosaic"), "auto"]})]


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network hiccups, never bad input, never a timeout (a tile that ran out of time
    would only run out of time again)."""
    try:
        state.result()
    except CloudFreeError as exc:
        return isinstance(exc, ConnectionError)
    except TimeoutError:
        return False
    except Exception:
        return True
    return False


class RetryOptions(TypedDict):
    """The ``@task`` options of every mosaic task."""

    retries: int
    retry_delay_seconds: list[float]
    retry_condition_fn: Callable[[Any, Any, Any], bool]
    cache_policy: CachePolicy


RETRY = RetryOptions(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient,
                     cache_policy=NO_CACHE)


def local_workers(settings: Settings, cores: int | None = None, *,
                  tiles: int | None = None) -> tuple[int, int]:
    """The LocalCluster's worker processes and each tile's threads: one tile per worker at
    a time (one Dask thread each), as many workers as tiles in flight (at most the cores,
    at most 4, at most ``tiles`` when the run's tile count is known: a one-tile AOI run
    gets one worker with every core), and the cores shared out among them, so that
    workers x threads <= cores."""
    cores = max(1, cores or os.cpu_count() or 1)
    workers = max(1, min(settings.max_tiles_in_flight, cores, 4, tiles or cores))
    return workers, max(1, cores // workers)


@contextlib.contextmanager
def dask_client(settings: Settings, *, tiles: int | None = None) -> Iterator[Client]:
    """A Dask client on a fresh cluster of the configured kind (local, or a
    dask-kubernetes operator cluster in production); its start/stop chatter kept out of
    the flow's log. A local cluster is sized by :func:`local_workers` (for ``tiles``)."""
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.dask_cluster == "kubernetes":
        cluster = make_cluster("kubernetes", kube=KubeClusterConfig.from_env(os.environ))
    else:
        cluster = make_cluster("local", n_workers=local_workers(settings, tiles=tiles)[0],
                               threads_per_worker=1)
    # distributed's Client.__init__ is unannotated
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client


def source_url(settings: Settings) -> str:
    """The STAC API searched for source scenes (``CLOUDFREE_SOURCE_STAC_API_URL``, default
    the one mosaics are published to)."""
    return settings.source_stac_api_url or settings.stac_url


def preflight(settings: Settings, *, bands: tuple[str, ...]) -> None:
    """Check storage and the output collection before any work, so bad set-up fails
    fast and nothing is written; and set this process's STAC API retries from the
    settings. The collection is written through the writer API with its token."""
    from cloudfree import _stac_api

    _stac_api.configure(retries=settings.http_retries, backoff_s=settings.http_backoff_s,
                        max_retry_after_s=settings.max_retry_after_s)
    check_bucket(s3_filesystem(settings.storage_options()), settings.bucket)
    ensure_collection(settings.stac_publish_url, settings.output_collection, bands=bands,
                      token=settings.stac_token())


@task(**RETRY)
def search_task(settings: Settings, *, collection: str, aoi: AOI, window: DateWindow,
                max_cloud_pct: float | None, bands: Sequence[str] = DEFAULT_BANDS,
                source: str | None = None, assume: str | None = None,
                signer: str | None = None) -> list[dict[str, Any]]:
    """The scenes, decoded and re-keyed to cloudfree's band names + ``scl``, hrefs signed
    (:func:`cloudfree.catalogs.prepare_items`): what the tiles read."""
    items = search_scenes(source_url(settings), collection=collection, aoi=aoi, window=window,
                          max_cloud_pct=max_cloud_pct, **search_options(settings))
    return catalogs.prepare_items(items, bands, source=source, api_url=source_url(settings),
                                  assume=assume, signer=signer)


def plan_run(settings: Settings, items: Sequence[Mapping[str, Any]], *, params: MosaicParams,
             aoi: AOI, window: DateWindow, tile_size_px: int | None, epsg: int | None,
             source: str | None, assume: str | None) -> Plan:
    """The run's plan (the same as ``cloudfree plan``'s), its summary logged; refuses the
    run (:class:`~cloudfree.errors.BudgetExceededError`) when it exceeds a budget of the
    settings, before any tile starts."""
    budgets = Budgets.from_settings(settings)
    plan = build_plan(items, params=params, aoi=aoi, window=window, tile_size_px=tile_size_px,
                      epsg=epsg, source=source, assume=assume, api_url=source_url(settings),
                      origin="search", budgets=budgets)
    get_run_logger().info(plan.summary())
    check_budgets(plan, budgets)
    return plan


def mosaic_area(settings: Settings, *, aoi: AOI, window: DateWindow, params: MosaicParams,
                tile_size_px: int | None, epsg: int | None, collection: str | None,
                max_cloud_pct: float | None, force: bool, source: str | None,
                assume: str | None, signer: str | None,
                event: Event | None = None) -> dict[str, Any]:
    """A flow's work, in the order that writes nothing before every check passed: the
    grid, budgeted (:func:`cloudfree.plan.area_tiles`, before the search); the search;
    the plan, budgeted (:func:`plan_run`); the pre-flight (the first write: the output
    collection); then the tiles (:func:`run_tiles`). ``tile_size_px`` None: one tile over
    the AOI, or grid tiles when it is larger than ``max_pixels_per_tile``.

    ``event``: event mode, a pre/post pair per tile (:mod:`cloudfree.event_tile`); a
    search that leaves a side without scenes is refused after the search
    (:func:`cloudfree.event.check_sides`). The result then also has ``event``: its date,
    name, window and each tile's ``pairs`` (post and pre item ids)."""
    tiles, size = area_tiles(aoi, resolution_m=params.resolution_m, tile_size_px=tile_size_px,
                             epsg=epsg, budgets=Budgets.from_settings(settings))
    collection = collection or settings.source_collection
    items = search_task(settings, collection=collection, aoi=aoi, window=window,
                        max_cloud_pct=max_cloud_pct, bands=params.bands, source=source,
                        assume=assume, signer=signer)
    if event is not None:
        check_sides(items, event, window, where=f"over {list(aoi.bbox)}")
    plan = plan_run(settings, items, params=params, aoi=aoi, window=window, tile_size_px=size,
                    epsg=epsg, source=source, assume=assume)
    preflight(settings, bands=params.bands)
    planned = {t.tile.tile_id for t in plan.tiles}  # the tiles that have scenes
    tiles = [t for t in tiles if t.tile_id in planned]
    with dask_client(settings, tiles=len(tiles)):
        outcomes = run_tiles(settings, items, tiles, window, params, collection=collection,
                             force=force, event=event)
    result: dict[str, Any] = {"tiles": [vars(o) for o in outcomes]}
    if event is not None:
        result["event"] = {**event.as_property(), "window": f"{window.start}/{window.end}",
                           "pairs": event_pairs(outcomes, event)}
    return result


def event_pairs(outcomes: Sequence[TileOutcome], event: Event) -> list[dict[str, str]]:
    """Each tile's pair, ``{"tile", "post", "pre"}`` (the item ids, by the role and event
    date in them, :func:`cloudfree.event_tile.plan_side`; a failed tile's only as far as
    it is known)."""
    pairs: dict[str, dict[str, str]] = {}
    for outcome in outcomes:
        pair = pairs.setdefault(outcome.tile_id, {"tile": outcome.tile_id})
        for role in ("post", "pre"):
            if f"-{role}{event.compact}-" in outcome.item_id:
                pair[role] = outcome.item_id
    return list(pairs.values())


class WorkerEnv:
    """What a tile task needs on a Dask worker to reach storage: the s3fs options (the
    filesystem is built on the worker, :func:`cloudfree.storage.s3_filesystem`), GDAL's
    options and the STAC API token. Pickles by its fields; its repr shows none of them, so
    a failed task's log line (distributed logs a failed task's arguments) holds no secret."""

    def __init__(self, storage_options: dict[str, Any], gdal_env: dict[str, Any],
                 api_token: str | None = None, http: dict[str, Any] | None = None) -> None:
        self.storage_options = storage_options
        self.gdal_env = gdal_env
        self.api_token = api_token
        #: The STAC API retry policy (:func:`cloudfree._stac_api.configure`'s arguments).
        self.http = dict(http or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerEnv:
        return cls(settings.storage_options(), settings.gdal_env(), settings.stac_token(),
                   {"retries": settings.http_retries, "backoff_s": settings.http_backoff_s,
                    "max_retry_after_s": settings.max_retry_after_s})

    def __repr__(self) -> str:
        return "WorkerEnv(***)"


def _crossing(exc: Exception, tile_id: str) -> Exception:
    """``exc``, if it survives pickling back to the flow process; else a plain error with
    its message, of a kind that keeps the retry decision (:func:`_transient`)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        text = f"tile {tile_id}: {type(exc).__name__}: {exc}"
        if isinstance(exc, CloudFreeError) and not isinstance(exc, ConnectionError):
            return CloudFreeError(text)
        return RuntimeError(text)


def _on_worker(env: WorkerEnv, threads: int | None) -> None:
    """A tile task's set-up on its worker (:func:`mosaic_on_worker`): the threaded
    scheduler and the STAC API retries."""
    import dask
    from dask.system import CPU_COUNT
    from distributed import get_worker

    if threads is None:
        try:
            threads = max(1, CPU_COUNT // max(1, get_worker().state.nthreads))
        except ValueError:  # not on a worker (tests call it directly)
            threads = CPU_COUNT
    dask.config.set(scheduler="threads", num_workers=threads)
    if env.http:  # the publish's retries, as the flow process's (preflight)
        from cloudfree import _stac_api

        _stac_api.configure(**env.http)


def mosaic_on_worker(items: list[dict[str, Any]], tile: Tile, window: DateWindow,
                     params: MosaicParams, *, env: WorkerEnv, threads: int | None,
                     **kwargs: Any) -> TileOutcome:
    """One whole tile on a Dask worker: :func:`cloudfree.tile.mosaic_tile` (plan, compute,
    COG encoding, publish), its dask graph computed by a local threaded scheduler of
    ``threads`` threads (None: the worker's cores over its Dask threads). Returns only
    the outcome.

    The threaded scheduler, not the cluster's: a task that submitted its cube's graph to
    the scheduler it runs on would hold a worker thread while waiting for others (a
    deadlock when every thread does), and every chunk would cross processes. It is set
    for the worker process, not in a context: dask's config is process-wide, and a
    context one task leaves would switch the scheduler back under another task still
    running on the same worker; every tile task sets the same value."""
    _on_worker(env, threads)
    try:
        return mosaic_tile(items, tile, window, params, fs=s3_filesystem(env.storage_options),
                           gdal_env=env.gdal_env, api_token=env.api_token, **kwargs)
    except Exception as exc:
        raise _crossing(exc, tile.tile_id) from None


def event_on_worker(items: list[dict[str, Any]], tile: Tile, window: DateWindow,
                    params: MosaicParams, *, event: Event, env: WorkerEnv,
                    threads: int | None, **kwargs: Any) -> list[TileOutcome]:
    """One tile's event pair on a Dask worker, as :func:`mosaic_on_worker` makes one
    mosaic: :func:`cloudfree.event_tile.event_tile` (post, then pre). Returns the two
    outcomes."""
    from cloudfree.event_tile import event_tile

    _on_worker(env, threads)
    try:
        return event_tile(items, tile, window, params, event,
                          fs=s3_filesystem(env.storage_options), gdal_env=env.gdal_env,
                          api_token=env.api_token, **kwargs)
    except Exception as exc:
        raise _crossing(exc, tile.tile_id) from None


@task(**RETRY, task_run_name="mosaic-{tile.tile_id}")
def tile_task(settings: Settings, items: list[dict[str, Any]], tile: Tile, window: DateWindow,
              params: MosaicParams, *, collection: str, force: bool = False,
              threads: int | None = None) -> TileOutcome:
    """One tile as ONE Dask task on a worker (:func:`mosaic_on_worker`); waits for its
    outcome at most ``settings.task_timeout_s`` (then :class:`TileTimeoutError`, not
    retried). Each try is a fresh Dask task (``pure=False``, a key of its own)."""
    outcome: TileOutcome = _submit_tile(settings, mosaic_on_worker, items, tile, window,
                                        params, collection=collection, force=force,
                                        threads=threads)
    return outcome


@task(**RETRY, task_run_name="event-{tile.tile_id}")
def event_task(settings: Settings, items: list[dict[str, Any]], tile: Tile, window: DateWindow,
               params: MosaicParams, *, event: Event, collection: str, force: bool = False,
               threads: int | None = None) -> list[TileOutcome]:
    """One tile's event pair as ONE Dask task on a worker (:func:`event_on_worker`), as
    :func:`tile_task` runs one mosaic; its ``related`` links name the readers' API."""
    outcomes: list[TileOutcome] = _submit_tile(
        settings, event_on_worker, items, tile, window, params, collection=collection,
        force=force, threads=threads, event=event, public_api_url=settings.stac_url)
    return outcomes


def _submit_tile(settings: Settings, run: Callable[..., Any], items: list[dict[str, Any]],
                 tile: Tile, window: DateWindow, params: MosaicParams, *, collection: str,
                 force: bool, threads: int | None, **extra: Any) -> Any:
    """Submit ``run`` (:func:`mosaic_on_worker` or :func:`event_on_worker`) for one tile
    and wait for its result at most ``settings.task_timeout_s``."""
    options = dict(
        api_url=settings.stac_publish_url,  # the writer API; its token travels in WorkerEnv
        source_api_url=source_url(settings),
        source_collection=collection,
        output_collection=settings.output_collection,
        output_root=f"s3://{settings.bucket}/{settings.output_collection}",
        force=force,
        read_failure_policy=settings.read_failure_policy,
        refresh=False,  # the run refreshes the collection once, at its end (run_tiles)
    )
    env = WorkerEnv.from_settings(settings)
    client = get_client()
    future = client.submit(run, items, tile, window, params, env=env,
                           threads=threads, pure=False, key=f"tile-{tile.tile_id}-"
                           f"{uuid.uuid4().hex[:8]}", resources=_resources(client, params),
                           **options, **extra)
    try:
        return future.result(timeout=settings.task_timeout_s)
    except TimeoutError:
        future.cancel()  # type: ignore[no-untyped-call]  # distributed: unannotated
        raise TileTimeoutError(tile.tile_id, settings.task_timeout_s) from None


def _resources(client: Client, params: MosaicParams) -> dict[str, int] | None:
    """A learned method's tile runs on a GPU worker when the cluster has them (its graph
    runs inside the task, so the task itself must be placed there)."""
    if not get_method(params.method).learned:
        return None
    from cloudfree.cluster import gpu_resources

    return gpu_resources(client)


def _failed(tile: Tile, items: Sequence[Mapping[str, Any]], window: DateWindow,
            params: MosaicParams, error: BaseException, event: Event | None = None
            ) -> TileOutcome:
    """The outcome of a tile that failed: its item id (as it would have been; an event
    pair's: the post item's), its scenes, the error as one line."""
    try:
        if event is None:
            item = plan_tile(items, tile, window, params).item_id
        else:
            from cloudfree.event_tile import plan_pair

            item = plan_pair(items_for_tile(items, tile, halo=halo_px(params)), tile, window,
                             params, event)["post"].item_id
    except Exception:
        item = ""
    sources = len(items_for_tile(items, tile, halo=halo_px(params)))
    return TileOutcome.failure(tile.tile_id, item, error, sources)


def tile_rows(outcomes: Sequence[TileOutcome]) -> list[dict[str, Any]]:
    """The per-tile table: tile, status, item, scenes, error."""
    return [{"tile": o.tile_id, "status": o.status, "item": o.item_id, "scenes": o.n_sources,
             "error": o.error or ""} for o in outcomes]


def refresh_output(settings: Settings, params: MosaicParams, logger: Any) -> None:
    """Make the output collection and its static ``collection.json`` true of every live
    item, once per run (:func:`cloudfree.publish.refresh_collection`); the tiles only grew
    the extent as they published. A failure is logged: the items are live, and the next
    run's refresh lists them."""
    from cloudfree.publish import refresh_collection

    try:
        refresh_collection(settings.stac_publish_url, settings.output_collection,
                           output_root=f"s3://{settings.bucket}/{settings.output_collection}",
                           fs=s3_filesystem(settings.storage_options()), bands=params.bands,
                           source_api_url=source_url(settings), token=settings.stac_token())
    except Exception as exc:  # derived state: never fail a run whose tiles are published
        logger.warning("the collection %s was not refreshed (%s: %s); the next run's refresh "
                       "lists its items", settings.output_collection, type(exc).__name__, exc)


def run_tiles(settings: Settings, items: Sequence[Mapping[str, Any]], tiles: Sequence[Tile],
              window: DateWindow, params: MosaicParams, *, collection: str,
              force: bool = False, event: Event | None = None) -> list[TileOutcome]:
    """Every tile through :func:`tile_task`, at most ``settings.max_tiles_in_flight`` at
    once (a window: the next tile is submitted when one finishes), inside a
    :func:`dask_client`. A failed tile becomes a failed outcome and the others go on.
    Publishes the ``mosaic-tiles`` table artifact, then raises
    :class:`~cloudfree.errors.TilesFailedError` when any tile failed (the run ends Failed;
    a re-run skips what was published and redoes the rest). Outcomes in ``tiles`` order.

    ``event``: each tile is an event pair (:func:`event_task`), two outcomes (post, pre),
    or one failed outcome."""
    logger = get_run_logger()
    halo = halo_px(params)
    local = settings.dask_cluster == "local"
    threads = local_workers(settings, tiles=len(tiles))[1] if local else None
    # The timeout is tile_task's wait on its Dask future: a Prefect timeout_seconds cannot
    # interrupt that blocking wait in a worker thread (Prefect warns so on every tile).
    queue = iter(tiles)
    pending: dict[PrefectFuture[Any], Tile] = {}
    done: dict[str, list[TileOutcome]] = {}

    def submit(tile: Tile) -> None:
        sources = items_for_tile(items, tile, halo=halo)
        future: PrefectFuture[Any]
        if event is None:
            future = tile_task.submit(settings, sources, tile, window, params,
                                      collection=collection, force=force, threads=threads)
        else:
            future = event_task.submit(settings, sources, tile, window, params, event=event,
                                       collection=collection, force=force, threads=threads)
        pending[future] = tile

    try:
        client: Client | None = get_client()
    except ValueError:  # no Dask client: the tiles' reports arrive in this process
        client = None
    # Tiles done of total, and each running tile's stage and step (a TTY only, never with
    # CLOUDFREE_PROGRESS=0); a Prefect progress artifact in a flow run.
    with progress.listen(client, len(tiles)) as shown:
        for tile in islice(queue, settings.max_tiles_in_flight):
            submit(tile)
        while pending:
            finished = next(as_completed(list(pending)))
            tile = pending.pop(finished)
            try:
                result = finished.result()
                outcomes_of_tile = list(result) if isinstance(result, list) else [result]
            except Exception as exc:  # one failed tile does not stop the others
                outcomes_of_tile = [_failed(tile, items, window, params, exc, event)]
            done[tile.tile_id] = outcomes_of_tile
            shown.tile_done(outcomes_of_tile[0])
            for outcome in outcomes_of_tile:
                logger.info("%s %s (%d scenes)%s", outcome.status,
                            outcome.item_id or tile.tile_id, outcome.n_sources,
                            f": {outcome.error}" if outcome.error else "")
            following = next(queue, None)
            if following is not None:
                submit(following)
    outcomes = [o for t in tiles for o in done[t.tile_id]]
    if any(o.status == "published" for o in outcomes):
        refresh_output(settings, params, logger)
    failed = [(o.tile_id, str(o.error)) for o in outcomes if o.status == "failed"]
    create_table_artifact(
        key="mosaic-tiles", table=tile_rows(outcomes),
        description=f"{len(outcomes)} {'items' if event else 'tiles'}: " + ", ".join(
            f"{sum(o.status == s for o in outcomes)} {s}"
            for s in ("published", "skipped", "failed")))
    if failed:
        raise TilesFailedError(failed, len(tiles))
    return outcomes
