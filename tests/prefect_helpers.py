"""Reading what a flow run left in the Prefect API (task run states, artifacts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID


def eventually(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``check`` until it returns something truthy: the API persists states asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def task_runs(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)


def task_state_names(flow_run_id: UUID, expected: int) -> dict[str, list[str]]:
    """{task name: [state names]} once ``expected`` task runs are final in the API."""
    def read() -> dict[str, list[str]] | None:
        runs = task_runs(flow_run_id)
        if len(runs) < expected or any(r.state is None or not r.state.is_final() for r in runs):
            return None
        names: dict[str, list[str]] = {}
        for run in runs:
            names.setdefault(run.task_key.split("-")[0] if not run.name else
                             run.name.rsplit("-", 1)[0], []).append(run.state.name)
        return names

    result = eventually(read)
    assert result, f"task runs of {flow_run_id} did not all reach a final state"
    return result


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    import json

    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def artifacts(flow_run_id: UUID, key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=ArtifactSort.ID_DESC, limit=50)


def run_logs(flow_run_id: UUID) -> list[Any]:
    """Every log the API holds for a flow run (its own and its task runs')."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    with get_client(sync_client=True) as client:
        return client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC, limit=200)


def log_matching(flow_run_id: UUID, *needles: str, timeout: float = 120.0) -> Any:
    """The first log of the run whose message holds every needle, once the API has it (logs
    reach the API in batches, after the run)."""
    def find() -> Any:
        for record in run_logs(flow_run_id):
            if all(needle in record.message for needle in needles):
                return record
        return None

    return eventually(find, timeout)


def stats_artifact(flow_run_id: UUID) -> Any:
    """The run's flowcache statistics artifact (its key names the flow), once it is stored."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    def read() -> Any:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="flowcache-stats-")),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=5)
        return found[0] if len(found) == 1 else None

    artifact = eventually(read)
    assert artifact is not None, f"no single flowcache-stats artifact on run {flow_run_id}"
    return artifact
