"""CarbonPlacer: carbon-aware placement of plain Dask submissions.

::

    placer = CarbonPlacer(client, home="eu-west", regions=["eu-north"], provider=provider)
    future = placer.submit(train, data)          # train is marked with dask_cache.carbon(...)
    placer.close()                                # records, report, stored under the session

Workers carry their region as a resource (``dask worker --resources region-eu-north=1``, or
``LocalCluster(resources={"region-eu-north": 1})``). A carbon-aware submission goes to the
workers of the region the planner chose and, when it should wait, is held on the client by one
timer thread until its planned start: no worker is occupied while it waits. The same
:class:`~flowcache.carbon.dispatch.CarbonDispatcher` as the Prefect runner decides, holds,
releases and accounts; this module only adapts Dask futures. Other submissions go straight to
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
from flowcache.carbon.clocks import Clock, WallClock, start_clock
from flowcache.carbon.dispatch import CarbonDispatcher
from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.options import options_of
from flowcache.carbon.providers import IntensityProvider, get_provider
from flowcache.carbon.records import DecisionRecord
from flowcache.config import CarbonSettings

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
                 store: Any = None, decision_budget: float | None = None,
                 risk_aware: bool | float | None = None) -> None:
        settings = CarbonSettings.from_env()
        self.client = client
        self.clock = clock or WallClock()
        self.resource = resource
        self.store = store
        advisor = CarbonAdvisor(get_provider(provider) if isinstance(provider, str)
                                else provider, home=home, regions=regions,
                                clock=self.clock, capacity=capacity, power=power,
                                decision_budget=decision_budget or settings.budget,
                                accounting_budget=decision_budget or settings.budget,
                                risk_aware=settings.risk_aware if risk_aware is None
                                else risk_aware)
        start_clock(self.clock)
        self.dispatcher = CarbonDispatcher(advisor, clock=self.clock, min_deferral=min_deferral,
                                           name="flowcache-dask-release").start()
        self._held: list[PlacedFuture] = []
        self.records: list[DecisionRecord] = []

    @property
    def advisor(self) -> CarbonAdvisor:
        return self.dispatcher.advisor  # type: ignore[return-value]

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``client.submit`` for carbon-aware functions; anything else is passed straight on."""
        options = options_of(fn)
        if options is None:
            return self.client.submit(fn, *args, **kwargs)
        label = getattr(fn, "__name__", "task")
        placement = self.dispatcher.decide(options, label)
        log.info(self.advisor.describe(placement))
        held = PlacedFuture(placement)

        def submit(region: str) -> Any:
            resources = {self.resource.format(region=region): 1}
            return self.client.submit(fn, *args, resources=resources, pure=False, **kwargs)

        def release() -> None:
            held._bind(self.dispatcher.launch(submit, placement.region, placement))

        if not self.dispatcher.should_hold(placement.start):
            release()
        else:
            self._held.append(held)
            self.dispatcher.hold(release, at=placement.start, label=label,
                                 on_cancel=held._cancel)
        return held

    def cancel_all(self) -> int:
        """Drop every held submission (they never run)."""
        return self.dispatcher.cancel_all()

    @property
    def pending(self) -> int:
        return self.dispatcher.pending

    def close(self, *, wait: bool = True) -> list[DecisionRecord]:
        """Wait for (or cancel) held work, account for it and keep the records."""
        if wait:
            for held in list(self._held):
                held._released.wait()
                if held.future is not None:
                    held.future.result()
        self.dispatcher.stop()
        self.records = self.dispatcher.report(self.store, session_run_id(self.client.id))
        return self.records

    def __enter__(self) -> CarbonPlacer:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.cancel_all()
        self.close(wait=exc_type is None)
