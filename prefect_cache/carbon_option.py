"""The ``carbon()`` task option: one line that makes a Prefect task carbon-aware.

::

    @carbon(max_delay="8h", duration="1h", regions=["eu-north"], mode="defer+relocate")
    @cache(keep=True)
    @task
    def train(features: bytes) -> Model: ...

The option only describes the task (how long it runs, what it draws, how long it may wait and
where it may go); a :class:`~prefect_cache.carbon_runner.CarbonAwareTaskRunner` on the flow
decides and acts. Under any other task runner the option does nothing. Modes: ``advise`` (plan
and record, run now at home), ``defer`` (wait for a greener window), ``relocate`` (run in a
greener region now), ``defer+relocate`` (both; ``both`` is accepted too).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.options import MODES, CarbonOptions, carbon_options, options_of

T = TypeVar("T")
__all__ = ["MODES", "CarbonOptions", "carbon", "carbon_options"]


def carbon(*, max_delay: str | float | timedelta | None = None,
           deadline: str | float | datetime | None = None,
           duration: str | float | timedelta | None = None,
           power: PowerModel | float | None = None, energy_kwh: float | None = None,
           regions: Iterable[str] = (), interruptible: bool = False, data_gb: float = 0.0,
           mode: str = "defer") -> Any:
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
        return marked

    return apply


carbon_options_of = options_of
