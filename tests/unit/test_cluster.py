"""cloudfree.cluster: the local cluster, the Kubernetes target's errors, GPU placement and
the GPU group's adaptivity. (The Kubernetes specs: ``tests/deploy/test_cluster.py``.)"""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import dask
import pytest
from distributed import Client, LocalCluster

from cloudfree.cluster import (
    GPU_RESOURCE,
    GpuGroupScaler,
    WorkerGroup,
    default_gpu_group,
    describe_kube_target,
    desired_workers,
    gpu_resources,
    make_cluster,
)
from cloudfree.errors import InvalidParameterError, KubernetesUnreachableError


def test_local_cluster_is_still_the_default() -> None:
    with make_cluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        assert isinstance(cluster, LocalCluster)
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'local' or 'kubernetes'"):
        make_cluster("yarn")  # type: ignore[arg-type]


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
