"""The Kubernetes Dask cluster's shape, and pure ``build_*_spec(...) -> dict`` functions that
turn it into dask-kubernetes operator resources: no I/O, no Kubernetes client, so the specs can
be validated offline against the operator's CRDs (:mod:`cloudfree.cluster._runtime` applies
them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cloudfree.errors import InvalidParameterError

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


# --- pod and container parts ----------------------------------------------------------------


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


def settings_env(config: KubeClusterConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(env, envFrom)`` every Dask container gets: settings (``CLOUDFREE_*``, GDAL, AWS) from
    the ConfigMap, the S3 keys from the Secret, as ``CLOUDFREE_S3_*`` for Settings and again as
    ``AWS_*`` for GDAL's own reads."""
    key_id, secret = S3_SECRET_KEYS

    def from_secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": config.s3_secret, "key": key}}}

    env = [from_secret("AWS_ACCESS_KEY_ID", key_id), from_secret("AWS_SECRET_ACCESS_KEY", secret)]
    env_from: list[dict[str, Any]] = [
        {"configMapRef": {"name": config.settings_config_map}},
        {"secretRef": {"name": config.s3_secret}},
    ]
    return env, env_from


def worker_resources(group: WorkerGroup) -> dict[str, dict[str, str]]:
    """Pod requests/limits; quantities are strings, the GPU count too (``"1"``)."""
    resources = {
        "requests": {"cpu": group.cpu, "memory": group.memory},
        "limits": {"memory": group.memory},
    }
    if group.gpus:
        resources["limits"][NVIDIA_GPU] = str(group.gpus)
    return resources


def _container(
    config: KubeClusterConfig,
    name: str,
    *,
    image: str,
    args: list[str],
    resources: Mapping[str, Mapping[str, str]],
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Dask container: the settings from :func:`settings_env`, locked-down security."""
    env, env_from = settings_env(config)
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "env": env,
        "envFrom": env_from,
        "resources": resources,
        "securityContext": container_security_context(),
        "ports": ports,
    }


def _pod_spec(container: dict[str, Any], *, group: WorkerGroup | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        # Dask pods never call the Kubernetes API; the operator creates them.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [{**container, "volumeMounts": [{"name": "scratch", "mountPath": _SCRATCH}]}],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}}],
    }
    if group is not None and group.node_selector:
        spec["nodeSelector"] = dict(group.node_selector)
    if group is not None and group.tolerations:
        spec["tolerations"] = [dict(t) for t in group.tolerations]
    return spec


# --- the operator's resources ---------------------------------------------------------------


def build_worker_spec(
    config: KubeClusterConfig, group: WorkerGroup, *, replicas: int | None = None
) -> dict[str, Any]:
    """The ``worker`` part of a DaskCluster or DaskWorkerGroup."""
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
    container = _container(
        config,
        "worker",
        image=config.gpu_image if group.gpus else config.image,
        args=args,
        resources=worker_resources(group),
        ports=[{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
    )
    return {
        "replicas": group.minimum if replicas is None else replicas,
        "metadata": {"labels": {"cloudfree.io/worker-group": group.name}},
        "spec": _pod_spec(container, group=group),
    }


def build_scheduler_spec(config: KubeClusterConfig, cluster_name: str) -> dict[str, Any]:
    """The scheduler pod and its ClusterIP service; CPU and memory only, never a GPU."""
    container = _container(
        config,
        "scheduler",
        image=config.image,
        args=["dask", "scheduler", "--host", "0.0.0.0"],
        resources={
            "requests": {"cpu": config.scheduler_cpu, "memory": config.scheduler_memory},
            "limits": {"memory": config.scheduler_memory},
        },
        ports=[
            {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
        ],
    )
    container["readinessProbe"] = {
        "httpGet": {"port": "http-dashboard", "path": "/health"},
        "initialDelaySeconds": 0,
        "periodSeconds": 1,
        "timeoutSeconds": 300,
    }
    container["livenessProbe"] = {
        "httpGet": {"port": "http-dashboard", "path": "/health"},
        "initialDelaySeconds": 15,
        "periodSeconds": 20,
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


def _dask_resource(
    kind: str, name: str, config: KubeClusterConfig, spec: dict[str, Any]
) -> dict[str, Any]:
    """One operator resource, labelled as part of cloudfree, in the config's namespace."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "cloudfree"}}
    if config.namespace:
        metadata["namespace"] = config.namespace
    return {"apiVersion": DASK_API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def build_cluster_spec(config: KubeClusterConfig, name: str) -> dict[str, Any]:
    """The DaskCluster: scheduler plus the CPU loader group as the default worker group."""
    spec = {
        "idleTimeout": config.idle_timeout_s,
        "worker": build_worker_spec(config, config.loaders),
        "scheduler": build_scheduler_spec(config, name),
    }
    return _dask_resource("DaskCluster", name, config, spec)


def build_worker_group_spec(
    config: KubeClusterConfig, cluster_name: str, group: WorkerGroup
) -> dict[str, Any]:
    """An extra DaskWorkerGroup (the GPU workers) attached to the cluster."""
    spec = {"cluster": cluster_name, "worker": build_worker_spec(config, group)}
    return _dask_resource("DaskWorkerGroup", f"{cluster_name}-{group.name}", config, spec)


def build_autoscaler_spec(config: KubeClusterConfig, cluster_name: str) -> dict[str, Any]:
    """The operator's autoscaler; it scales the default (loader) group within its bounds."""
    spec = {
        "cluster": cluster_name,
        "minimum": config.loaders.minimum,
        "maximum": config.loaders.maximum,
    }
    return _dask_resource("DaskAutoscaler", cluster_name, config, spec)


def build_manifests(config: KubeClusterConfig, name: str) -> list[dict[str, Any]]:
    """Every resource :func:`cloudfree.cluster.make_cluster` creates, in creation order."""
    docs = [build_cluster_spec(config, name)]
    if config.gpu is not None:
        docs.append(build_worker_group_spec(config, name, config.gpu))
    docs.append(build_autoscaler_spec(config, name))
    return docs
