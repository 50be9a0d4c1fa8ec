"""The side effects: starting clusters (a LocalCluster, or a KubeCluster from the pure specs of
:mod:`cloudfree.cluster.specs`), GPU placement on a running cluster, and the client-side loop
that scales the GPU worker group."""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, cast

from distributed import Client, LocalCluster
from distributed.deploy.cluster import Cluster

from cloudfree.cluster.sizing import desired_workers
from cloudfree.cluster.specs import GPU_RESOURCE, KubeClusterConfig, WorkerGroup, build_manifests
from cloudfree.errors import InvalidParameterError, KubernetesUnreachableError

ClusterKind = Literal["local", "kubernetes"]

# cluster name -> its GPU group, for gpu_resources() on clusters made here
_GPU_GROUPS: dict[str, WorkerGroup] = {}


# --- GPU placement and the GPU group's adaptivity ----------------------------------------------


def gpu_resources(client: Client) -> dict[str, int] | None:
    """``{"GPU": 1}`` when GPU tasks can be placed: a worker advertises the ``GPU`` resource,
    or the cluster has a GPU group that scales up on demand; else ``None`` (run on CPU).

    Use as ``with dask.annotate(resources=gpu_resources(client) or {}):`` around graph
    construction, and compute under ``dask.config.set(cloudfree.methods.generator.COMPUTE_CONFIG)``:
    dask's low-level fusion would otherwise drop the annotations before they reach the
    scheduler. :func:`cloudfree.methods.generator.generator_composite` annotates on its own.
    """
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if any(w.get("resources", {}).get(GPU_RESOURCE, 0) >= 1 for w in workers.values()):
        return {GPU_RESOURCE: 1}
    name = getattr(client.cluster, "name", None)
    group = _GPU_GROUPS.get(name) if isinstance(name, str) else None
    if group is not None and group.maximum > 0:
        return {GPU_RESOURCE: 1}
    return None


def gpu_demand(dask_scheduler: Any) -> int:
    """Tasks that need the GPU resource and are waiting, queued, unrunnable or running.

    Runs on the scheduler: ``client.run_on_scheduler(gpu_demand)``.
    """
    return sum(
        1
        for ts in dask_scheduler.tasks.values()
        if GPU_RESOURCE in (ts.resource_restrictions or {})
        and ts.state in ("waiting", "queued", "no-worker", "processing")
    )


