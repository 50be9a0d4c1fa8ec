"""charts/cloudfree: rendered offline with Helm's library (helm-python-sdk) for the default
values and every ci/*-values.yaml, validated strictly (Kubernetes 1.30 and 1.33, Dask CRDs),
linted, and its values schema rejects bad values."""

from __future__ import annotations

import json
import re

import helm_python as helm
import pytest
import yaml

from cloudfree.storage import DEFAULT_GDAL_ENV
from tests.deploy.k8s_validation import (
    CHART,
    ROOT,
    assert_restricted,
    load_all,
    quantities,
    validate_all,
)
from tests.deploy.k8s_validation import render_chart as render

CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
CASES = [pytest.param(None, id="default")] + [pytest.param(p, id=p.stem) for p in CI_VALUES]


def _values(path) -> dict:
    return yaml.safe_load(path.read_text()) if path else {}


def test_ci_values_exist() -> None:
    assert len(CI_VALUES) >= 3


@pytest.mark.parametrize("values_file", CASES)
def test_chart_renders_and_validates_strictly(values_file) -> None:
    docs = validate_all(render(_values(values_file)))
    for doc in docs:
        assert_restricted(doc)
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        assert all(isinstance(v, str) for _, v in quantities(doc)), doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cloudfree"
    assert not [d for d in docs if d["kind"] in ("Secret", "ClusterRole", "ClusterRoleBinding")]


@pytest.mark.parametrize("kube_version", ["v1.30.0", "v1.33.0"])
@pytest.mark.parametrize("values_file", CASES)
def test_helm_lint_passes(values_file, kube_version: str) -> None:
    report = helm.lint(CHART, _values(values_file), strict=True, kube_version=kube_version)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; the only info is "icon is recommended"
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_a_broken_chart(tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: Broken_Name\nversion: not-semver\n")
    report = helm.lint(broken, strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 3}, "replicaCount"),
        ({"dask": {"gpu": {"gpus": "1"}}}, "gpus"),
        ({"dask": {"gpu": {"tolerations": [{"key": "a", "operator": "Maybe"}]}}}, "operator"),
        ({"dask": {"loaders": {"memory": "lots"}}}, "memory"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"gdal": {"GDAL_CACHE_MAX": "512"}}, "GDAL_CACHE_MAX"),
        ({"s3": {"existingSecret": ""}}, "existingSecret"),
        ({"stacApi": {"enabled": True}}, "databaseSecret"),
        ({"settings": {"bucket": "ab"}}, "bucket"),
        ({"stacWriteToken": {"existingSecret": ""}}, "existingSecret"),
        ({"stacApi": {"transactions": True}}, "transactions"),  # the readers' API never writes
        ({"settings": {"stacWriteUrl": "stac-writer:8080"}}, "stacWriteUrl"),
    ],
)
def test_schema_rejects_invalid_values(values: dict, message: str) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError, match=message):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmError):
            chart.render(values, name="cf", namespace="cloudfree")


