"""The progress artifact of a flow run, on the stack's real Prefect server."""

from __future__ import annotations

from prefect import flow

from cloudfree import progress


@flow(name="cloudfree-progress-test")
def _tiles(n: int) -> str:
    with progress.listen(None, n) as shown:
        for i in range(n):
            progress.report(f"t{i}", "compute", 1, 1)
            shown.tile_done({"tile_id": f"t{i}", "status": "failed" if i == 1 else "published"})
    return str(shown._artifact_id)


def test_a_flow_run_keeps_a_progress_artifact(stack):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = _tiles(3, return_state=True)
    artifact_id = state.result()
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    [artifact] = [a for a in artifacts if a.type == "progress"]
    assert str(artifact.id) == artifact_id
    assert float(artifact.data) == 100.0  # the last update: all 3 done
    assert artifact.description == "3 of 3 tiles done, 1 failed"
