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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ConfigError
from flowcache.lifetimes import parse_duration

T = TypeVar("T")
MODES = ("advise", "defer", "relocate", "defer+relocate")


@dataclass(frozen=True)
class CarbonOptions:
    mode: str = "defer"
    max_delay: float | None = None
    deadline: float | None = None
    duration: float | None = None  # None: learned from past runs of the task
    power: PowerModel | None = None
    power_w: float | None = None
    energy_kwh: float | None = None
    regions: tuple[str, ...] = ()
    interruptible: bool = False
    data_gb: float = 0.0

    @property
    def defers(self) -> bool:
        return self.mode in ("defer", "defer+relocate")

    @property
    def relocates(self) -> bool:
        return self.mode in ("relocate", "defer+relocate")

    def watts(self, default: PowerModel) -> float:
        if self.power_w is not None:
            return self.power_w
        return (self.power or default).watts


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
    chosen = "defer+relocate" if mode == "both" else mode
    if chosen not in MODES:
        raise ConfigError(f"carbon(mode={mode!r}): use one of {', '.join(MODES)} or 'both'")
    if isinstance(regions, str):
        raise ConfigError("carbon(regions=...) takes a list of region names")
    options = CarbonOptions(
        mode=chosen,
        max_delay=None if max_delay is None else parse_duration(max_delay),
        deadline=None if deadline is None else to_epoch(deadline),
        duration=None if duration is None else parse_duration(duration),
        power=power if isinstance(power, PowerModel) else None,
        power_w=float(power) if isinstance(power, (int, float)) else None,
        energy_kwh=energy_kwh, regions=tuple(regions), interruptible=interruptible,
        data_gb=float(data_gb))
    if options.duration is not None and options.duration <= 0:
        raise ConfigError("carbon(duration=...) must be positive")

    def apply(task: T) -> T:
        from prefect import Task

        if not isinstance(task, Task):
            raise TypeError("carbon() decorates a Prefect task: put it above @task")
        marked = copy.copy(task)  # keeps every other option, including a cache() wrapper
        marked.flowcache_carbon = options
        return marked

    return apply


def carbon_options(task: Any) -> CarbonOptions | None:
    return getattr(task, "flowcache_carbon", None)
