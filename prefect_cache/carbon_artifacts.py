"""What the carbon-aware runner shows in Prefect: held runs as Scheduled, and the end report.

Prefect creates a task run when its engine starts it, so a submission the runner holds for hours
would be invisible meanwhile. The runner therefore creates a *placeholder* task run in state
Scheduled at the planned start (same task, name suffixed ``(deferred)``); when the submission
is released the placeholder moves to a Completed state named ``Released`` whose message names
the real task run, which then runs as usual. All API calls go through one background thread, so
submitting never waits for the API.

At the end of the flow run: a table artifact ``carbon-decisions`` (one row per carbon-aware task:
decision, actual times and region, realised and counterfactual emissions, savings) and a markdown
artifact ``carbon-report`` (the totals, and a chart of the forecasts with the chosen windows).
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowcache.carbon.records import DecisionRecord
from flowcache.carbon.report import (
    chart_png,
    grams,
    percent,
    report_rows,
    summary_line,
    totals,
)
from flowcache.carbon.series import IntensitySeries

log = logging.getLogger("prefect_cache.carbon")


class ApiQueue:
    """Runs Prefect API calls in order on a background thread; ``flush()`` waits for them."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="flowcache-carbon-api",
                                        daemon=True)
        self._thread.start()

    def put(self, call: Callable[[], None]) -> None:
        self._queue.put(call)

    def flush(self) -> None:
        done = threading.Event()
        self._queue.put(done.set)
        done.wait(60)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while (call := self._queue.get()) is not None:
            try:
                call()
            except Exception as exc:  # the UI is best effort; the run goes on
                log.warning("Prefect API call of the carbon-aware runner failed: %s", exc)


def create_placeholder(task: Any, flow_run_id: uuid.UUID | None, placeholder_id: uuid.UUID,
                       planned_start: float, label: str, reason: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    state = Scheduled(scheduled_time=datetime.fromtimestamp(planned_start, UTC), message=reason)
    with get_client(sync_client=True) as client:
        client.create_task_run(task=task, flow_run_id=flow_run_id,
                               dynamic_key=f"deferred-{placeholder_id.hex[:8]}",
                               id=placeholder_id, name=f"{label} (deferred)", state=state)


def release_placeholder(placeholder_id: uuid.UUID, real_task_run_id: uuid.UUID | None,
                        region: str, cancelled: bool = False) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Completed

    if cancelled:
        state = Cancelled(message="cancelled before its planned start")
    else:
        state = Completed(name="Released",
                          message=f"released to {region}; runs as task run {real_task_run_id}")
    with get_client(sync_client=True) as client:
        client.set_task_run_state(placeholder_id, state, force=True)


def publish_report(flow_run_id: uuid.UUID, records: Sequence[DecisionRecord],
                   forecasts: Mapping[str, IntensitySeries]) -> None:
    """The two end-of-run artifacts, attached to ``flow_run_id``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    rows = report_rows(records)
    summary = summary_line(records)
    markdown = _markdown(records, forecasts, summary)
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key="carbon-decisions", type="table", data=rows, flow_run_id=flow_run_id,
            description=summary))
        client.create_artifact(ArtifactCreate(
            key="carbon-report", type="markdown", data=markdown, flow_run_id=flow_run_id,
            description="carbon-aware runner: totals and chosen windows"))


def _markdown(records: Sequence[DecisionRecord], forecasts: Mapping[str, IntensitySeries],
              summary: str) -> str:
    t = totals(records)
    lines = [
        "# Carbon-aware runner report", "", summary, "",
        "| | gCO2eq |", "| --- | ---: |",
        f"| realised | {grams(t['realised_g'], 2)} |",
        f"| had every task run now, at home | {grams(t['now_home_g'], 2)} |",
        f"| had every task run when it did, at home | {grams(t['then_home_g'], 2)} |",
        f"| saved against running now at home | {grams(t['saved_g'], 2)} "
        f"({percent(t['saved_pct'])}) |",
        "", "## Chosen windows", "",
        "| task | action | region | planned start | why |", "| --- | --- | --- | --- | --- |",
    ]
    for row in report_rows(records):
        lines.append(f"| {row['task']} | {row['action']} | {row['region']} | "
                     f"{row['planned start']} | {row['why']} |")
    png = chart_png(records, forecasts) if forecasts else None
    if png:
        lines += ["", "## Intensity forecast", "",
                  f"![intensity forecast](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


def publish_impact(flow_run_id: uuid.UUID, counter: str, rows: Sequence[dict[str, Any]], *,
                   team: bool) -> None:
    """The week's impact as a table artifact under one key, so a team can pin its latest
    version (``carbon-impact-team`` with the team view, else ``carbon-impact``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key="carbon-impact-team" if team else "carbon-impact", type="table",
            data=[{k: _cell(v) for k, v in row.items()} for row in rows],
            flow_run_id=flow_run_id, description=counter))


def _cell(value: Any) -> Any:
    if value is None:
        return "unknown"
    return round(value, 3) if isinstance(value, float) else value
