"""Flow hooks: purge a run's intermediates when it ends, and report what the cache did.

::

    @flow(**cache_hooks())            # completion, failure, cancellation and crash
    def pipeline(...): ...

``purge_intermediates`` deletes every entry written with ``lifetime="flow"`` during the run,
from every tier and whichever process wrote it, then logs one line of statistics and publishes
them as a table artifact on the flow run. When the store keeps a ledger, the report adds what
the run's cache entries have cost so far (byte-hours, by task and in total) and the bytes the run
added to the durable tier. Hooks are best effort (a killed process runs none): ``flowcache gc``
purges what such runs left.
"""

from __future__ import annotations

import logging
from typing import Any

from flowcache.accounts.billing import RunUsage, run_usage
from flowcache.accounts.ledger import ledger_of
from flowcache.accounts.runstats import RUN_STATS, RunStats
from flowcache.config import default_store
from flowcache.purge import PurgeReport, stores_with_runs, tracker_for
from flowcache.units import format_size

log = logging.getLogger("prefect_cache")


def purge_intermediates(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: purge the run's flow-scoped entries and report the run's cache statistics."""
    run_id = str(flow_run.id)
    report = PurgeReport()
    for store in _stores():
        try:
            report.add(tracker_for(store).purge(run_id))
        except Exception as exc:  # the durable tier is down: gc will finish the job
            log.error("could not purge the intermediates of run %s from %s: %s", run_id,
                      store.describe(), exc)
    stats = RUN_STATS.pop(run_id)
    _report(flow_run, state, stats, report, _usage(run_id, _started(flow_run, stats)))


def report_cache_stats(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: only report the run's statistics (for flows without flow-scoped entries)."""
    run_id = str(flow_run.id)
    stats = RUN_STATS.pop(run_id)
    _report(flow_run, state, stats, None, _usage(run_id, _started(flow_run, stats)))


def _started(flow_run: Any, stats: RunStats) -> float:
    """When the run began, early enough for every event of its entries: the ledger then reads
    the run's stretch of history, not all of it (an hour's margin for clock skew between the
    Prefect server and this host)."""
    start = getattr(flow_run, "start_time", None)
    began = start.timestamp() if start is not None else stats.started
    return min(began, stats.started) - 3600.0


def _usage(run_id: str, since: float | None = None) -> RunUsage | None:
    """What the run's entries cost so far, from the ledgers of the stores it used."""
    total: RunUsage | None = None
    seen: set[tuple[int, str]] = set()
    for store in _stores():
        ledger = ledger_of(store)
        if ledger is None or (id(ledger), store.identity.user) in seen:
            continue
        seen.add((id(ledger), store.identity.user))
        try:
            usage = run_usage(ledger.events(store.identity.user, since), run_id,
                              until=ledger.clock(),
                              durable=store.durable.name)
        except Exception as exc:  # the ledger's backend is down: report without it
            log.warning("could not read the flowcache ledger (%s): %s", store.describe(), exc)
            continue
        if total is None:
            total = usage
        else:
            total.add(usage)
    return total


def cache_hooks() -> dict[str, list[Any]]:
    """``@flow(**cache_hooks())``: purge and report on every way a run can end."""
    hooks = [purge_intermediates]
    return {"on_completion": list(hooks), "on_failure": list(hooks),
            "on_cancellation": list(hooks), "on_crashed": list(hooks)}


def _stores() -> list[Any]:
    stores = stores_with_runs()
    try:
        default = default_store()
    except Exception as exc:
        log.warning("no default flowcache store (%s); purging the stores used in this process",
                    exc)
        return stores
    return stores if any(s is default for s in stores) else [*stores, default]


def _report(flow_run: Any, state: Any, stats: RunStats, purged: PurgeReport | None,
            usage: RunUsage | None = None) -> None:
    from prefect.logging import get_run_logger

    try:
        logger = get_run_logger()
    except Exception:
        logger = log
    line = stats.summary()
    if purged is not None:
        line += f"; purged {purged.entries} intermediates ({format_size(purged.bytes)})"
    if usage is not None:
        line += (f"; {usage.byte_hours:.6g} byte-hours so far, "
                 f"{format_size(usage.bytes_added)} added to the cache")
    logger.info(line)
    rows = [{"task": task, "hits": int(row["hits"]), "misses": int(row["misses"]),
             "bytes written": int(row["bytes_written"]),
             "seconds saved": round(row["seconds_saved"], 3)}
            for task, row in sorted(stats.by_task.items())]
    rows.append({"task": "TOTAL", "hits": stats.hits, "misses": stats.misses,
                 "bytes written": stats.bytes_written,
                 "seconds saved": round(stats.seconds_saved, 3)})
    if usage is not None:
        for row in rows[:-1]:
            row["byte-hours"] = usage.by_task.get(row["task"], 0.0) / 3600.0
        rows[-1]["byte-hours"] = usage.byte_hours
        rows[-1]["cache bytes added"] = usage.bytes_added
    description = (f"flowcache statistics for run {flow_run.name or flow_run.id} "
                   f"({getattr(state, 'name', '')}): {stats.entries_written} entries written")
    if purged is not None:
        description += (f"; {purged.entries} intermediates purged "
                        f"({format_size(purged.bytes)})")
    if usage is not None:
        tiers = ", ".join(f"{tier} {seconds / 3600:.6g}" for tier, seconds
                          in sorted(usage.byte_seconds.items()))
        description += (f"; {usage.byte_hours:.6g} byte-hours so far ({tiers or 'none'}); "
                        f"{format_size(usage.bytes_added)} added to the cache by the run")
    try:
        _create_table_artifact(flow_run.id, rows, description)
    except Exception as exc:
        logger.warning("could not publish the flowcache statistics artifact: %s", exc)


def _create_table_artifact(flow_run_id: Any, rows: list[dict], description: str) -> None:
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.id == flow_run_id:
        create_table_artifact(rows, key="flowcache-stats", description=description, _sync=True)
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key="flowcache-stats", type="table", data=rows,
                                              description=description,
                                              flow_run_id=flow_run_id))
