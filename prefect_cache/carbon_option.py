"""The ``carbon()`` task option: one line that makes a Prefect task carbon-aware.

::

    @carbon(max_delay="8h", duration="1h", regions=["eu-north"], mode="defer+relocate")
    @cache(keep=True)
    @task
    def train(features: bytes) -> Model: ...

The option only describes the task (how long it runs, what it draws, how long it may wait and
where it may go); a :class:`~prefect_cache.carbon_runner.CarbonAwareTaskRunner` on the flow
decides and acts. Under any other task runner, or when the task is called directly instead of
submitted (``train(x)`` rather than ``train.submit(x)``), nothing is decided: the task warns
once per process, saying what to change. Modes: ``advise`` (plan
and record, run now at home), ``defer`` (wait for a greener window), ``relocate`` (run in a
greener region now), ``defer+relocate`` (both; ``both`` is accepted too).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.options import MODES, CarbonOptions, carbon_options, options_of

T = TypeVar("T")
__all__ = ["DECIDED", "MODES", "CarbonOptions", "carbon", "carbon_options"]
log = logging.getLogger("prefect_cache.carbon")

#: set by the carbon-aware runner around the submission of work it decided on (it travels into
#: the task's thread with the context Prefect copies at submission)
DECIDED: ContextVar[bool] = ContextVar("flowcache_carbon_decided", default=False)
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def carbon(*, max_delay: str | float | timedelta | None = None,
           deadline: str | float | datetime | None = None,
           duration: str | float | timedelta | None = None,
           power: PowerModel | float | None = None, energy_kwh: float | None = None,
           regions: Iterable[str] = (), interruptible: bool = False, data_gb: float = 0.0,
           mode: str = "defer") -> Callable[[T], T]:
    """Mark a Prefect task carbon-aware (see the module docstring).

    Args:
        max_delay: how long after submission the task may start (``"8h"``, seconds).
        deadline: the latest time it must have finished (ISO string, datetime, epoch).
        duration: how long it runs; default: the median of its past runs in the Prefect API.
        power: a :class:`PowerModel` or watts (default: the runner's model);
            or give ``energy_kwh`` per run.
        regions: regions it may be moved to, besides the runner's home.
        interruptible: may run in pieces in the cheapest slots before its deadline.
        data_gb: data moved when relocated (its transfer emissions count against moving).
        mode: ``advise``, ``defer``, ``relocate`` or ``defer+relocate`` (or ``both``).
    """
    options = carbon_options(max_delay=max_delay, deadline=deadline, duration=duration,
                             power=power, energy_kwh=energy_kwh, regions=regions,
                             interruptible=interruptible, data_gb=data_gb, mode=mode)

    def apply(task: T) -> T:
        from prefect import Task

        if not isinstance(task, Task):
            raise TypeError("carbon() decorates a Prefect task: put it above @task")
        marked = copy.copy(task)  # keeps every other option, including a cache() wrapper
        marked.flowcache_carbon = options
        marked.on_running_hooks = [*task.on_running_hooks, _check_runner]
        return marked

    return apply


def _check_runner(task: Any, task_run: Any, state: Any) -> None:
    """An ``on_running`` hook: say so, once, when no carbon-aware runner decided for this run."""
    if DECIDED.get():
        return
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None) if context is not None else None
    if getattr(runner, "carbon_aware", False):
        if runner.provider is None:
            return  # a copy on a remote worker: the decision was made in the flow's process
        why = (f"{task.name} was called directly, so the carbon-aware runner never saw it: "
               f"submit it (`{task.name}.submit(...)`) to let the runner defer or move it")
    elif context is None:
        why = (f"{task.name} ran outside a flow: carbon() takes effect only for tasks "
               "submitted in a flow whose task_runner is CarbonAwareTaskRunner")
    else:
        why = (f"{task.name} ran under {type(runner).__name__}, which ignores carbon(): use "
               "@flow(task_runner=CarbonAwareTaskRunner(home=...)) and submit the task")
    with _WARNED_LOCK:
        if why in _WARNED:
            return
        _WARNED.add(why)
    log.warning("carbon(): nothing was decided for this run: %s", why)


carbon_options_of = options_of
