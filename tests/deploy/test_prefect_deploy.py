"""flows/prefect.yaml offline: the deployments' sizing is the sizing function's, and the
train deployment's entrypoint is the train flow. (Registered with a real Prefect server:
``tests/integration/test_prefect_deploy.py``.)"""

from __future__ import annotations

from cloudfree.cluster.sizing import deployment_job_variables
from tests.deploy.k8s_validation import prefect_deployments


def test_prefect_yaml_sizing_is_the_sizing_function() -> None:
    for deployment in prefect_deployments():
        variables = deployment["work_pool"]["job_variables"]
        sizing = deployment_job_variables(deployment["name"])
        assert {k: variables[k] for k in sizing} == sizing, deployment["name"]


def test_prefect_flow_matches_deployment_entrypoint():
    from prefect import Flow

    from flows import train as train_flow

    entry = {d["name"]: d["entrypoint"] for d in prefect_deployments()}["train"]
    assert entry == "flows/train.py:train"
    assert isinstance(train_flow.train, Flow) and train_flow.train_task.retries == 0
