"""Prefect tasks shared by the mosaic flows: thin wrappers over the library."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, TypedDict

from distributed import Client
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from pydantic import Field

from cloudfree import catalogs
from cloudfree.cluster import KubeClusterConfig, make_cluster
from cloudfree.errors import CloudFreeError
from cloudfree.grid import AOI, DateWindow, Tile
from cloudfree.methods import list_methods
from cloudfree.plan import Budgets, Plan, build_plan, check_budgets
from cloudfree.publish import ensure_collection
from cloudfree.search import search_scenes
from cloudfree.sentinel2 import DEFAULT_BANDS
from cloudfree.settings import Settings
from cloudfree.storage import check_bucket, s3_filesystem
from cloudfree.tile import MosaicParams, TileOutcome, mosaic_tile

#: A flow's ``method`` parameter: the registry's mosaic methods, as an enum in the flow's
#: parameter schema, so Prefect refuses any other name before a run starts.
MosaicMethod = Annotated[str, Field(
    description="how gaps are filled: " + ", ".join(list_methods("mosaic")),
    json_schema_extra={"enum": list(list_methods("mosaic"))})]


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network hiccups, never bad input."""
    try:
        state.result()
    except CloudFreeError as exc:
        return isinstance(exc, ConnectionError)
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


@contextlib.contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A Dask client on a fresh cluster of the configured kind (local, or a
    dask-kubernetes operator cluster in production); its start/stop chatter kept out of
    the flow's log."""
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.dask_cluster == "kubernetes":
        cluster = make_cluster("kubernetes", kube=KubeClusterConfig.from_env(os.environ))
    else:
        cluster = make_cluster("local")
    # distributed's Client.__init__ is unannotated
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client


def source_url(settings: Settings) -> str:
    """The STAC API searched for source scenes (``CLOUDFREE_SOURCE_STAC_API_URL``, default
    the one mosaics are published to)."""
    return settings.source_stac_api_url or settings.stac_url


def preflight(settings: Settings, *, bands: tuple[str, ...]) -> None:
    """Check storage and the output collection before any work, so bad set-up fails
    fast and nothing is written."""
    check_bucket(s3_filesystem(settings.storage_options()), settings.bucket)
    ensure_collection(settings.stac_url, settings.output_collection, bands=bands)


@task(**RETRY)
def search_task(settings: Settings, *, collection: str, aoi: AOI, window: DateWindow,
                max_cloud_pct: float | None, bands: Sequence[str] = DEFAULT_BANDS,
                source: str | None = None, assume: str | None = None,
                signer: str | None = None) -> list[dict[str, Any]]:
    """The scenes, decoded and re-keyed to cloudfree's band names + ``scl``, hrefs signed
    (:func:`cloudfree.catalogs.prepare_items`): what the tiles read."""
    items = search_scenes(source_url(settings), collection=collection, aoi=aoi, window=window,
                          max_cloud_pct=max_cloud_pct)
    return catalogs.prepare_items(items, bands, source=source, api_url=source_url(settings),
                                  assume=assume, signer=signer)


def plan_run(settings: Settings, items: Sequence[Mapping[str, Any]], *, params: MosaicParams,
             aoi: AOI, window: DateWindow, tile_size_px: int | None, epsg: int | None,
             source: str | None, assume: str | None) -> Plan:
    """The run's plan (the same as ``cloudfree plan``'s), its summary logged; refuses the
    run (:class:`~cloudfree.errors.BudgetExceededError`) when it exceeds a budget of the
    settings, before any tile starts."""
    plan = build_plan(items, params=params, aoi=aoi, window=window, tile_size_px=tile_size_px,
                      epsg=epsg, source=source, assume=assume, api_url=source_url(settings),
                      origin="search")
    get_run_logger().info(plan.summary())
    check_budgets(plan, Budgets.from_settings(settings))
    return plan


@task(**RETRY, task_run_name="mosaic-{tile.tile_id}")
def tile_task(settings: Settings, items: list[dict[str, Any]], tile: Tile, window: DateWindow,
              params: MosaicParams, *, collection: str, force: bool = False) -> TileOutcome:
    return mosaic_tile(
        items, tile, window, params,
        api_url=settings.stac_url,
        source_api_url=source_url(settings),
        source_collection=collection,
        output_collection=settings.output_collection,
        output_root=f"s3://{settings.bucket}/{settings.output_collection}",
        fs=s3_filesystem(settings.storage_options()),
        gdal_env=settings.gdal_env(),
        force=force,
    )
