"""k8s/: the Kustomize base and overlays render with `kubectl kustomize` and validate offline
(strict, Kubernetes 1.30 and 1.33; Dask resources against the operator's CRDs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from cloudfree.cluster import KubeClusterConfig, build_manifests
from cloudfree.storage import DEFAULT_GDAL_ENV
from tests.deploy.k8s_validation import (
    ROOT,
    assert_restricted,
    kubectl,
    kustomize,
    quantities,
    validate_all,
)

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl (client) not on PATH")

TARGETS = ["base", "overlays/dev", "overlays/gpu"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: kustomize(ROOT / "k8s" / target) for target in TARGETS}


def _kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_output_validates_strictly(rendered, target: str) -> None:
    docs = validate_all(rendered[target])
    for doc in docs:
        assert_restricted(doc)
        assert all(isinstance(v, str) for _, v in quantities(doc)), doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "cloudfree"
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "DaskCluster",
        "DaskAutoscaler",
        "NetworkPolicy",
    } <= kinds


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_values_and_no_cluster_wide_rights(rendered, target: str) -> None:
    docs = rendered[target]
    assert not _kind(docs, "Secret"), "secrets are created at install time, never committed"
    assert not _kind(docs, "ClusterRole") and not _kind(docs, "ClusterRoleBinding")
    for role in _kind(docs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "secrets" not in rule["resources"]
            assert not {"update", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_rbac_covers_exactly_what_worker_and_kubecluster_touch(rendered) -> None:
    roles = {r["metadata"]["name"]: r["rules"] for r in _kind(rendered["base"], "Role")}
    worker = {
        (g, res): set(rule["verbs"])
        for rule in roles["cloudfree-prefect-worker"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    assert worker[("batch", "jobs")] == {"get", "list", "watch", "create", "delete"}
    assert worker[("", "pods/log")] == {"get"}
    flow_run = {
        (g, res): set(rule["verbs"])
        for rule in roles["cloudfree-flow-run"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    for resource in ("daskclusters", "daskworkergroups", "daskautoscalers"):
        assert {"create", "patch", "delete"} <= flow_run[("kubernetes.dask.org", resource)]
    assert flow_run[("", "services")] == {"get", "list", "watch"}
    assert ("batch", "jobs") not in flow_run
    bindings = {b["metadata"]["name"]: b for b in _kind(rendered["base"], "RoleBinding")}
    for name, binding in bindings.items():
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": "cloudfree"}
        ]


def test_namespace_enforces_restricted_pod_security(rendered) -> None:
    (namespace,) = _kind(rendered["base"], "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_example_daskcluster_is_what_cluster_py_builds() -> None:
    committed = [
        d for d in yaml.safe_load_all((ROOT / "k8s/base/daskcluster.yaml").read_text()) if d
    ]
    assert committed == build_manifests(replace(KubeClusterConfig(), idle_timeout_s=0), "cloudfree")


def test_settings_configmap_carries_the_gdal_options(rendered) -> None:
    for docs in rendered.values():
        (settings,) = [
            d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"] == "cloudfree-settings"
        ]
        data = settings["data"]
        assert {k: data[k] for k in DEFAULT_GDAL_ENV} == {
            k: str(v) for k, v in DEFAULT_GDAL_ENV.items()
        }
        credentials = {
            "CLOUDFREE_S3_ACCESS_KEY_ID",
            "CLOUDFREE_S3_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "PREFECT_API_KEY",
        }
        assert not credentials & set(data)
        config = KubeClusterConfig.from_env(data)
        assert config.image == data["CLOUDFREE_DASK_IMAGE"]


def test_worker_mounts_the_job_template_of_the_chart(rendered) -> None:
    base_json = ROOT / "k8s/base/prefect-base-job-template.json"
    chart_json = ROOT / "charts/cloudfree/files/prefect-base-job-template.json"
    assert json.loads(base_json.read_text()) == json.loads(chart_json.read_text())
    (template_cm,) = [
        d
        for d in _kind(rendered["base"], "ConfigMap")
        if d["metadata"]["name"].startswith("cloudfree-prefect-job-template-")
    ]
    assert json.loads(template_cm["data"]["prefect-base-job-template.json"]) == json.loads(
        base_json.read_text()
    )
    (worker,) = _kind(rendered["base"], "Deployment")
    pod = worker["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # kustomize rewrote the reference to the hashed ConfigMap name
    assert volumes["job-template"]["configMap"]["name"] == template_cm["metadata"]["name"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--pool") + 1] == "cloudfree-k8s"
    assert args[args.index("--type") + 1] == "kubernetes"


def test_overlays_shape_the_gpu_group(rendered) -> None:
    dev, gpu = rendered["overlays/dev"], rendered["overlays/gpu"]
    assert not _kind(dev, "DaskWorkerGroup")
    assert not [k for doc in dev for k, _ in quantities(doc) if "gpu" in k]
    dev_settings = next(
        d for d in _kind(dev, "ConfigMap") if d["metadata"]["name"] == "cloudfree-settings"
    )
    assert KubeClusterConfig.from_env(dev_settings["data"]).gpu is None
    (gpu_group,) = _kind(gpu, "DaskWorkerGroup")
    assert gpu_group["spec"]["worker"]["replicas"] == 1
    limits = gpu_group["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_network_policies_deny_ingress_by_default(rendered) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _kind(rendered["base"], "NetworkPolicy")}
    deny = policies["cloudfree-default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    operator = policies["cloudfree-allow-dask-operator"]
    assert {p["port"] for p in operator["ingress"][0]["ports"]} == {8786, 8787}


def test_kustomization_files_are_listed(rendered) -> None:
    base = yaml.safe_load((ROOT / "k8s/base/kustomization.yaml").read_text())
    on_disk = {p.name for p in (ROOT / "k8s/base").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(base["resources"]) == on_disk
    assert Path(ROOT / "k8s/overlays/dev/kustomization.yaml").exists()