class GpuGroupScaler:
    """Scales the GPU worker group to the GPU demand, within the group's bounds.

    The operator's DaskAutoscaler only scales a cluster's default group; this loop does the
    same for the GPU group from the client side. ``scale(n)`` applies a worker count.
    """

    def __init__(
        self,
        client: Client,
        group: WorkerGroup,
        scale: Callable[[int], None],
        *,
        interval_s: float = 10.0,
        current: int | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.client = client
        self.group = group
        self.scale = scale
        self.alive = alive
        self.interval_s = interval_s
        self.current = group.minimum if current is None else current
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> int:
        """One decision: ask the scheduler for the GPU demand, scale if needed."""
        # distributed leaves run_on_scheduler and close unannotated
        demand = self.client.run_on_scheduler(gpu_demand)  # type: ignore[no-untyped-call]
        target = desired_workers(demand, current=self.current, group=self.group)
        if target != self.current:
            self.scale(target)
            self.current = target
        return target

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self.alive():
            try:
                self.step()
            except Exception:  # a missed step is retried at the next interval
                continue
        self.client.close()  # type: ignore[no-untyped-call]

    def start(self) -> GpuGroupScaler:
        self._thread = threading.Thread(target=self._run, name="cloudfree-gpu-scaler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)


# --- making clusters --------------------------------------------------------------------------


def describe_kube_target(
    kubeconfig: str | os.PathLike[str] | None, context: str | None, environ: Mapping[str, str]
) -> str:
    """Which kubeconfig and context a connection attempt uses, in words, for error messages.

    Mirrors kr8s: an explicit path, else ``$KUBECONFIG`` (colon-separated), else
    ``~/.kube/config``; when none exists, the in-cluster service account.
    """
    if kubeconfig:
        paths, origin = [str(kubeconfig)], "kubeconfig"
    elif environ.get("KUBECONFIG"):
        paths, origin = environ["KUBECONFIG"].split(":"), "kubeconfig from $KUBECONFIG"
    else:
        paths, origin = [str(Path("~/.kube/config").expanduser())], "default kubeconfig"
    existing = [p for p in paths if Path(p).expanduser().exists()]
    ctx = f"context {context!r}" if context else "its current-context"
    if existing:
        return f"{origin} {':'.join(paths)} ({ctx})"
    return (
        f"{origin} {':'.join(paths)} (missing), then the in-cluster service account "
        "/var/run/secrets/kubernetes.io/serviceaccount"
    )


def make_cluster(
    kind: ClusterKind = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    kube: KubeClusterConfig | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    name: str | None = None,
) -> Cluster:
    """Start a Dask cluster for the heavy compute.

    Args:
        kind: ``"local"``: worker processes on this machine, bound to 127.0.0.1.
            ``"kubernetes"``: a dask-kubernetes operator cluster (the operator must be
            installed) with the loader and GPU groups of ``kube``.
        n_workers: local only: worker processes; default one per core, at most 4.
        threads_per_worker: local only: threads per worker (GDAL reads and numpy release
            the GIL).
        memory_limit: local only: per-worker memory limit.
        kube: the Kubernetes cluster's shape; default :class:`KubeClusterConfig`.
        kubeconfig: kubeconfig path; default ``$KUBECONFIG``, ``~/.kube/config``, or the
            in-cluster service account.
        context: kubeconfig context; default the kubeconfig's current-context.
        name: DaskCluster name; default ``cloudfree-<random>``.

    Raises:
        KubernetesUnreachableError: no API server answered; names the kubeconfig and context.
    """
    if kind == "local":
        n_workers = n_workers or max(1, min(4, os.cpu_count() or 1))
        return LocalCluster(  # type: ignore[no-untyped-call]  # distributed: unannotated
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=memory_limit,
        )
    if kind != "kubernetes":
        raise InvalidParameterError("kind", kind, "use 'local' or 'kubernetes'")
    return _make_kube_cluster(
        kube or KubeClusterConfig(),
        kubeconfig=kubeconfig,
        context=context,
        name=name or f"cloudfree-{uuid.uuid4().hex[:8]}",
    )


def _make_kube_cluster(
    config: KubeClusterConfig,
    *,
    kubeconfig: str | os.PathLike[str] | None,
    context: str | None,
    name: str,
) -> Cluster:
    import kr8s.asyncio
    from dask_kubernetes.operator import KubeCluster
    from distributed.utils import LoopRunner, sync

    tried = describe_kube_target(kubeconfig, context, os.environ)
    runner = LoopRunner(asynchronous=False)
    # distributed leaves LoopRunner.start and .stop unannotated
    runner.start()  # type: ignore[no-untyped-call]

    async def connect() -> str:
        # Created on the loop KubeCluster will use: kr8s hands this same API object (our
        # kubeconfig and context) to every argument-less kr8s call made on that loop.
        api = await kr8s.asyncio.api(
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            context=context,
            namespace=config.namespace,
        )
        await api.version()
        return api.namespace

    try:
        api_namespace: str = sync(runner.loop, connect)
    except Exception as exc:
        runner.stop()  # type: ignore[no-untyped-call]
        raise KubernetesUnreachableError(tried, f"{type(exc).__name__}: {exc}") from exc

    namespace = config.namespace or api_namespace
    config = replace(config, namespace=namespace)
    cluster_spec, *extra = build_manifests(config, name)
    cluster = KubeCluster(
        custom_cluster_spec=cluster_spec,
        namespace=namespace,
        loop=runner.loop,
        shutdown_on_close=True,
        quiet=True,
    )
    weakref.finalize(cluster, runner.stop)
    for doc in extra:
        if doc["kind"] == "DaskWorkerGroup" and config.gpu is not None:
            cluster.add_worker_group(config.gpu.name, custom_spec=doc["spec"]["worker"])
    cluster.adapt(minimum=config.loaders.minimum, maximum=config.loaders.maximum)
    if config.gpu is not None:
        _GPU_GROUPS[name] = config.gpu
        scale = _group_scaler(cluster, f"{name}-{config.gpu.name}", namespace)
        scaler_client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        GpuGroupScaler(
            scaler_client,
            config.gpu,
            scale,
            alive=lambda: cluster.status.name not in ("closing", "closed"),
        ).start()
    return cast(Cluster, cluster)  # KubeCluster subclasses Cluster; dask_kubernetes is untyped


def _group_scaler(cluster: Any, group_name: str, namespace: str) -> Callable[[int], None]:
    """``scale(n)`` for one DaskWorkerGroup, without touching the cluster's autoscaler
    (``KubeCluster.scale`` deletes it)."""
    from dask_kubernetes.operator._objects import (
        DaskWorkerGroup,
    )

    async def _scale(n: int) -> None:
        group = await DaskWorkerGroup.get(group_name, namespace=namespace)
        await group.scale(n)

    def scale(n: int) -> None:
        cluster.sync(_scale, n)

    return scale
