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


def _disaster_response_schema() -> dict:
    """The parameter schema `prefect deploy` registers for disaster-response: the schema
    of its entrypoint's flow (Prefect's own builder)."""
    from prefect.utilities.callables import parameter_schema

    from flows.aoi_mosaic import aoi_mosaic

    entry = {d["name"]: d for d in prefect_deployments()}["disaster-response"]
    assert entry["entrypoint"] == "flows/aoi_mosaic.py:aoi_mosaic"
    assert entry["enforce_parameter_schema"] is True
    return parameter_schema(aoi_mosaic.fn).model_dump_for_openapi()


def test_disaster_response_schema_takes_the_event_parameters() -> None:
    """Event mode through the deployment: Prefect's validation (what the server runs on a
    new flow run, since the deployment enforces its schema) accepts the issue's acceptance
    parameters and refuses an event date that is not a day before any run starts."""
    import pytest
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    schema = _disaster_response_schema()
    assert {"event_date", "event_name", "datetime", "tile_size_px"} <= set(schema["properties"])
    assert "required" not in schema or "datetime" not in schema["required"]
    accepted = {"bbox": [15.05, 46.00, 15.12, 46.03], "datetime": "2024-04-01/2024-10-28",
                "event_date": "2024-07-01", "event_name": "flood"}
    validate(accepted, schema, raise_on_error=True)
    validate({"bbox": [15.05, 46.00, 15.12, 46.03], "event_date": "2024-07-01"}, schema,
             raise_on_error=True)  # the window defaults around the event
    for bad in ("1 July 2024", "2024-7-1", 20240701):
        with pytest.raises(ValidationError, match="event_date"):
            validate({**accepted, "event_date": bad}, schema, raise_on_error=True)
    with pytest.raises(ValidationError, match="event_name"):
        validate({**accepted, "event_name": "x" * 201}, schema, raise_on_error=True)
