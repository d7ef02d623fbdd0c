"""What the carbon-aware runner learns about a submission: its label, whether its result is
already cached (no energy to save), the deferred futures among its inputs, and how long the
task took before (its median duration in the Prefect API)."""

from __future__ import annotations

import logging
import statistics
from typing import Any

from prefect.futures import PrefectFuture
from prefect.utilities.collections import visit_collection

from prefect_cache.deferred_future import DeferredFuture

log = logging.getLogger("prefect_cache.carbon")

def collect_deferred(value: Any, found: list[DeferredFuture], depth: int) -> None:
    """A cheap walk of plain containers (Prefect's visit_collection is general but slow)."""
    if isinstance(value, DeferredFuture):
        if not value.done():
            found.append(value)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            collect_deferred(item, found, depth + 1)
    elif depth < 8 and isinstance(value, dict):
        for item in value.values():
            collect_deferred(item, found, depth + 1)


def unwrap(parameters: dict[str, Any], *, keep_futures: bool) -> dict[str, Any]:
    """Swap released deferred futures for their real futures, or for their values when the
    work goes to another runner (a future of one runner means nothing to another)."""
    def visit(expr: Any) -> Any:
        if isinstance(expr, DeferredFuture):
            if keep_futures and expr.inner is not None:
                return expr.inner
            return expr.result()
        return expr

    return visit_collection(parameters, visit, return_data=True)


def already_cached(task: Any, parameters: dict[str, Any]) -> bool:
    """Whether a cache()d task's result for these (already resolved) inputs is stored."""
    cache_options = getattr(task, "flowcache_options", None)
    original = getattr(task.fn, "__wrapped__", None)
    if cache_options is None or original is None or cache_options.refresh:
        return False
    found: list[Any] = []
    visit_collection(parameters, lambda e: found.append(e) if isinstance(e, PrefectFuture)
                     else None, return_data=False)
    if found:
        return False  # inputs not known yet
    from flowcache.memoize import CallContext, Memoizer

    try:
        store = cache_options.resolve_store()
        key = Memoizer(original, cache_options).key_for((), parameters,
                                                        CallContext(task.name), store)
        return store.exists(key)
    except Exception as exc:  # the task itself will report a real problem
        log.debug("could not check the cache for %s: %s", task.name, exc)
        return False


def task_label(task: Any, parameters: dict[str, Any]) -> str:
    names = [f"{k}={v!r}" for k, v in parameters.items()
             if isinstance(v, (int, float, str)) and len(repr(v)) <= 24][:2]
    return f"{task.name}({', '.join(names)})" if names else task.name


def past_duration(task: Any) -> float | None:
    """Median duration of the task's last completed runs in the Prefect API, if any."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            TaskRunFilter,
            TaskRunFilterName,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import TaskRunSort

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(like_=task.name),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(
                        any_=[StateType.COMPLETED]))),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=50)
    except Exception as exc:
        log.debug("cannot read past runs of %s: %s", task.name, exc)
        return None
    seconds = [r.total_run_time.total_seconds() for r in runs
               if r.task_key == task.task_key and r.total_run_time
               and r.total_run_time.total_seconds() > 0 and r.state
               and r.state.name == "Completed"][:20]
    return statistics.median(seconds) if seconds else None


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return log
