"""flows/prefect.yaml: `prefect --no-prompt deploy` against the local Prefect server of the
stack, on a Kubernetes work pool created with the chart's base job template; the flow-run Job
the worker would submit validates strictly and carries nothing of this machine. (The
deployment definitions offline: ``tests/deploy/test_prefect_deploy.py``.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cloudfree.cluster.sizing import deployment_job_variables
from tests.deploy.k8s_validation import (
    PREFECT_FILE,
    ROOT,
    assert_restricted,
    prefect_deployments,
    render_chart,
    validate,
)

TRAIN_FLOW = ROOT / "flows" / "train.py"
POOL = "cloudfree-k8s"
# Queue priorities, as README.md ("Run on Kubernetes") creates them: lower runs first.
QUEUES = {"disaster-response": 1, "regional": 10, "training": 20}


def _chart_manifests() -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in render_chart()}


def _prefect(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.prefix) / "bin" / "prefect"), "--no-prompt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def deployed(stack, tmp_path_factory) -> dict[str, Any]:
    """The work pool (chart's job template), its queues and the deployments, registered."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {**os.environ, "PREFECT_API_URL": stack.prefect_url, "PREFECT_HOME": str(home)}
    manifests = _chart_manifests()
    template = manifests["ConfigMap/cf-cloudfree-job-template"]["data"][
        "prefect-base-job-template.json"
    ]
    template_file = home / "base-job-template.json"
    template_file.write_text(template)
    steps = [
        [
            "work-pool",
            "create",
            POOL,
            "--type",
            "kubernetes",
            "--overwrite",
            "--base-job-template",
            str(template_file),
        ]
    ]
    steps += [
        ["work-queue", "create", q, "--pool", POOL, "--priority", str(p)] for q, p in QUEUES.items()
    ]
    for step in steps:
        result = _prefect(step, env)
        assert result.returncode == 0 or "already exists" in result.stdout, result.stdout
    if TRAIN_FLOW.exists():
        deploy = ["deploy", "--all"]
    else:  # `--all` needs every entrypoint; train's flow comes with a later issue
        deploy = ["deploy"] + [
            a for d in prefect_deployments() if d["name"] != "train" for a in ("--name", d["name"])
        ]
    result = _prefect([*deploy, "--prefect-file", str(PREFECT_FILE.relative_to(ROOT))], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {
        "url": stack.prefect_url,
        "home": home,
        "manifests": manifests,
        "template": json.loads(template),
    }


async def _read(url: str) -> dict[str, Any]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=url) as client:
        deployments = {}
        for d in prefect_deployments():
            flow_name = d["entrypoint"].split(":")[1].replace("_", "-")
            try:
                deployments[d["name"]] = await client.read_deployment_by_name(
                    f"{flow_name}/{d['name']}"
                )
            except Exception:  # noqa: BLE001 - not deployed (train without its flow)
                continue
        queues = {q.name: q.priority for q in await client.read_work_queues(work_pool_name=POOL)}
        return {"deployments": deployments, "queues": queues}


def test_deploy_registers_the_deployments(deployed) -> None:
    state = asyncio.run(_read(deployed["url"]))
    deployments = state["deployments"]
    assert {"regional-mosaic", "disaster-response"} <= set(deployments)

    regional = deployments["regional-mosaic"]
    assert regional.entrypoint == "flows/regional_mosaic.py:regional_mosaic"
    assert [s.schedule.cron for s in regional.schedules] == ["0 3 1 * *"]
    assert regional.parameters["bbox"] and regional.parameters["datetime"]
    assert regional.work_queue_name == "regional"

    disaster = deployments["disaster-response"]
    assert disaster.entrypoint == "flows/aoi_mosaic.py:aoi_mosaic"
    assert disaster.schedules == []
    assert disaster.work_queue_name == "disaster-response"

    for name, deployment in deployments.items():
        assert deployment.work_pool_name == POOL
        sizing = deployment_job_variables(name)
        assert {k: deployment.job_variables[k] for k in sizing} == sizing
        # the flow runs start in the image's copy of the code, not in this checkout
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/cloudfree"}}
        ]
        stored = deployment.model_dump_json()
        assert str(ROOT) not in stored and str(deployed["home"]) not in stored


def test_disaster_response_queue_outranks_regional_work(deployed) -> None:
    queues = asyncio.run(_read(deployed["url"]))["queues"]
    assert queues["disaster-response"] < queues["regional"] < queues["training"]
    assert queues["disaster-response"] == min(queues.values())


def test_train_deployment(deployed) -> None:
    if not TRAIN_FLOW.exists():
        pytest.skip(
            "flows/train.py does not exist yet (training flow comes with a later "
            "issue); its deployment is in flows/prefect.yaml but cannot be registered"
        )
    train = asyncio.run(_read(deployed["url"]))["deployments"]["train"]
    assert train.job_variables["gpu_limit"] == "1"
    assert train.work_queue_name == "training"