def test_adaptive_bounds_must_be_ordered() -> None:
    with pytest.raises(helm.HelmError, match=r"dask.gpu.minimum \(3\) must not exceed"):
        render({"dask": {"gpu": {"minimum": 3, "maximum": 1}}})


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node, path="$"):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(schema)
    assert set(schema["properties"]) == set(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    in_list_item_indent: int | None = None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("- "):
            in_list_item_indent = indent
            continue
        if in_list_item_indent is not None and indent > in_list_item_indent:
            continue  # keys inside a list item (an example value)
        in_list_item_indent = None
        if not re.match(r"^[\w./-]+:", stripped):
            continue
        previous = lines[number - 2].strip() if number > 1 else ""
        assert previous.startswith("#") or " # " in line, f"values.yaml:{number}: {stripped}"


def test_gpu_values_render_gpu_workers_and_a_gpu_free_scheduler() -> None:
    docs = render(_values(CHART / "ci/gpu-values.yaml"))
    (cluster,) = [d for d in docs if d["kind"] == "DaskCluster"]
    (group,) = [d for d in docs if d["kind"] == "DaskWorkerGroup"]
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    scheduler = cluster["spec"]["scheduler"]["spec"]
    assert not [k for k, _ in quantities(scheduler) if "gpu" in k]
    container = group["spec"]["worker"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["args"][container["args"].index("--resources") + 1] == "GPU=2"
    assert container["image"] == "platform-team/cloudfree:0.1.0-gpu"
    assert group["spec"]["worker"]["replicas"] == 1
    assert group["spec"]["worker"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_settings_and_job_template_follow_the_release() -> None:
    docs = render({}, namespace="science")
    by_name = {d["metadata"]["name"]: d for d in docs}
    settings = by_name["cf-cloudfree-settings"]["data"]
    assert {k: settings[k] for k in DEFAULT_GDAL_ENV} == {
        k: str(v) for k, v in DEFAULT_GDAL_ENV.items()
    }
    assert settings["AWS_S3_ENDPOINT"] == "object-store.storage.svc.cluster.local:9000"
    assert settings["AWS_HTTPS"] == "NO"
    template = json.loads(
        by_name["cf-cloudfree-job-template"]["data"]["prefect-base-job-template.json"]
    )
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert defaults["namespace"] == "science"
    assert defaults["service_account_name"] == "cf-cloudfree-flow-run"
    assert defaults["settings_config_map"] == "cf-cloudfree-settings"
    assert defaults["image"] == "cloudfree:0.1.0-cpu"
    assert (
        template["job_configuration"]
        == json.loads((CHART / "files/prefect-base-job-template.json").read_text())[
            "job_configuration"
        ]
    )


def _by_component(docs: list[dict], kind: str, component: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind
              and d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    return doc


def test_stac_api_is_optional_and_wired_to_the_settings() -> None:
    default = render()
    assert not [d for d in default if d["kind"] == "Service"]
    default_settings = next(d for d in default if d["metadata"]["name"].endswith("-settings"))
    # an external API: the flows publish to the readers' URL unless settings.stacWriteUrl says
    assert (default_settings["data"]["CLOUDFREE_STAC_WRITE_URL"]
            == default_settings["data"]["CLOUDFREE_STAC_API_URL"])
    docs = render(_values(CHART / "ci/stac-api-values.yaml"))
    reader = _by_component(docs, "Service", "stac-api")["metadata"]["name"]
    writer = _by_component(docs, "Service", "stac-writer")["metadata"]["name"]
    settings = next(d for d in docs if d["metadata"]["name"].endswith("-settings"))["data"]
    assert settings["CLOUDFREE_STAC_API_URL"] == f"http://{reader}:8080"
    assert settings["CLOUDFREE_STAC_WRITE_URL"] == f"http://{writer}:8080"
    assert "CLOUDFREE_STAC_WRITE_TOKEN" not in settings  # a secret: from the Secret only
    assert settings["AWS_HTTPS"] == "YES"
    for component in ("stac-api", "stac-writer"):
        api = _by_component(docs, "Deployment", component)
        container = api["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "pgstac-db"}}]


def test_readers_api_has_no_transactions_and_the_writer_takes_its_token_from_a_secret() -> None:
    docs = render(_values(CHART / "ci/stac-api-values.yaml") | {
        "stacWriteToken": {"existingSecret": "publisher-token"}})
    reader = _by_component(docs, "Deployment", "stac-api")["spec"]["template"]["spec"]
    (reader_container,) = reader["containers"]
    reader_env = {e["name"]: e for e in reader_container["env"]}
    assert reader_env["ENABLE_TRANSACTIONS_EXTENSIONS"]["value"] == "false"
    assert "STAC_WRITE_TOKEN" not in reader_env

    writer = _by_component(docs, "Deployment", "stac-writer")["spec"]["template"]["spec"]
    (container,) = writer["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["ENABLE_TRANSACTIONS_EXTENSIONS"]["value"] == "true"
    assert env["STAC_WRITE_TOKEN"] == {"name": "STAC_WRITE_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "publisher-token", "key": "CLOUDFREE_STAC_WRITE_TOKEN"}}}  # no optional: required
    assert container["command"][:3] == ["uvicorn", "stac_writer:create_app", "--factory"]
    app_dir = container["command"][container["command"].index("--app-dir") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == app_dir)
    volume = next(v for v in writer["volumes"] if v["name"] == mount["name"])
    module = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == volume["configMap"]["name"])
    # the mounted app is cloudfree's own writer, byte for byte
    assert module["data"]["stac_writer.py"] == (ROOT / "cloudfree/stac_writer.py").read_text()
    assert (CHART / "files/stac_writer.py").resolve() == ROOT / "cloudfree/stac_writer.py"
    assert writer["automountServiceAccountToken"] is False

    # flow runs get the token by envFrom of the same Secret (optional for external APIs)
    template = json.loads(next(d for d in docs if d["metadata"]["name"].endswith("-job-template"))
                          ["data"]["prefect-base-job-template.json"])
    env_from = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
        "containers"][0]["envFrom"]
    assert {"secretRef": {"name": "{{ stac_write_secret }}", "optional": True}} in env_from
    assert template["variables"]["properties"]["stac_write_secret"]["default"] == "publisher-token"


def test_the_writer_network_policy_admits_only_flow_pods() -> None:
    from cloudfree.cluster import KubeClusterConfig, build_manifests

    docs = render(_values(CHART / "ci/stac-api-values.yaml"))
    policies = {p["metadata"]["name"]: p["spec"] for p in docs if p["kind"] == "NetworkPolicy"}
    writer_pods = _by_component(docs, "Deployment", "stac-writer")["spec"]["template"]
    labels = writer_pods["metadata"]["labels"]

    def selects(selector: dict, pod_labels: dict) -> bool:
        match = all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
        for expr in selector.get("matchExpressions", []):
            assert expr["operator"] == "Exists"
            match = match and expr["key"] in pod_labels
        return match

    selecting = {name for name, spec in policies.items() if selects(spec["podSelector"], labels)}
    assert selecting == {"cf-cloudfree-default-deny", "cf-cloudfree-stac-writer"}
    (rule,) = policies["cf-cloudfree-stac-writer"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # this namespace only

    def admitted(pod_labels: dict) -> bool:
        return any(selects(peer["podSelector"], pod_labels) for peer in rule["from"])

    # the pods that publish: the work pool's flow-run Jobs and the Dask workers they create
    flow_run = json.loads((CHART / "files/prefect-base-job-template.json").read_text())[
        "job_configuration"]["job_manifest"]["spec"]["template"]["metadata"]["labels"]
    worker = build_manifests(KubeClusterConfig(), "run-1")[0]["spec"]["worker"]["metadata"][
        "labels"]
    assert admitted(flow_run) and admitted(worker | {"dask.org/component": "worker"})
    # and not the others: the readers' API, the Prefect worker, a Dask scheduler, any pod
    others = [_by_component(docs, "Deployment", c)["spec"]["template"]["metadata"]["labels"]
              for c in ("stac-api", "prefect-worker")]
    others += [{"dask.org/component": "scheduler", "dask.org/cluster-name": "run-1"}, {}]
    assert not [o for o in others if admitted(o)]


def test_chart_documents_the_operator_prerequisite() -> None:
    readme = (CHART / "README.md").read_text()
    assert "dask-kubernetes" in readme and "operator" in readme
    with helm.Chart.load(CHART) as chart:
        assert (
            "dask-kubernetes operator"
            in chart.render({}, name="cf", namespace="cloudfree")["cloudfree/templates/NOTES.txt"]
        )


def test_operator_chart_from_the_wheel_renders_as_documented() -> None:
    """README.md ("Run on Kubernetes") installs the operator from the chart inside the dask-kubernetes wheel."""
    from importlib import resources

    operator_chart = resources.files("dask_kubernetes").joinpath(
        "operator/deployment/helm/dask-kubernetes-operator"
    )
    with helm.Chart.load(str(operator_chart)) as chart:
        manifests = chart.render(
            {"image": {"tag": "2026.3.0"}}, name="dask-operator", namespace="dask-operator"
        )
    docs = [d for path, text in manifests.items() if path.endswith(".yaml") for d in load_all(text)]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":2026.3.0")
    assert "image.tag=2026.3.0" in (ROOT / "README.md").read_text()
