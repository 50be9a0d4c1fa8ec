"""Dask clusters: a LocalCluster by default (Kubernetes comes later)."""

from __future__ import annotations

import os
from typing import Literal

from distributed import LocalCluster

from cloudfree.errors import InvalidParameterError


def make_cluster(
    kind: Literal["local"] = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
) -> LocalCluster:
    """Start a Dask cluster for the heavy compute.

    Args:
        kind: ``"local"``: worker processes on this machine, bound to 127.0.0.1.
        n_workers: worker processes; default one per core, at most 4.
        threads_per_worker: threads per worker (GDAL reads and numpy release the GIL).
        memory_limit: per-worker memory limit.
    """
    if kind != "local":
        raise InvalidParameterError("kind", kind, "only 'local' clusters exist so far")
    n_workers = n_workers or max(1, min(4, os.cpu_count() or 1))
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=memory_limit,
    )
