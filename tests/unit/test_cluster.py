"""cloudfree.cluster: the local cluster, the Kubernetes specs (validated against the
dask-kubernetes CRDs), GPU placement and the GPU group's adaptivity."""

from __future__ import annotations

import copy
import socket
import time
from dataclasses import replace

import dask
import pytest
from distributed import Client, LocalCluster
from k8s_validation import quantities, validate, validate_all

from cloudfree.cluster import (
    GPU_RESOURCE,
    NVIDIA_GPU,
    GpuGroupScaler,
    KubeClusterConfig,
    WorkerGroup,
    build_manifests,
    default_gpu_group,
    describe_kube_target,
    desired_workers,
    gpu_resources,
    make_cluster,
)
from cloudfree.errors import InvalidParameterError, KubernetesUnreachableError


def _by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def test_local_cluster_is_still_the_default() -> None:
    with make_cluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        assert isinstance(cluster, LocalCluster)
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'local' or 'kubernetes'"):
        make_cluster("yarn")  # type: ignore[arg-type]


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_cluster_names_the_kubeconfig_and_context(tmp_path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {{server: "https://127.0.0.1:{_free_port()}"}}
users:
- name: someone
  user: {{token: not-a-real-token}}
contexts:
- name: prod-eu
  context: {{cluster: nowhere, user: someone, namespace: cloudfree}}
current-context: prod-eu
""")
    start = time.monotonic()
    with pytest.raises(KubernetesUnreachableError) as err:
        make_cluster("kubernetes", kubeconfig=kubeconfig, context="prod-eu")
    assert str(kubeconfig) in str(err.value)
    assert "'prod-eu'" in str(err.value)
    assert time.monotonic() - start < 30

    with pytest.raises(KubernetesUnreachableError, match="No such context staging"):
        make_cluster("kubernetes", kubeconfig=kubeconfig, context="staging")

    missing = tmp_path / "missing-kubeconfig"
    with pytest.raises(KubernetesUnreachableError) as err:
        make_cluster("kubernetes", kubeconfig=missing)
    assert str(missing) in str(err.value) and "service account" in str(err.value)


def test_describe_kube_target_follows_kubeconfig_resolution(tmp_path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("{}")
    assert describe_kube_target(None, None, {"KUBECONFIG": f"{a}:{b}"}) == (
        f"kubeconfig from $KUBECONFIG {a}:{b} (its current-context)"
    )
    assert "context 'dev'" in describe_kube_target(a, "dev", {})
    assert "in-cluster service account" in describe_kube_target(b, None, {})


def test_gpu_resources_places_tasks_on_gpu_workers() -> None:
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cpu_cluster,
        Client(cpu_cluster) as client,
    ):
        assert gpu_resources(client) is None

    with (
        LocalCluster(
            n_workers=1, processes=False, dashboard_address=None, resources={GPU_RESOURCE: 1}
        ) as gpu_cluster,
        Client(gpu_cluster) as client,
    ):
        resources = gpu_resources(client)
        assert resources == {GPU_RESOURCE: 1}
        with dask.annotate(resources=resources):
            total = dask.delayed(sum)([1, 2, 3])
        assert client.compute(total).result(timeout=30) == 6


def test_desired_workers_stays_in_bounds_and_shrinks_gently() -> None:
    group = WorkerGroup(name="gpu", minimum=1, maximum=4, threads=2, gpus=1)
    assert desired_workers(0, current=0, group=group) == 1
    assert desired_workers(5, current=1, group=group) == 3
    assert desired_workers(100, current=1, group=group) == 4
    assert desired_workers(0, current=4, group=group) == 3


def test_gpu_group_scaler_follows_the_gpu_demand() -> None:
    group = replace(default_gpu_group(), minimum=0, maximum=2)
    applied: list[int] = []
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        # no worker has a GPU: the tasks wait for one (state no-worker)
        futures = [
            client.submit(pow, i, 2, resources={GPU_RESOURCE: 1}, pure=False) for i in range(3)
        ]
        scaler = GpuGroupScaler(client, group, applied.append, current=0)
        deadline = time.monotonic() + 10
        while scaler.step() != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert applied == [2]
        client.cancel(futures)
        deadline = time.monotonic() + 10
        while scaler.current and time.monotonic() < deadline:
            scaler.step()
        assert applied == [2, 1, 0]
