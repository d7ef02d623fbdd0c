"""CarbonPlacer: carbon-aware placement of plain Dask submissions.

::

    placer = CarbonPlacer(client, home="eu-west", regions=["eu-north"], provider=provider)
    future = placer.submit(train, data)          # train is marked with dask_cache.carbon(...)
    placer.close()                                # records, report, stored under the session

Workers carry their region as a resource (``dask worker --resources region-eu-north=1``, or
``LocalCluster(resources={"region-eu-north": 1})``). A carbon-aware submission goes to the
workers of the region the planner chose (the same :class:`~flowcache.carbon.advisor.CarbonAdvisor`
as the Prefect runner) and, when it should wait, is held on the client by one timer thread until
its planned start: no worker is occupied while it waits. Other submissions go straight to
``client.submit``. Decisions are logged in one line each, and :meth:`close` turns them into the
same decision records and report as the Prefect runner, kept under ``dask-<client id>``
(``flowcache carbon report dask-<client id>``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from dask_cache.scheduler import session_run_id
from flowcache.carbon.advisor import CarbonAdvisor, Placement
from flowcache.carbon.clocks import Clock, WallClock
from flowcache.carbon.deferral import ReleaseScheduler
from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.options import options_of
from flowcache.carbon.providers import IntensityProvider, get_provider
from flowcache.carbon.records import DecisionRecord
from flowcache.carbon.report import save_records, summary_line

log = logging.getLogger("dask_cache.carbon")


class PlacedFuture:
    """A carbon-aware submission: held until its planned start, then a Dask future."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self._future: Any = None
        self._cancelled = False
        self._released = threading.Event()

    @property
    def future(self) -> Any:
        """The Dask future, once released (None before)."""
        return self._future

    def _bind(self, future: Any) -> None:
        self._future = future
        self._released.set()

    def _cancel(self) -> None:
        self._cancelled = True
        self._released.set()

    def released(self) -> bool:
        return self._future is not None

    def done(self) -> bool:
        return self._cancelled or (self._future is not None and self._future.done())

    def result(self, timeout: float | None = None) -> Any:
        if not self._released.wait(timeout):
            raise TimeoutError(f"{self.placement.label} was not released within {timeout}s")
        if self._cancelled:
            raise RuntimeError(f"{self.placement.label} was cancelled before its planned start")
        return self._future.result(timeout=timeout)

    def __repr__(self) -> str:
        status = "cancelled" if self._cancelled else "released" if self._future else "held"
        return f"<PlacedFuture {self.placement.label} {status} in {self.placement.region}>"


class CarbonPlacer:
    def __init__(self, client: Any, *, home: str, regions: Iterable[str] = (),
                 provider: IntensityProvider | str = "files", clock: Clock | None = None,
                 capacity: int | dict[str, int] | None = None, power: PowerModel | None = None,
                 resource: str = "region-{region}", min_deferral: float = 60.0,
                 store: Any = None) -> None:
        self.client = client
        self.clock = clock or WallClock()
        self.resource = resource
        self.min_deferral = min_deferral
        self.store = store
        self.advisor = CarbonAdvisor(get_provider(provider) if isinstance(provider, str)
                                     else provider, home=home, regions=regions,
                                     clock=self.clock, capacity=capacity, power=power)
        self._scheduler = ReleaseScheduler(self.clock, name="flowcache-dask-release")
        self._held: list[PlacedFuture] = []
        self.records: list[DecisionRecord] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``client.submit`` for carbon-aware functions; anything else is passed straight on."""
        options = options_of(fn)
        if options is None:
            return self.client.submit(fn, *args, **kwargs)
        label = getattr(fn, "__name__", "task")
        placement = self.advisor.place(options, label)
        log.info(self.advisor.describe(placement))
        held = PlacedFuture(placement)
        if placement.start - self.clock.now() < self.min_deferral:
            self._release(held, fn, args, kwargs)
        else:
            self._held.append(held)
            self._scheduler.at(placement.start, lambda: self._release(held, fn, args, kwargs),
                               on_cancel=held._cancel, label=label)
        return held

    def _release(self, held: PlacedFuture, fn: Callable[..., Any], args: tuple,
                 kwargs: dict[str, Any]) -> None:
        placement = held.placement
        resources = {self.resource.format(region=placement.region): 1}
        placement.started(self.clock.now(), placement.region)
        future = self.client.submit(fn, *args, resources=resources, pure=False, **kwargs)
        future.add_done_callback(lambda _done: placement.finished(self.clock.now()))
        held._bind(future)

    def cancel_all(self) -> int:
        """Drop every held submission (they never run)."""
        return self._scheduler.cancel_all()

    @property
    def pending(self) -> int:
        return self._scheduler.pending

    def close(self, *, wait: bool = True) -> list[DecisionRecord]:
        """Wait for (or cancel) held work, account for it and keep the records."""
        if wait:
            for held in list(self._held):
                held._released.wait()
                if held.future is not None:
                    held.future.result()
        self._scheduler.stop()
        self.records = self.advisor.outcomes()
        if self.records:
            log.info(summary_line(self.records))
            if self.store is not None:
                save_records(self.store, session_run_id(self.client.id), self.records)
        return self.records

    def __enter__(self) -> CarbonPlacer:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.cancel_all()
        self.close(wait=exc_type is None)
