"""cloudfree.cluster's Kubernetes specs: the DaskCluster, worker groups and autoscaler it
builds validate against the dask-kubernetes CRDs, GPUs only where they belong, settings
from the ConfigMap and Secret only. (The cluster itself: ``tests/unit/test_cluster.py``.)"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from cloudfree.cluster import (
    GPU_RESOURCE,
    NVIDIA_GPU,
    KubeClusterConfig,
    build_manifests,
)
from cloudfree.errors import InvalidParameterError
from tests.deploy.k8s_validation import quantities, validate, validate_all


def _by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def test_kubernetes_specs_validate_against_the_operator_crds() -> None:
    docs = validate_all(build_manifests(KubeClusterConfig(namespace="cloudfree"), "cf-test"))
    assert [d["kind"] for d in docs] == ["DaskCluster", "DaskWorkerGroup", "DaskAutoscaler"]
    kinds = _by_kind(docs)
    assert kinds["DaskWorkerGroup"]["spec"]["cluster"] == "cf-test"
    assert kinds["DaskAutoscaler"]["spec"] == {"cluster": "cf-test", "minimum": 1, "maximum": 8}
    # every quantity is a string, GPU counts included
    assert all(isinstance(v, str) for doc in docs for _, v in quantities(doc))


def test_scheduler_has_no_gpu_and_gpu_workers_carry_the_resource() -> None:
    kinds = _by_kind(build_manifests(KubeClusterConfig(), "cf-test"))
    scheduler = kinds["DaskCluster"]["spec"]["scheduler"]["spec"]
    loaders = kinds["DaskCluster"]["spec"]["worker"]["spec"]
    gpu = kinds["DaskWorkerGroup"]["spec"]["worker"]["spec"]

    assert not [k for k, _ in quantities(scheduler) if "gpu" in k]
    assert not [k for k, _ in quantities(loaders) if "gpu" in k]
    assert "nodeSelector" not in scheduler and "tolerations" not in scheduler

    container = gpu["containers"][0]
    assert container["resources"]["limits"][NVIDIA_GPU] == "1"
    args = container["args"]
    assert args[args.index("--resources") + 1] == f"{GPU_RESOURCE}=1"
    assert container["image"].endswith("-gpu")
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": NVIDIA_GPU, "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert "--resources" not in loaders["containers"][0]["args"]


def test_an_integer_gpu_limit_is_rejected_by_the_crd() -> None:
    worker_group = _by_kind(build_manifests(KubeClusterConfig(), "cf-test"))["DaskWorkerGroup"]
    bad = copy.deepcopy(worker_group)
    bad["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"][NVIDIA_GPU] = 1
    with pytest.raises(Exception, match="is not of type 'string'"):
        validate(bad)
    unknown = copy.deepcopy(worker_group)
    unknown["spec"]["worker"]["spec"]["completions"] = 1
    with pytest.raises(Exception, match="completions"):
        validate(unknown)


def test_settings_reach_the_pods_from_the_configmap_and_secret_only() -> None:
    config = KubeClusterConfig(settings_config_map="site-settings", s3_secret="site-s3")
    for doc in build_manifests(config, "cf-test")[:2]:
        for pod in (doc["spec"].get("scheduler", {}).get("spec"), doc["spec"]["worker"]["spec"]):
            if pod is None:
                continue
            container = pod["containers"][0]
            assert container["envFrom"] == [
                {"configMapRef": {"name": "site-settings"}},
                {"secretRef": {"name": "site-s3"}},
            ]
            # no literal values: GDAL/AWS/CLOUDFREE settings are never baked into the spec
            assert all("valueFrom" in e and "value" not in e for e in container["env"])
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
            assert refs == {"site-s3"}


def test_cpu_only_cluster_has_no_gpu_group() -> None:
    docs = validate_all(build_manifests(replace(KubeClusterConfig(), gpu=None), "cf-cpu"))
    assert "DaskWorkerGroup" not in _by_kind(docs)
    assert not [k for doc in docs for k, _ in quantities(doc) if "gpu" in k]


def test_config_from_env_sets_images_and_adaptive_bounds_per_group() -> None:
    config = KubeClusterConfig.from_env(
        {
            "CLOUDFREE_DASK_IMAGE": "reg/cloudfree:1-cpu",
            "CLOUDFREE_DASK_GPU_IMAGE": "reg/cloudfree:1-gpu",
            "CLOUDFREE_DASK_LOADERS_MIN": "2",
            "CLOUDFREE_DASK_LOADERS_MAX": "12",
            "CLOUDFREE_DASK_GPU_MIN": "1",
            "CLOUDFREE_DASK_GPU_MAX": "3",
            "CLOUDFREE_DASK_NAMESPACE": "science",
        }
    )
    assert (config.loaders.minimum, config.loaders.maximum) == (2, 12)
    assert config.gpu is not None and (config.gpu.minimum, config.gpu.maximum) == (1, 3)
    assert config.namespace == "science"
    kinds = _by_kind(validate_all(build_manifests(config, "cf-env")))
    assert kinds["DaskWorkerGroup"]["spec"]["worker"]["replicas"] == 1
    assert kinds["DaskAutoscaler"]["spec"]["maximum"] == 12
    assert KubeClusterConfig.from_env({"CLOUDFREE_DASK_GPU_MAX": "0"}).gpu is None
    with pytest.raises(InvalidParameterError, match="minimum <= maximum"):
        KubeClusterConfig.from_env(
            {"CLOUDFREE_DASK_LOADERS_MIN": "5", "CLOUDFREE_DASK_LOADERS_MAX": "2"}
        )
