"""The flow-end report of a run's cache use, written for people: one log line, one table.

Numbers are formatted the way every flowcache command prints them (sizes by
:func:`flowcache.units.format_size`, byte-hours as a size held for an hour, seconds with one
decimal). The artifact's key names the flow (``flowcache-stats-<flow>``), so runs of one flow
line up in the UI's artifact history and different flows do not mix.

"Task time saved" is the sum, over hits, of the compute time recorded when each entry was
written, minus what the hit took. Tasks that ran in parallel overlap, so it is *summed task
time*, not wall-clock time: a warm run can "save" more than the whole cold run took. The line
and the table say so rather than suggest a wall-clock figure nobody measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flowcache.accounts.billing import RunUsage
from flowcache.accounts.runstats import RunStats
from flowcache.purge import PurgeReport
from flowcache.units import format_size

STATS_KEY = "flowcache-stats"
#: Prefect artifact keys: lowercase letters, digits and dashes
_NOT_KEY = re.compile(r"[^a-z0-9]+")


def artifact_key(prefix: str, flow_name: str | None) -> str:
    """``flowcache-stats`` + the flow's name as a valid artifact key (``My_Flow 2`` ->
    ``flowcache-stats-my-flow-2``)."""
    slug = _NOT_KEY.sub("-", (flow_name or "").lower()).strip("-")[:80].rstrip("-")
    return f"{prefix}-{slug or 'flow'}"


def byte_hours(value: float) -> str:
    """Byte-hours as a size held for an hour: ``5.3e6`` -> ``"5.1 MiB x h"``. Something held
    for less than a byte-hour (a short flow's intermediates) reads ``"< 1 B x h"``, never as
    if nothing had been held."""
    if 0 < value < 0.5:
        return "< 1 B x h"
    return f"{format_size(value)} x h"


def task_time(seconds: float) -> str:
    return f"{seconds:.1f} s"


@dataclass
class FlowEndReport:
    """What the end-of-run hooks know about a run's cache use."""

    stats: RunStats
    purged: PurgeReport | None = None
    usage: RunUsage | None = None
    #: False when the hook runs in another process than the run's tasks (a runner cancelling
    #: the run): hits and misses were counted there and are unknown here
    counted: bool = True
    #: hits answered without a task run (``cache(hits="table")``) and the artifact listing them
    table_hits: int = 0
    hits_key: str | None = None

    def line(self) -> str:
        stats = self.stats
        if not self.counted:
            text = ("flowcache: hits and misses were counted in the run's own process, which "
                    "ended before this hook ran")
        else:
            text = (f"flowcache: {stats.hits} hits, {stats.misses} misses, "
                    f"{stats.entries_written} entries written "
                    f"({format_size(stats.bytes_written)})")
        if stats.hits:
            text += (f"; hits skipped {task_time(stats.seconds_saved)} of task time (summed "
                     "over tasks: tasks that ran in parallel overlap, so the run's wall time "
                     "saved is less)")
        if self.table_hits:
            text += (f"; {self.table_hits} hits answered without task runs (listed in the "
                     f"{self.hits_key} artifact)")
        if self.purged is not None:
            text += (f"; purged {self.purged.entries} intermediates "
                     f"({format_size(self.purged.bytes)})")
        if self.usage is not None:
            text += (f"; held {byte_hours(self.usage.byte_hours)} so far, "
                     f"{format_size(self.usage.bytes_added)} added to the cache")
        return text

    def rows(self) -> list[dict[str, Any]]:
        stats, usage = self.stats, self.usage
        rows = []
        for task, row in sorted(stats.by_task.items()):
            out: dict[str, Any] = {
                "task": task, "hits": int(row["hits"]), "misses": int(row["misses"]),
                "written": format_size(row["bytes_written"]),
                "task time saved (summed)": task_time(row["seconds_saved"])}
            if usage is not None:
                out["held (byte-hours)"] = byte_hours(usage.by_task.get(task, 0.0) / 3600.0)
                out["added to the cache"] = ""
            rows.append(out)
        total: dict[str, Any] = {
            "task": "TOTAL", "hits": stats.hits, "misses": stats.misses,
            "written": format_size(stats.bytes_written),
            "task time saved (summed)": task_time(stats.seconds_saved)}
        if usage is not None:
            total["held (byte-hours)"] = byte_hours(usage.byte_hours)
            total["added to the cache"] = format_size(usage.bytes_added)
        rows.append(total)
        return rows

    def description(self, run_name: str, state_name: str) -> str:
        text = (f"flowcache statistics for run {run_name} ({state_name}): "
                f"{self.stats.entries_written} entries written")
        if self.purged is not None:
            text += (f"; {self.purged.entries} intermediates purged "
                     f"({format_size(self.purged.bytes)})")
        if self.usage is not None:
            tiers = ", ".join(f"{tier} {byte_hours(seconds / 3600)}" for tier, seconds
                              in sorted(self.usage.byte_seconds.items()))
            text += (f"; held {byte_hours(self.usage.byte_hours)} so far "
                     f"({tiers or 'none'}); {format_size(self.usage.bytes_added)} added to "
                     "the cache by the run")
        return text + (". Task time saved is summed over tasks (parallel tasks overlap), "
                       "not wall-clock time.")


def publish_table(flow_run_id: Any, key: str, rows: list[dict[str, Any]],
                  description: str) -> None:
    """A table artifact on the flow run: through the run context when it is this run's (the
    usual case), else through the API with the run's id (a hook after a crash)."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.id == flow_run_id:
        create_table_artifact(rows, key=key, description=description, _sync=True)
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key=key, type="table", data=rows,
                                              description=description,
                                              flow_run_id=flow_run_id))
