"""CarbonAwareTaskRunner: a Prefect task runner that runs carbon-aware tasks when and where
the grid is cleanest, and everything else exactly as its inner runner would.

::

    @flow(task_runner=CarbonAwareTaskRunner(
        inner=ThreadPoolTaskRunner(), home="eu-west",
        regions={"eu-north": DaskTaskRunner(address=NORTH)},
        provider=get_provider("electricitymaps", token=...)))

For a task marked with :func:`~prefect_cache.carbon_option.carbon` the runner returns a
:class:`~prefect_cache.deferred_future.DeferredFuture` at once and asks the planner, on the
dispatcher's decision thread, for a start time and region (forecasts cached per region, a
shared capacity ledger so deferred work does not pile into one hour); the flow's own thread and
plain tasks never wait for a carbon provider, and the provider is asked within one time budget
per flow (``decision_budget`` seconds) behind a breaker. It logs the decision in one line, and
then:

* **defers**: the submission is held and released at the planned time by one timer thread
  (:class:`~flowcache.carbon.dispatch.CarbonDispatcher`, shared with the Dask placer: this
  module only adapts Prefect futures); no worker thread or process waits. The caller gets a
  :class:`~prefect_cache.deferred_future.DeferredFuture` at once, and dependants wait on it as
  on any future (a submission whose inputs are still held is itself held until they finish, so
  it does not occupy a worker either);
* **relocates**: submits to the runner of the chosen region;
* **advises**: records the decision and runs now at home.

Other tasks go straight to the inner runner, unchanged. When carbon data cannot be had the task
runs now at home and the decision says why. At the end of the flow run the runner publishes
what it decided and what it saved (:mod:`prefect_cache.carbon_artifacts`) and keeps the records
in the flowcache store (``flowcache carbon report RUN``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flowcache.carbon.advisor import CarbonAdvisor, Placement
from flowcache.carbon.clocks import Clock, WallClock, start_clock
from flowcache.carbon.dispatch import CarbonDispatcher
from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.options import options_of
from flowcache.carbon.providers import IntensityProvider, get_provider
from flowcache.carbon.records import DecisionRecord
from flowcache.carbon.report import summary_line
from flowcache.config import CarbonSettings
from prefect_cache import carbon_artifacts
from prefect_cache.carbon_option import DECIDED
from prefect_cache.carbon_submissions import (
    already_cached,
    collect_deferred,
    past_duration,
    run_logger,
    task_label,
    unwrap,
)
from prefect_cache.deferred_future import DeferredFuture

log = logging.getLogger("prefect_cache.carbon")
HOUR = 3600.0


class CarbonAwareTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """Wraps ``inner`` (the home region's runner) and one runner per other region."""

    #: what ``carbon()``'s check looks for (it must not import this module)
    carbon_aware = True

    def __init__(self, inner: TaskRunner | None = None, *, home: str,
                 regions: Mapping[str, TaskRunner] | None = None,
                 provider: IntensityProvider | str = "files", clock: Clock | None = None,
                 capacity: int | Mapping[str, int] | None = None,
                 power: PowerModel | None = None, default_duration: float = HOUR,
                 horizon: float = 48 * HOUR, refresh_every: float = 900.0,
                 min_deferral: float = 60.0, using: str = "default",
                 store: Any = None, placeholders: bool = True,
                 decision_budget: float | None = None,
                 risk_aware: bool | float | None = None) -> None:
        super().__init__()
        settings = CarbonSettings.from_env()
        #: seconds all of a flow run's carbon decisions may wait for the provider (the flow-end
        #: accounting gets as much again); default FLOWCACHE_CARBON_BUDGET
        self.decision_budget = decision_budget if decision_budget is not None \
            else settings.budget
        self.risk_aware = risk_aware if risk_aware is not None else settings.risk_aware
        self.team_view = settings.team_view
        self.inner = inner or ThreadPoolTaskRunner()
        self.home = home
        self.regions = dict(regions or {})
        self.provider = get_provider(provider) if isinstance(provider, str) else provider
        self.clock = clock or WallClock()
        self.capacity = capacity
        self.power = power or PowerModel()
        self.default_duration = default_duration
        self.horizon = horizon
        self.refresh_every = refresh_every
        self.min_deferral = min_deferral
        self.using = using
        self.store = store
        self.placeholders = placeholders
        self.overhead_seconds = 0.0  # the runner's own time in submit() for carbon-aware work
        self.submissions = 0
        self.submit_seconds: list[float] = []
        self.decision_seconds: list[float] = []  # on the decision thread, provider included
        self._children: list[CarbonAwareTaskRunner] = []
        self._reset()

    def _reset(self) -> None:
        advisor = CarbonAdvisor(
            self.provider, home=self.home, regions=self.regions, clock=self.clock,
            capacity=self.capacity, power=self.power, default_duration=self.default_duration,
            horizon=self.horizon, refresh_every=self.refresh_every, using=self.using,
            decision_budget=self.decision_budget, accounting_budget=self.decision_budget,
            risk_aware=self.risk_aware) if self.provider is not None else None
        self.dispatcher = CarbonDispatcher(advisor, clock=self.clock,
                                           min_deferral=self.min_deferral)
        self._durations: dict[str, float | None] = {}
        self._held: list[DeferredFuture] = []
        self._deciding = 0
        self._lock = threading.Lock()
        self._api: carbon_artifacts.ApiQueue | None = None
        self._flow_run_id: uuid.UUID | None = None
        self._flow_name = ""
        self.records: list[DecisionRecord] = []

    # -- TaskRunner plumbing ------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """What travels when Prefect ships the flow (and so its runner) to a remote worker.

        Only configuration: the copy is context for the task over there, never a runner that
        runs anything, so threads, locks, clients and the provider stay behind.
        """
        keep = ("inner", "home", "regions", "capacity", "power", "default_duration", "horizon",
                "refresh_every", "min_deferral", "using", "placeholders", "decision_budget",
                "risk_aware", "team_view", "logger", "_started")
        return {name: self.__dict__[name] for name in keep if name in self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.provider, self.clock, self.store = None, WallClock(), None
        self.overhead_seconds, self.submissions, self._children = 0.0, 0, []
        self.submit_seconds, self.decision_seconds = [], []
        self._reset()

    def duplicate(self) -> CarbonAwareTaskRunner:
        twin = type(self)(
            self.inner.duplicate(), home=self.home,
            regions={name: runner.duplicate() for name, runner in self.regions.items()},
            provider=self.provider, clock=self.clock, capacity=self.capacity, power=self.power,
            default_duration=self.default_duration, horizon=self.horizon,
            refresh_every=self.refresh_every, min_deferral=self.min_deferral,
            using=self.using, store=self.store, placeholders=self.placeholders,
            decision_budget=self.decision_budget, risk_aware=self.risk_aware)
        self._children.append(twin)  # the flow engine cancels through the original
        return twin

    def __enter__(self) -> CarbonAwareTaskRunner:
        super().__enter__()
        self.inner.__enter__()
        for runner in self.regions.values():
            runner.__enter__()
        start_clock(self.clock)  # a demo's compressed time starts with the flow run
        self.dispatcher.start()
        self._api = carbon_artifacts.ApiQueue()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            if exc_type is None:
                for future in list(self._held):
                    future.wait()  # like Prefect's runners: a flow ends after its tasks
            else:
                self.cancel_all()
            self.dispatcher.stop()
            for future in list(self._held):
                if future.inner is not None:
                    future.inner.wait()
            self._finish()
        finally:
            for runner in self.regions.values():
                runner.__exit__(exc_type, exc_value, traceback)
            self.inner.__exit__(exc_type, exc_value, traceback)
            if self._api is not None:
                self._api.close()
            super().__exit__(exc_type, exc_value, traceback)

    def cancel_all(self) -> None:
        """Cancel held submissions (they never run) and whatever the inner runners cancel."""
        for child in list(self._children):
            child.cancel_all()
        cancelled = self.dispatcher.cancel_all()
        with self._lock:
            undecided = [f for f in self._held if not f.released and not f.cancelled]
        cancelled += sum(f.cancel("cancelled before its carbon decision") for f in undecided)
        if cancelled:
            log.info("carbon-aware runner: cancelled %d held submissions", cancelled)
        for runner in (self.inner, *self.regions.values()):
            if hasattr(runner, "cancel_all"):
                runner.cancel_all()

    # -- submission ---------------------------------------------------------------------------
    def submit(self, task: Any, parameters: dict[str, Any],
               wait_for: Any = None, dependencies: Any = None) -> PrefectFuture[Any]:
        if not self._started:
            raise RuntimeError("the carbon-aware task runner must be started before submitting")
        started = time.perf_counter()
        options = options_of(task)
        upstream = self._held_inputs(parameters, wait_for)
        if options is not None and not upstream and already_cached(task, parameters):
            token = DECIDED.set(True)  # decided: a cached result costs no energy, run it now
            try:
                return self.inner.submit(task, parameters, wait_for, dependencies)
            finally:
                DECIDED.reset(token)
        if options is None and not upstream:
            return self.inner.submit(task, parameters, wait_for, dependencies)
        self._remember_flow_run()
        context = contextvars.copy_context()
        label = task_label(task, parameters)
        try:
            if options is None:  # a plain task waiting for held inputs: no decision to make
                return self._hold(task, parameters, wait_for, dependencies, self.home, None,
                                  self.clock.now(), upstream, context, label)
            future = DeferredFuture(uuid.uuid4(), self.clock.now(), label)
            with self._lock:
                self._held.append(future)
                self._deciding += 1
            self.dispatcher.decide_later(lambda: context.run(
                self._decide_and_submit, future, task, options, parameters, wait_for,
                dependencies, upstream, context, label))
            return future
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.overhead_seconds += elapsed
                self.submissions += 1
                self.submit_seconds.append(elapsed)

    def _decide_and_submit(self, future: DeferredFuture, task: Any, options: Any,
                           parameters: dict[str, Any], wait_for: Any, dependencies: Any,
                           upstream: list[DeferredFuture], context: contextvars.Context,
                           label: str) -> None:
        """On the dispatcher's decision thread: decide, then launch or hold ``future``'s work.

        Whatever happens here, the future ends bound, held or cancelled: a failure to decide
        runs the task now at home (the advisor never raises; this is the last guard).
        """
        try:
            self._decide_then_act(future, task, options, parameters, wait_for, dependencies,
                                  upstream, context, label)
        finally:
            with self._lock:
                self._deciding -= 1

    @property
    def deciding(self) -> int:
        """Carbon-aware submissions whose decision has not been acted on yet."""
        return self._deciding

    def _decide_then_act(self, future: DeferredFuture, task: Any, options: Any,
                         parameters: dict[str, Any], wait_for: Any, dependencies: Any,
                         upstream: list[DeferredFuture], context: contextvars.Context,
                         label: str) -> None:
        if future.cancelled:
            return
        started = time.perf_counter()
        try:
            duration, note = self._duration(task, options)
            placement: Placement | None = self.dispatcher.decide(options, label,
                                                                 duration=duration, note=note)
            region, start = placement.region, placement.start
            run_logger().info(self.advisor.describe(placement))
        except Exception as exc:
            log.warning("carbon decision for %s failed (%s: %s); running it now at home",
                        label, type(exc).__name__, exc)
            placement, region, start = None, self.home, self.clock.now()
        finally:
            with self._lock:
                self.decision_seconds.append(time.perf_counter() - started)
        future.planned_start = start
        if future.cancelled:
            return
        if not self.dispatcher.should_hold(start) and not upstream:
            future.bind(self._launch(task, parameters, wait_for, dependencies, region,
                                     placement))
        else:
            self._hold(task, parameters, wait_for, dependencies, region, placement, start,
                       upstream, context, label, future=future)

    def _hold(self, task: Any, parameters: dict[str, Any], wait_for: Any, dependencies: Any,
              region: str, run: Placement | None, start: float,
              upstream: list[DeferredFuture],
              context: contextvars.Context, label: str,
              future: DeferredFuture | None = None) -> DeferredFuture:
        if future is None:
            future = DeferredFuture(uuid.uuid4(), start, label)
            with self._lock:
                self._held.append(future)
        placeholder_id = future.placeholder_id
        show = self.placeholders and run is not None and self.dispatcher.should_hold(start)

        def release() -> None:
            inner = context.run(self._launch, task, parameters, wait_for, dependencies,
                                region, run)
            future.bind(inner)
            if show and self._api is not None:
                self._api.put(lambda: carbon_artifacts.release_placeholder(
                    placeholder_id, inner.task_run_id, region))

        def cancelled() -> None:
            future.cancel()
            if show and self._api is not None:
                self._api.put(lambda: carbon_artifacts.release_placeholder(
                    placeholder_id, None, region, cancelled=True))

        if show and self._api is not None:
            reason = run.decision.reason if run else "waiting for its inputs"
            flow_run_id = self._flow_run_id
            self._api.put(lambda: carbon_artifacts.create_placeholder(
                task, flow_run_id, placeholder_id, start, label, reason))
        self.dispatcher.hold(release, at=start, label=label, after=upstream, on_cancel=cancelled)
        return future

    def _launch(self, task: Any, parameters: dict[str, Any], wait_for: Any, dependencies: Any,
                region: str, run: Placement | None) -> PrefectFuture[Any]:
        runner = self.regions.get(region, self.inner) if region != self.home else self.inner
        parameters = unwrap(parameters, keep_futures=runner is self.inner)
        wait_for = [f.inner or f if isinstance(f, DeferredFuture) else f
                    for f in (wait_for or [])] or None
        def submit(_region: str) -> PrefectFuture[Any]:
            token = DECIDED.set(True)  # the task's run sees that a carbon decision was made
            try:
                return runner.submit(task, parameters, wait_for, dependencies)
            finally:
                DECIDED.reset(token)

        return self.dispatcher.launch(submit, region, run)

    # -- deciding -----------------------------------------------------------------------------
    def _duration(self, task: Any, options: Any) -> tuple[float | None, str]:
        """The option's duration, else the median of the task's past runs in the API."""
        if options.duration is not None:
            return options.duration, ""
        key = getattr(task, "task_key", task.name)
        if key not in self._durations:
            self._durations[key] = past_duration(task)
        learned = self._durations[key]
        if learned is None:
            return None, ""
        return learned, f"duration {learned / 60:.1f} min learned from past runs"

    # -- reporting ----------------------------------------------------------------------------
    @property
    def advisor(self) -> CarbonAdvisor | None:
        return self.dispatcher.advisor

    def _remember_flow_run(self) -> None:
        if self._flow_run_id is None:
            from prefect.context import FlowRunContext

            context = FlowRunContext.get()
            if context is not None and context.flow_run is not None:
                self._flow_run_id = context.flow_run.id
                self._flow_name = getattr(context.flow, "name", "") or ""

    def _finish(self) -> None:
        run_id = self._flow_run_id
        self.records = self.dispatcher.report(self._store() if run_id else None,
                                              str(run_id) if run_id else None,
                                              flow=self._flow_name, team_view=self.team_view)
        if not self.records or run_id is None or self._api is None:
            return
        run_logger().info(summary_line(self.records))
        records, forecasts = list(self.records), self.advisor.forecasts
        self._api.put(lambda: carbon_artifacts.publish_report(run_id, records, forecasts))
        impact = self.dispatcher.impact
        if impact is not None:
            run_logger().info(impact[0])
            self._api.put(lambda: carbon_artifacts.publish_impact(run_id, *impact,
                                                                  team=self.team_view))
        self._api.flush()

    def _store(self) -> Any:
        if self.store is not None:
            return self.store
        from flowcache.config import default_store

        return default_store()

    # -- inputs -------------------------------------------------------------------------------
    @staticmethod
    def _held_inputs(parameters: dict[str, Any], wait_for: Any) -> list[DeferredFuture]:
        """Deferred futures among the inputs that have not finished yet."""
        found: list[DeferredFuture] = []
        collect_deferred(parameters, found, 0)
        collect_deferred(list(wait_for or ()), found, 0)
        return found

