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

from typing import Any

from flowcache.accounts.billing import RunUsage, run_usage
from flowcache.accounts.ledger import ledger_of
from flowcache.accounts.runstats import RUN_STATS, RunStats
from flowcache.config import default_store
from flowcache.purge import PurgeReport, stores_with_runs, tracker_for
from prefect_cache.reports import STATS_KEY, FlowEndReport, artifact_key, publish_table
from prefect_cache.run_logs import flow_run_log
from prefect_cache.table_hits import HIT_TABLES, HITS_KEY


def purge_intermediates(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: purge the run's flow-scoped entries and report the run's cache statistics."""
    logger = flow_run_log(flow_run, flow)
    run_id = str(flow_run.id)
    report = PurgeReport()
    for store in _stores(logger):
        try:
            report.add(tracker_for(store).purge(run_id))
        except Exception as exc:  # the durable tier is down: gc will finish the job
            logger.error("flowcache could not purge the intermediates of this run from %s "
                         "(%s); `flowcache gc` will", store.describe(), exc)
    counted = RUN_STATS.peek(run_id) is not None
    stats = RUN_STATS.pop(run_id)
    _report(flow, flow_run, state, stats, report, logger, counted)


def report_cache_stats(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: only report the run's statistics (for flows without flow-scoped entries)."""
    logger = flow_run_log(flow_run, flow)
    counted = RUN_STATS.peek(str(flow_run.id)) is not None
    stats = RUN_STATS.pop(str(flow_run.id))
    _report(flow, flow_run, state, stats, None, logger, counted)


def _started(flow_run: Any, stats: RunStats) -> float:
    """When the run began, early enough for every event of its entries: the ledger then reads
    the run's stretch of history, not all of it (an hour's margin for clock skew between the
    Prefect server and this host)."""
    start = getattr(flow_run, "start_time", None)
    began = start.timestamp() if start is not None else stats.started
    return min(began, stats.started) - 3600.0


def _usage(run_id: str, since: float, logger: Any) -> RunUsage | None:
    """What the run's entries cost so far, from the ledgers of the stores it used."""
    total: RunUsage | None = None
    seen: set[tuple[int, str]] = set()
    for store in _stores(logger):
        ledger = ledger_of(store)
        if ledger is None or (id(ledger), store.identity.user) in seen:
            continue
        seen.add((id(ledger), store.identity.user))
        try:
            usage = run_usage(ledger.events(store.identity.user, since), run_id,
                              until=ledger.clock(),
                              durable=store.durable.name)
        except Exception as exc:  # the ledger's backend is down: report without it
            logger.warning("could not read the flowcache ledger (%s): %s", store.describe(),
                           exc)
            continue
        if total is None:
            total = usage
        else:
            total.add(usage)
    return total


# the hooks that publish a run's reports (cache(hits="table") checks a flow has one)
purge_intermediates.flowcache_reports = True  # type: ignore[attr-defined]
report_cache_stats.flowcache_reports = True  # type: ignore[attr-defined]


def cache_hooks() -> dict[str, list[Any]]:
    """``@flow(**cache_hooks())``: purge and report on every way a run can end."""
    hooks = [purge_intermediates]
    return {"on_completion": list(hooks), "on_failure": list(hooks),
            "on_cancellation": list(hooks), "on_crashed": list(hooks)}


def _stores(logger: Any) -> list[Any]:
    stores = stores_with_runs()
    try:
        default = default_store()
    except Exception as exc:
        logger.warning("no default flowcache store (%s); purging the stores used in this "
                       "process", exc)
        return stores
    return stores if any(s is default for s in stores) else [*stores, default]


def _report(flow: Any, flow_run: Any, state: Any, stats: RunStats, purged: PurgeReport | None,
            logger: Any, counted: bool) -> None:
    """``counted``: whether this process saw the run's cached calls. A runner cancelling a
    run calls the hooks in its own process, after the run's process ended: the counts died
    with it, and the report says so instead of printing zeros."""
    usage = _usage(str(flow_run.id), _started(flow_run, stats), logger)
    flow_name = getattr(flow, "name", None) or getattr(flow_run, "flow_name", None)
    hits = HIT_TABLES.pop(str(flow_run.id))
    hits_key = artifact_key(HITS_KEY, flow_name) if hits is not None and hits.rows else None
    report = FlowEndReport(stats, purged, usage, counted=counted,
                           table_hits=len(hits.rows) if hits_key else 0, hits_key=hits_key)
    logger.info(report.line())
    if hits is not None and hits_key is not None:
        try:
            publish_table(flow_run.id, hits_key, hits.rows,
                          f"{len(hits.rows)} flowcache hits of run {flow_run.name} answered "
                          "without task runs (cache(hits='table')), one row per call")
        except Exception as exc:
            logger.warning("could not publish the flowcache hits artifact: %s", exc)
    key = artifact_key(STATS_KEY, flow_name)
    try:
        publish_table(flow_run.id, key, report.rows(),
                      report.description(flow_run.name or str(flow_run.id),
                                         getattr(state, "name", "")))
    except Exception as exc:
        logger.warning("could not publish the flowcache statistics artifact: %s", exc)
