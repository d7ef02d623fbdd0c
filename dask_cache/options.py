"""The task options on plain functions submitted to Dask: ``cache()`` and ``carbon()``.

::

    @dask_cache.cache(lifetime="flow")
    def align(sample: Path) -> bytes: ...

    with dask_cache.session(client):              # the client's session is the "flow"
        futures = client.map(align, samples)

``cache()`` takes the same options as the Prefect option (see docs/prefect.md) and runs on the
worker with the worker's store (the one :class:`CacheWorkerPlugin` set up, node tier included).
A flow-scoped entry belongs to the session it was submitted in (a task annotation), and
:class:`CacheSchedulerPlugin` purges it when that client disconnects. ``carbon()`` marks a
function for :class:`~dask_cache.placement.CarbonPlacer`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import dask

from dask_cache.scheduler import session_run_id
from flowcache.carbon.options import carbon_options
from flowcache.memoize import CacheOptions, CallContext, Memoizer


def cache(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Cache a function's result by the content of its code and inputs (see module docs)."""
    parsed = CacheOptions.parse(**options)

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        memo = Memoizer(fn, parsed)
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            context = CallContext(task_name=name, run_id=_current_run())
            return memo.call(args, kwargs, context).value

        wrapper.flowcache_options = parsed  # type: ignore[attr-defined]
        return wrapper

    return apply(__fn) if __fn is not None else apply


def carbon(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function carbon-aware for :class:`CarbonPlacer` (same options as Prefect's)."""
    parsed = carbon_options(**options)

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def marked(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        marked.flowcache_carbon = parsed  # type: ignore[attr-defined]
        return marked

    return apply


@contextlib.contextmanager
def session(client: Any) -> Iterator[str]:
    """Tasks submitted inside belong to ``client``'s session: their ``lifetime="flow"`` entries
    are purged when the client disconnects."""
    run_id = session_run_id(client.id)
    with dask.annotate(flowcache_run=run_id):
        yield run_id


def _current_run() -> str | None:
    """The session annotation of the task running in this worker thread, if any."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        worker = get_worker()
        state = worker.state.tasks.get(thread_state.key)
    except (ValueError, AttributeError):
        return None
    annotations = getattr(state, "annotations", None) or {}
    return annotations.get("flowcache_run")