# Renders the Job exactly as the in-cluster worker does: in a process whose environment is the
# worker container's (from the chart) plus only PATH, HOME and a local PREFECT_HOME.
_RENDER = textwrap.dedent("""
    import asyncio, json, sys
    from prefect.client.orchestration import PrefectClient
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def main(url, deployment_name, flow_run_id):
        async with PrefectClient(api=url) as client:
            deployment = await client.read_deployment_by_name(deployment_name)
            flow_run = await client.read_flow_run(flow_run_id)
            flow = await client.read_flow(deployment.flow_id)
            pool = await client.read_work_pool(deployment.work_pool_name)
            config = await KubernetesWorkerJobConfiguration.from_template_and_values(
                pool.base_job_template, deployment.job_variables, client=client)
            config.prepare_for_flow_run(flow_run, deployment, flow, pool, "cf-worker")
            print(json.dumps(config.job_manifest))

    asyncio.run(main(*sys.argv[1:]))
""")


async def _create_run(url: str, deployment_name: str) -> str:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=url) as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        run = await client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"datetime": "2024-06-01/2024-06-30", "bbox": [15.03, 46.01, 15.10, 46.05]},
        )
        return str(run.id)


@pytest.mark.parametrize(
    "deployment_name", ["regional-mosaic/regional-mosaic", "aoi-mosaic/disaster-response"]
)
def test_flow_run_job_is_strictly_valid_and_leaks_nothing(
    deployed, deployment_name, tmp_path
) -> None:
    flow_run_id = asyncio.run(_create_run(deployed["url"], deployment_name))
    worker = deployed["manifests"]["Deployment/cf-cloudfree-prefect-worker"]
    container = worker["spec"]["template"]["spec"]["containers"][0]
    pod_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    pod_env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] = "cloudfree"
    local_home = tmp_path / "local-prefect-home"
    env = {
        **pod_env,
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(local_home),
    }  # a local path the Job must not inherit
    result = subprocess.run(
        [sys.executable, "-c", _RENDER, deployed["url"], deployment_name, flow_run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(result.stdout.strip().splitlines()[-1])

    validate(job)  # strict, Kubernetes 1.30 and 1.33: no completions/parallelism in the pod
    assert_restricted(job)
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    pod = job["spec"]["template"]["spec"]
    assert "completions" not in pod and "parallelism" not in pod
    assert pod["serviceAccountName"] == "cf-cloudfree-flow-run"
    assert job["metadata"]["namespace"] == "cloudfree"

    (prefect_job,) = pod["containers"]
    job_env = {e["name"]: e.get("value") for e in prefect_job["env"]}
    assert job_env["PREFECT_HOME"] == "/tmp/prefect"
    assert job_env["PREFECT_API_URL"] == pod_env["PREFECT_API_URL"]
    assert job_env["PREFECT__FLOW_RUN_ID"] == flow_run_id
    # only Prefect's own variables; settings come from the ConfigMap and Secret
    assert all(name.startswith("PREFECT") for name in job_env), sorted(job_env)
    assert {"configMapRef": {"name": "cf-cloudfree-settings"}} in prefect_job["envFrom"]
    text = json.dumps(job)
    for local in (
        str(local_home),
        str(tmp_path),
        str(ROOT),
        "127.0.0.1",
        "localhost",
        deployed["url"],
        str(deployed["home"]),
    ):
        assert local not in text, f"local value {local!r} leaked into the Job"
    sizing = deployment_job_variables(deployment_name.split("/")[1])
    assert prefect_job["resources"]["requests"]["memory"] == sizing["memory_request"]


async def _create_event_runs(url: str) -> tuple[dict[str, Any], str]:
    """A disaster-response run with the event parameters (its stored parameters), and the
    server's refusal of one whose event date is not a day."""
    from prefect.client.orchestration import PrefectClient

    parameters = {"bbox": [15.05, 46.00, 15.12, 46.03], "datetime": "2024-04-01/2024-10-28",
                  "event_date": "2024-07-01", "event_name": "flood"}
    async with PrefectClient(api=url) as client:
        deployment = await client.read_deployment_by_name("aoi-mosaic/disaster-response")
        assert deployment.enforce_parameter_schema
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        try:
            await client.create_flow_run_from_deployment(
                deployment.id, parameters={**parameters, "event_date": "1 July 2024"})
        except Exception as exc:  # noqa: BLE001 - the server's 409, whatever the client wraps
            refusal = str(exc)
        else:
            refusal = ""
        return dict(run.parameters), refusal


def test_disaster_response_validates_the_event_parameters(deployed) -> None:
    """The registered deployment's schema, enforced by the server: the issue's acceptance
    parameters make a run; an event date that is not a day is refused before any run."""
    stored, refusal = asyncio.run(_create_event_runs(deployed["url"]))
    assert stored["event_date"] == "2024-07-01" and stored["event_name"] == "flood"
    assert "event_date" in refusal and "does not match" in refusal, refusal
