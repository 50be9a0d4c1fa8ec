"""Dask clusters: a LocalCluster by default, or a dask-kubernetes operator KubeCluster with a
CPU loader group and a GPU generator group.

The Kubernetes specs are built by pure ``build_*_spec(...) -> dict`` functions, so they can be
validated offline against the operator's CRDs; only :func:`make_cluster` talks to a cluster.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from distributed import Client, LocalCluster

from cloudfree.errors import InvalidParameterError, KubernetesUnreachableError

ClusterKind = Literal["local", "kubernetes"]

#: The Dask worker resource that GPU tasks ask for: ``dask.annotate(resources={"GPU": 1})``.
GPU_RESOURCE = "GPU"
#: The extended resource the NVIDIA device plugin advertises on GPU nodes.
NVIDIA_GPU = "nvidia.com/gpu"
#: Keys of the S3 credentials Secret (created at install time, never committed); named as the
#: variables Settings reads, so the Secret works as ``envFrom`` too.
S3_SECRET_KEYS = ("CLOUDFREE_S3_ACCESS_KEY_ID", "CLOUDFREE_S3_SECRET_ACCESS_KEY")
#: The operator's API group and version.
DASK_API_VERSION = "kubernetes.dask.org/v1"

_SCRATCH = "/tmp"  # the only writable path in our pods: an emptyDir (root filesystem read-only)




@dataclass(frozen=True)
class WorkerGroup:
    """One group of Dask worker pods.

    Args:
        name: group name; the pods are ``<cluster>-<name>-worker-...``.
        minimum: adaptive lower bound (workers).
        maximum: adaptive upper bound (workers).
        threads: Dask threads per worker.
        cpu: CPU request per pod (Kubernetes quantity).
        memory: memory request and limit per pod (Kubernetes quantity).
        gpus: NVIDIA GPUs per pod; each worker then advertises ``GPU=<gpus>``.
        node_selector: node labels the pods must land on.
        tolerations: taints the pods tolerate (GPU nodes are usually tainted).
    """

    name: str
    minimum: int = 0
    maximum: int = 4
    threads: int = 2
    cpu: str = "2"
    memory: str = "8Gi"
    gpus: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, str]] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum:
            raise InvalidParameterError(
                f"{self.name} worker bounds",
                (self.minimum, self.maximum),
                "need 0 <= minimum <= maximum",
            )
        if self.threads < 1 or self.gpus < 0:
            raise InvalidParameterError(
                f"{self.name} worker group",
                (self.threads, self.gpus),
                "threads must be >= 1 and gpus >= 0",
            )


def default_loader_group() -> WorkerGroup:
    """CPU workers: STAC reads, cube building, masking, compositing, COG writing."""
    return WorkerGroup(name="loaders", minimum=1, maximum=8, threads=2, cpu="2", memory="8Gi")


def default_gpu_group() -> WorkerGroup:
    """GPU workers for the generator: one GPU, one thread, on tainted GPU nodes."""
    return WorkerGroup(
        name="gpu",
        minimum=0,
        maximum=2,
        threads=1,
        cpu="4",
        memory="16Gi",
        gpus=1,
        # label set by NVIDIA GPU feature discovery on nodes with a GPU
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=({"key": NVIDIA_GPU, "operator": "Exists", "effect": "NoSchedule"},),
    )


@dataclass(frozen=True)
class KubeClusterConfig:
    """What a Kubernetes Dask cluster for cloudfree looks like.

    Args:
        namespace: where the DaskCluster lives; ``None``: the kubeconfig's or pod's namespace.
        image: the CPU image (scheduler and loaders).
        gpu_image: the CUDA image (GPU workers).
        settings_config_map: ConfigMap with ``CLOUDFREE_*``, GDAL and AWS settings (envFrom).
        s3_secret: Secret with the S3 keys :data:`S3_SECRET_KEYS`.
        loaders: the CPU worker group (the DaskCluster's default group).
        gpu: the GPU worker group, or ``None`` for a CPU-only cluster.
        scheduler_cpu, scheduler_memory: scheduler pod requests; it never gets a GPU.
        idle_timeout_s: the operator deletes a cluster whose scheduler idled this long.
    """

    namespace: str | None = None
    image: str = "cloudfree:0.1.0-cpu"
    gpu_image: str = "cloudfree:0.1.0-gpu"
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    settings_config_map: str = "cloudfree-settings"
    s3_secret: str = "cloudfree-s3"
    loaders: WorkerGroup = field(default_factory=default_loader_group)
    gpu: WorkerGroup | None = field(default_factory=default_gpu_group)
    scheduler_cpu: str = "1"
    scheduler_memory: str = "2Gi"
    idle_timeout_s: int = 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> KubeClusterConfig:
        """The config from ``CLOUDFREE_DASK_*`` variables (the chart's settings ConfigMap sets
        them in flow-run pods). Pass ``os.environ`` at the edge."""

        def get(key: str) -> str | None:
            return environ.get(f"CLOUDFREE_DASK_{key}") or None

        def bounds(group: WorkerGroup, prefix: str) -> WorkerGroup:
            lo, hi = get(f"{prefix}_MIN"), get(f"{prefix}_MAX")
            return replace(
                group,
                minimum=int(lo) if lo else group.minimum,
                maximum=int(hi) if hi else group.maximum,
            )

        base = cls()
        gpu = None if (get("GPU_MAX") == "0") else bounds(default_gpu_group(), "GPU")
        return replace(
            base,
            namespace=get("NAMESPACE"),
            image=get("IMAGE") or base.image,
            gpu_image=get("GPU_IMAGE") or base.gpu_image,
            settings_config_map=get("SETTINGS_CONFIGMAP") or base.settings_config_map,
            s3_secret=get("S3_SECRET") or base.s3_secret,
            loaders=bounds(base.loaders, "LOADERS"),
            gpu=gpu,
        )


# --- pure spec builders ---------------------------------------------------------------------


def pod_security_context() -> dict[str, Any]:
    """Restricted pod security: non-root UID 1000 (the image's user), RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Read-only root filesystem, no privilege escalation, every capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def settings_env(config: KubeClusterConfig) -> tuple[list[dict], list[dict]]:
    """``(env, envFrom)`` every Dask container gets: settings (``CLOUDFREE_*``, GDAL, AWS) from
    the ConfigMap, the S3 keys from the Secret, as ``CLOUDFREE_S3_*`` for Settings and again as
    ``AWS_*`` for GDAL's own reads."""
    key_id, secret = S3_SECRET_KEYS

    def from_secret(name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": config.s3_secret, "key": key}}}

    env = [from_secret("AWS_ACCESS_KEY_ID", key_id), from_secret("AWS_SECRET_ACCESS_KEY", secret)]
    env_from = [
        {"configMapRef": {"name": config.settings_config_map}},
        {"secretRef": {"name": config.s3_secret}},
    ]
    return env, env_from


def _scratch_volume() -> tuple[list[dict], list[dict]]:
    return (
        [{"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}}],
        [{"name": "scratch", "mountPath": _SCRATCH}],
    )


def _pod_spec(container: dict[str, Any], *, group: WorkerGroup | None = None) -> dict[str, Any]:
    volumes, mounts = _scratch_volume()
    spec: dict[str, Any] = {
        # Dask pods never call the Kubernetes API; the operator creates them.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [{**container, "volumeMounts": mounts}],
        "volumes": volumes,
    }
    if group is not None and group.node_selector:
        spec["nodeSelector"] = dict(group.node_selector)
    if group is not None and group.tolerations:
        spec["tolerations"] = [dict(t) for t in group.tolerations]
    return spec


def worker_resources(group: WorkerGroup) -> dict[str, dict[str, str]]:
    """Pod requests/limits; quantities are strings, the GPU count too (``"1"``)."""
    resources = {
        "requests": {"cpu": group.cpu, "memory": group.memory},
        "limits": {"memory": group.memory},
    }
    if group.gpus:
        resources["limits"][NVIDIA_GPU] = str(group.gpus)
    return resources


def build_worker_spec(
    config: KubeClusterConfig, group: WorkerGroup, *, replicas: int | None = None
) -> dict[str, Any]:
    """The ``worker`` part of a DaskCluster or DaskWorkerGroup."""
    env, env_from = settings_env(config)
    args = [
        "dask",
        "worker",
        "--name",
        "$(DASK_WORKER_NAME)",
        "--nthreads",
        str(group.threads),
        "--dashboard",
        "--dashboard-address",
        "8788",
        "--local-directory",
        f"{_SCRATCH}/dask-worker",
    ]
    if group.gpus:
        args += ["--resources", f"{GPU_RESOURCE}={group.gpus}"]
    container = {
        "name": "worker",
        "image": config.gpu_image if group.gpus else config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "env": env,
        "envFrom": env_from,
        "resources": worker_resources(group),
        "securityContext": container_security_context(),
        "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
    }
    return {
        "replicas": group.minimum if replicas is None else replicas,
        "metadata": {"labels": {"cloudfree.io/worker-group": group.name}},
        "spec": _pod_spec(container, group=group),
    }


def build_scheduler_spec(config: KubeClusterConfig, cluster_name: str) -> dict[str, Any]:
    """The scheduler pod and its ClusterIP service; CPU and memory only, never a GPU."""
    env, env_from = settings_env(config)
    container = {
        "name": "scheduler",
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": ["dask", "scheduler", "--host", "0.0.0.0"],
        "env": env,
        "envFrom": env_from,
        "resources": {
            "requests": {"cpu": config.scheduler_cpu, "memory": config.scheduler_memory},
            "limits": {"memory": config.scheduler_memory},
        },
        "securityContext": container_security_context(),
        "ports": [
            {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"port": "http-dashboard", "path": "/health"},
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
            "timeoutSeconds": 300,
        },
        "livenessProbe": {
            "httpGet": {"port": "http-dashboard", "path": "/health"},
            "initialDelaySeconds": 15,
            "periodSeconds": 20,
        },
    }
    return {
        "spec": _pod_spec(container),
        "service": {
            "type": "ClusterIP",
            "selector": {"dask.org/cluster-name": cluster_name, "dask.org/component": "scheduler"},
            "ports": [
                {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                {
                    "name": "http-dashboard",
                    "protocol": "TCP",
                    "port": 8787,
                    "targetPort": "http-dashboard",
                },
            ],
        },
    }


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "cloudfree"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def build_cluster_spec(config: KubeClusterConfig, name: str) -> dict[str, Any]:
    """The DaskCluster: scheduler plus the CPU loader group as the default worker group."""
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskCluster",
        "metadata": _metadata(name, config.namespace),
        "spec": {
            "idleTimeout": config.idle_timeout_s,
            "worker": build_worker_spec(config, config.loaders),
            "scheduler": build_scheduler_spec(config, name),
        },
    }


def build_worker_group_spec(
    config: KubeClusterConfig, cluster_name: str, group: WorkerGroup
) -> dict[str, Any]:
    """An extra DaskWorkerGroup (the GPU workers) attached to the cluster."""
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskWorkerGroup",
        "metadata": _metadata(f"{cluster_name}-{group.name}", config.namespace),
        "spec": {"cluster": cluster_name, "worker": build_worker_spec(config, group)},
    }


def build_autoscaler_spec(config: KubeClusterConfig, cluster_name: str) -> dict[str, Any]:
    """The operator's autoscaler; it scales the default (loader) group within its bounds."""
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": _metadata(cluster_name, config.namespace),
        "spec": {
            "cluster": cluster_name,
            "minimum": config.loaders.minimum,
            "maximum": config.loaders.maximum,
        },
    }


def build_manifests(config: KubeClusterConfig, name: str) -> list[dict[str, Any]]:
    """Every resource :func:`make_cluster` creates, in creation order."""
    docs = [build_cluster_spec(config, name)]
    if config.gpu is not None:
        docs.append(build_worker_group_spec(config, name, config.gpu))
    docs.append(build_autoscaler_spec(config, name))
    return docs


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
    group = _GPU_GROUPS.get(getattr(client.cluster, "name", None))
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


def desired_workers(demand: int, *, current: int, group: WorkerGroup) -> int:
    """Workers a group should have for ``demand`` tasks: one task per thread, within the
    group's bounds, shrinking by at most one worker per step (as the operator's autoscaler)."""
    target = min(group.maximum, max(group.minimum, math.ceil(demand / group.threads)))
    if target < current:
        target = max(target, current - 1)
    return target


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
        demand = self.client.run_on_scheduler(gpu_demand)
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
        self.client.close()

    def start(self) -> GpuGroupScaler:
        self._thread = threading.Thread(target=self._run, name="cloudfree-gpu-scaler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)


# cluster name -> its GPU group, for gpu_resources() on clusters made here
_GPU_GROUPS: dict[str, WorkerGroup] = {}


# --- the edge: making clusters ---------------------------------------------------------------


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
) -> Any:
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
        return LocalCluster(
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
) -> Any:
    import kr8s.asyncio
    from dask_kubernetes.operator import KubeCluster
    from distributed.utils import LoopRunner, sync

    tried = describe_kube_target(kubeconfig, context, os.environ)
    runner = LoopRunner(asynchronous=False)
    runner.start()

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
        namespace = sync(runner.loop, connect)
    except Exception as exc:
        runner.stop()
        raise KubernetesUnreachableError(tried, f"{type(exc).__name__}: {exc}") from exc

    config = replace(config, namespace=config.namespace or namespace)
    cluster_spec, *extra = build_manifests(config, name)
    cluster = KubeCluster(
        custom_cluster_spec=cluster_spec,
        namespace=config.namespace,
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
        scale = _group_scaler(cluster, f"{name}-{config.gpu.name}", config.namespace)
        scaler_client = Client(cluster, set_as_default=False)
        GpuGroupScaler(
            scaler_client,
            config.gpu,
            scale,
            alive=lambda: cluster.status.name not in ("closing", "closed"),
        ).start()
    return cluster


def _group_scaler(cluster: Any, group_name: str, namespace: str) -> Callable[[int], None]:
    """``scale(n)`` for one DaskWorkerGroup, without touching the cluster's autoscaler
    (``KubeCluster.scale`` deletes it)."""
    from dask_kubernetes.operator._objects import DaskWorkerGroup

    async def _scale(n: int) -> None:
        group = await DaskWorkerGroup.get(group_name, namespace=namespace)
        await group.scale(n)

    def scale(n: int) -> None:
        cluster.sync(_scale, n)

    return scale
