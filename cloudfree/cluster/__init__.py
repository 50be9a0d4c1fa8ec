"""Dask clusters: a LocalCluster by default, or a dask-kubernetes operator KubeCluster with a
CPU loader group and a GPU generator group.

- :mod:`~cloudfree.cluster.specs`: the cluster's shape and pure ``build_*_spec(...) -> dict``
  functions, validated offline against the operator's CRDs.
- :mod:`~cloudfree.cluster.sizing`: pure sizing rules (flow-run pods, worker counts).
- :mod:`~cloudfree.cluster._runtime`: the side effects; only :func:`make_cluster` talks to a
  cluster.
"""

from cloudfree.cluster._runtime import (
    ClusterKind,
    GpuGroupScaler,
    describe_kube_target,
    gpu_demand,
    gpu_resources,
    make_cluster,
)
from cloudfree.cluster.sizing import desired_workers
from cloudfree.cluster.specs import (
    DASK_API_VERSION,
    GPU_RESOURCE,
    NVIDIA_GPU,
    S3_SECRET_KEYS,
    KubeClusterConfig,
    WorkerGroup,
    build_autoscaler_spec,
    build_cluster_spec,
    build_manifests,
    build_scheduler_spec,
    build_worker_group_spec,
    build_worker_spec,
    container_security_context,
    default_gpu_group,
    default_loader_group,
    pod_security_context,
    settings_env,
    worker_resources,
)

__all__ = (
    # the cluster's shape
    "KubeClusterConfig",
    "WorkerGroup",
    "default_loader_group",
    "default_gpu_group",
    "GPU_RESOURCE",
    "NVIDIA_GPU",
    "S3_SECRET_KEYS",
    "DASK_API_VERSION",
    # pure spec builders
    "build_manifests",
    "build_cluster_spec",
    "build_worker_group_spec",
    "build_autoscaler_spec",
    "build_scheduler_spec",
    "build_worker_spec",
    "worker_resources",
    "settings_env",
    "pod_security_context",
    "container_security_context",
    # sizing rules
    "desired_workers",
    # the side effects
    "ClusterKind",
    "make_cluster",
    "describe_kube_target",
    "gpu_resources",
    "gpu_demand",
    "GpuGroupScaler",
)
