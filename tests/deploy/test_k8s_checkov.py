"""checkov over every rendered manifest (chart with each values file, Kustomize overlays and the
flow-run Jobs), run once; every finding must be one README.md ("Run on Kubernetes") lists with its reason."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.deploy.k8s_validation import (
    CHART,
    ROOT,
    kubectl,
    kustomize,
    prefect_deployments,
    render_chart,
)

CHECKOV = Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov"

pytestmark = [
    pytest.mark.skipif(
        not CHECKOV.exists(), reason=f"checkov is not installed at {CHECKOV}; run scripts/setup.sh"
    ),
    pytest.mark.skipif(kubectl() is None, reason="kubectl (client) not on PATH"),
]


def _flow_run_jobs() -> list[dict]:
    """The Jobs the worker makes for each deployment, rendered offline (no API is called)."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads((CHART / "files/prefect-base-job-template.json").read_text())
    deployments = prefect_deployments()

    async def render(job_variables: dict) -> dict:
        client = PrefectClient(api="http://127.0.0.1:9/api")  # never contacted
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(
            template, job_variables, client=client
        )
        config.prepare_for_flow_run(
            FlowRun(id=uuid.uuid4(), name="checkov-run", flow_id=uuid.uuid4())
        )
        return config.job_manifest

    jobs = []
    for d in deployments:
        job = asyncio.run(render(d["work_pool"]["job_variables"]))
        job["metadata"]["name"] = f"flow-run-{d['name']}"
        jobs.append(job)
    return jobs


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("manifests")
    for values_file in [None, *sorted(CHART.glob("ci/*-values.yaml"))]:
        values = yaml.safe_load(values_file.read_text()) if values_file else {}
        docs = render_chart(values)
        name = values_file.stem if values_file else "default"
        (out / f"chart-{name}.yaml").write_text(yaml.safe_dump_all(docs))
    for target in ("base", "overlays/dev", "overlays/gpu"):
        docs = kustomize(ROOT / "k8s" / target)
        (out / f"kustomize-{target.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(docs))
    (out / "flow-run-jobs.yaml").write_text(yaml.safe_dump_all(_flow_run_jobs()))
    result = subprocess.run(
        [str(CHECKOV), "-d", str(out), "--framework", "kubernetes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def _documented_exceptions() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| checkov check |") :]
    return set(re.findall(r"^\| (CKV_K8S_\d+) ", table, re.MULTILINE))


def test_checkov_scanned_every_rendered_resource(checkov_report) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 60
    assert summary["passed"] > summary["failed"]
    scanned = {c["resource"].split(".")[0] for c in checkov_report["results"]["passed_checks"]}
    assert {"Deployment", "Job", "Role", "ServiceAccount"} <= scanned


def test_checkov_findings_are_fixed_or_documented(checkov_report) -> None:
    failed = {}
    for check in checkov_report["results"]["failed_checks"]:
        failed.setdefault(check["check_id"], set()).add(check["resource"])
    undocumented = {
        k: sorted(v)[:5] for k, v in failed.items() if k not in _documented_exceptions()
    }
    assert not undocumented, f"checkov findings not listed in README.md ('Run on Kubernetes'): {undocumented}"
    # privileged, root, host namespaces, writable root filesystems, capabilities: all fixed
    for fixed in (
        "CKV_K8S_16",
        "CKV_K8S_20",
        "CKV_K8S_22",
        "CKV_K8S_23",
        "CKV_K8S_28",
        "CKV_K8S_37",
        "CKV_K8S_17",
        "CKV_K8S_19",
        "CKV_K8S_21",
    ):
        assert fixed not in failed, fixed
