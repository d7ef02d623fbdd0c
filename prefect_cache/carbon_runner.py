"""CarbonAwareTaskRunner: a Prefect task runner that runs carbon-aware tasks when and where
the grid is cleanest, and everything else exactly as its inner runner would.

::

    @flow(task_runner=CarbonAwareTaskRunner(
        inner=ThreadPoolTaskRunner(), home="eu-west",
        regions={"eu-north": DaskTaskRunner(address=NORTH)},
        provider=get_provider("electricitymaps", token=...)))

For a task marked with :func:`~prefect_cache.carbon_option.carbon` the runner asks the planner
for a start time and region (forecasts cached per region, a shared capacity ledger so deferred
work does not pile into one hour), logs the decision in one line, and then:

* **defers**: the submission is held in a heap and released at the planned time by one timer
  thread (:mod:`flowcache.deferral`); no worker thread or process waits. The caller gets a
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
import statistics
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.collections import visit_collection

from flowcache.carbon.batch import CapacityLedger
from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.errors import CarbonError, ProviderError
from flowcache.carbon.forecast import forecast_for
from flowcache.carbon.planner import Planner, run_now_at_home
from flowcache.carbon.providers import IntensityProvider, get_provider
from flowcache.carbon.records import DecisionRecord, record_outcome
from flowcache.carbon.report import save_records, summary_line
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso
from flowcache.clocks import Clock, WallClock
from flowcache.deferral import ReleaseScheduler
from prefect_cache import carbon_artifacts
from prefect_cache.carbon_option import CarbonOptions, carbon_options
from prefect_cache.deferred_future import DeferredFuture

log = logging.getLogger("prefect_cache.carbon")
HOUR = 3600.0


@dataclass
class _Run:
    """One carbon-aware task's journey: decision, then what actually happened."""

    label: str
    decision: Decision
    submitted: float
    power_w: float | None
    energy_kwh: float | None
    actual_start: float | None = None
    actual_end: float | None = None
    actual_region: str | None = None


class CarbonAwareTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """Wraps ``inner`` (the home region's runner) and one runner per other region."""

    def __init__(self, inner: TaskRunner | None = None, *, home: str,
                 regions: Mapping[str, TaskRunner] | None = None,
                 provider: IntensityProvider | str = "files", clock: Clock | None = None,
                 capacity: int | Mapping[str, int] | None = None,
                 power: PowerModel | None = None, default_duration: float = HOUR,
                 horizon: float = 48 * HOUR, refresh_every: float = 900.0,
                 min_deferral: float = 60.0, using: str = "default",
                 store: Any = None, placeholders: bool = True) -> None:
        super().__init__()
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
        self._children: list[CarbonAwareTaskRunner] = []
        self._reset()

    def _reset(self) -> None:
        self._scheduler: ReleaseScheduler | None = None
        self._ledger = CapacityLedger(self.capacity)
        self._forecasts: dict[str, tuple[float, IntensitySeries]] = {}
        self._durations: dict[str, float | None] = {}
        self._runs: list[_Run] = []
        self._held: list[DeferredFuture] = []
        self._lock = threading.Lock()
        self._api: carbon_artifacts.ApiQueue | None = None
        self._flow_run_id: uuid.UUID | None = None
        self.records: list[DecisionRecord] = []

    # -- TaskRunner plumbing ------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """What travels when Prefect ships the flow (and so its runner) to a remote worker.

        Only configuration: the copy is context for the task over there, never a runner that
        runs anything, so threads, locks, clients and the provider stay behind.
        """
        keep = ("inner", "home", "regions", "capacity", "power", "default_duration", "horizon",
                "refresh_every", "min_deferral", "using", "placeholders", "logger", "_started")
        return {name: self.__dict__[name] for name in keep if name in self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.provider, self.clock, self.store = None, WallClock(), None
        self.overhead_seconds, self.submissions, self._children = 0.0, 0, []
        self.submit_seconds = []
        self._reset()

    def duplicate(self) -> CarbonAwareTaskRunner:
        twin = type(self)(
            self.inner.duplicate(), home=self.home,
            regions={name: runner.duplicate() for name, runner in self.regions.items()},
            provider=self.provider, clock=self.clock, capacity=self.capacity, power=self.power,
            default_duration=self.default_duration, horizon=self.horizon,
            refresh_every=self.refresh_every, min_deferral=self.min_deferral,
            using=self.using, store=self.store, placeholders=self.placeholders)
        self._children.append(twin)  # the flow engine cancels through the original
        return twin

    def __enter__(self) -> CarbonAwareTaskRunner:
        super().__enter__()
        self.inner.__enter__()
        for runner in self.regions.values():
            runner.__enter__()
        self._scheduler = ReleaseScheduler(self.clock)
        self._api = carbon_artifacts.ApiQueue()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            if exc_type is None:
                for future in list(self._held):
                    future.wait()  # like Prefect's runners: a flow ends after its tasks
            else:
                self.cancel_all()
            if self._scheduler is not None:
                self._scheduler.stop()
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
        if self._scheduler is not None:
            cancelled = self._scheduler.cancel_all()
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
        options = carbon_options(task)
        upstream = self._held_inputs(parameters, wait_for)
        if options is not None and not upstream and _already_cached(task, parameters):
            options = None  # a cached result costs no energy: no reason to wait or move
        if options is None and not upstream:
            return self.inner.submit(task, parameters, wait_for, dependencies)
        self._remember_flow_run()
        context = contextvars.copy_context()
        now = self.clock.now()
        label = _label(task, parameters)
        if options is None:
            region, start, run = self.home, now, None
        else:
            decision = self._decide(task, options, label, now)
            region, start = self._placement(options, decision, now)
            run = _Run(label, decision, now, None if options.energy_kwh else
                       options.watts(self.power), options.energy_kwh)
            with self._lock:
                self._runs.append(run)
            self._log_decision(run, options)
        try:
            if start - now < self.min_deferral and not upstream:
                return self._launch(task, parameters, wait_for, dependencies, region, run)
            return self._hold(task, parameters, wait_for, dependencies, region, run, start,
                              upstream, context, label)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.overhead_seconds += elapsed
                self.submissions += 1
                self.submit_seconds.append(elapsed)

    def _placement(self, options: CarbonOptions, decision: Decision, now: float
                   ) -> tuple[str, float]:
        if options.mode == "advise" or not decision.planned:
            return self.home, now
        region = decision.region if options.relocates else self.home
        start = decision.start if options.defers else now
        return region, max(now, start)

    def _hold(self, task: Any, parameters: dict[str, Any], wait_for: Any, dependencies: Any,
              region: str, run: _Run | None, start: float, upstream: list[DeferredFuture],
              context: contextvars.Context, label: str) -> DeferredFuture:
        placeholder_id = uuid.uuid4()
        future = DeferredFuture(placeholder_id, start, label)
        show = self.placeholders and run is not None and start - self.clock.now() >= \
            self.min_deferral
        remaining = [1 + len(upstream)]
        gate = threading.Lock()

        def arrive(*_: Any) -> None:
            with gate:
                remaining[0] -= 1
                if remaining[0]:
                    return
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

        with self._lock:
            self._held.append(future)
        if show and self._api is not None:
            reason = run.decision.reason if run else "waiting for its inputs"
            flow_run_id = self._flow_run_id
            self._api.put(lambda: carbon_artifacts.create_placeholder(
                task, flow_run_id, placeholder_id, start, label, reason))
        assert self._scheduler is not None
        self._scheduler.at(start, arrive, on_cancel=cancelled, label=label)
        for up in upstream:
            up.add_done_callback(arrive)
        return future

    def _launch(self, task: Any, parameters: dict[str, Any], wait_for: Any, dependencies: Any,
                region: str, run: _Run | None) -> PrefectFuture[Any]:
        runner = self.regions.get(region, self.inner) if region != self.home else self.inner
        parameters = _unwrap(parameters, keep_futures=runner is self.inner)
        wait_for = [f.inner or f if isinstance(f, DeferredFuture) else f
                    for f in (wait_for or [])] or None
        if run is not None:
            run.actual_start = self.clock.now()
            run.actual_region = region
        inner = runner.submit(task, parameters, wait_for, dependencies)
        if run is not None:
            inner.add_done_callback(lambda _done: setattr(run, "actual_end", self.clock.now()))
        return inner

    # -- deciding -----------------------------------------------------------------------------
    def _decide(self, task: Any, options: CarbonOptions, label: str, now: float) -> Decision:
        duration, note = self._duration(task, options)
        allowed = tuple(r for r in options.regions if r in self.regions or r == self.home)
        defers = options.defers or options.mode == "advise"
        try:
            job = Job(duration=duration, earliest=now, home=self.home,
                      power_w=None if options.energy_kwh else options.watts(self.power),
                      energy_kwh=options.energy_kwh,
                      deadline=options.deadline if defers else None,
                      max_delay=(options.max_delay if defers else 0.0)
                      if options.deadline is None or not defers else options.max_delay,
                      regions=allowed if options.relocates or options.mode == "advise" else (),
                      data_gb=options.data_gb, name=label)
        except CarbonError as exc:
            return run_now_at_home(_fallback_job(label, now, self.home, duration), str(exc),
                                   planned_at=now)
        forecasts, failures = self._forecasts_for(job, now)
        if not forecasts or self.home not in forecasts:
            why = "; ".join(failures) or f"no forecast for {self.home}"
            return run_now_at_home(job, f"carbon data unavailable ({why})", planned_at=now)
        if job.deadline is not None and job.deadline < now + duration:
            return run_now_at_home(job, "its deadline cannot be met even now",
                                   forecast=forecasts.get(self.home), planned_at=now)
        with self._lock:
            decision = Planner(forecasts, clock=self.clock.now).plan(job, load=self._ledger)
            self._ledger.reserve(decision.region, decision.intervals)
        notes = [n for n in (decision.note, note, "; ".join(failures)) if n]
        return decision.with_(note="; ".join(notes)) if notes else decision

    def _duration(self, task: Any, options: CarbonOptions) -> tuple[float, str]:
        if options.duration is not None:
            return options.duration, ""
        key = getattr(task, "task_key", task.name)
        if key not in self._durations:
            self._durations[key] = _past_duration(task)
        learned = self._durations[key]
        if learned is None:
            return self.default_duration, (f"duration unknown, assumed "
                                           f"{self.default_duration / HOUR:g} h")
        return learned, f"duration {learned / 60:.1f} min learned from past runs"

    def _forecasts_for(self, job: Job, now: float) -> tuple[dict[str, IntensitySeries],
                                                             list[str]]:
        needed = max(job.window_end - now, job.duration) + HOUR
        forecasts, failures = {}, []
        for region in job.allowed:
            cached = self._forecasts.get(region)
            # age in wall time: how long since we asked; coverage in grid time
            if cached and time.monotonic() - cached[0] < self.refresh_every and \
                    cached[1].covers(now, now + needed):
                forecasts[region] = cached[1]
                continue
            try:
                series = forecast_for(self.provider, region, now, max(self.horizon, needed),
                                      using=self.using)
            except (ProviderError, CarbonError, OSError) as exc:
                log.warning("carbon-aware runner: no forecast for %s: %s", region, exc)
                failures.append(f"{region}: {exc}")
                continue
            self._forecasts[region] = (time.monotonic(), series)
            forecasts[region] = series
        return forecasts, failures

    def _log_decision(self, run: _Run, options: CarbonOptions) -> None:
        d = run.decision
        if not d.planned:
            line = f"carbon: {run.label}: run now in {self.home} ({d.note})"
        else:
            acting = {"advise": "advice only, running now at home"}.get(options.mode, "")
            line = (f"carbon: {run.label}: {d.action}, start {iso(d.start)} in {d.region}; "
                    f"expected {d.expected_g:.2f} gCO2eq vs {d.now_home_g:.2f} g now in "
                    f"{d.home}")
            if d.best_now_region != d.home:
                line += f" and {d.best_now_g:.2f} g now in {d.best_now_region}"
            if d.note:
                line += f"; {d.note}"
            if acting:
                line += f" ({acting})"
        _run_logger().info(line)

    # -- reporting ----------------------------------------------------------------------------
    def _remember_flow_run(self) -> None:
        if self._flow_run_id is None:
            from prefect.context import FlowRunContext

            context = FlowRunContext.get()
            if context is not None and context.flow_run is not None:
                self._flow_run_id = context.flow_run.id

    def _finish(self) -> None:
        runs = [r for r in self._runs if r.actual_start is not None]
        if not self._runs:
            return
        histories = self._histories(runs)
        self.records = [
            record_outcome(r.decision, submitted=r.submitted, actual_start=r.actual_start,
                           actual_end=r.actual_end if r.actual_end is not None
                           else r.actual_start, actual_region=r.actual_region or self.home,
                           history=histories, power_w=r.power_w, energy_kwh=r.energy_kwh)
            for r in runs]
        log.info(summary_line(self.records))
        forecasts = {region: series for region, (_, series) in self._forecasts.items()}
        if self._flow_run_id is not None and self._api is not None:
            run_id, records = self._flow_run_id, list(self.records)
            self._api.put(lambda: carbon_artifacts.publish_report(run_id, records, forecasts))
            self._api.flush()
        if self._flow_run_id is not None:
            try:
                save_records(self._store(), str(self._flow_run_id), self.records)
            except Exception as exc:
                log.warning("could not keep the carbon records of run %s: %s",
                            self._flow_run_id, exc)

    def _histories(self, runs: list[_Run]) -> dict[str, IntensitySeries]:
        if not runs:
            return {}
        start = min(r.submitted for r in runs) - HOUR
        end = max((r.actual_end or r.actual_start or r.submitted) + r.decision.end
                  - r.decision.start for r in runs) + HOUR
        regions = {self.home} | {r.actual_region for r in runs if r.actual_region}
        histories = {}
        for region in regions:
            try:
                histories[region] = self.provider.history(region, start, end)
            except (ProviderError, CarbonError, OSError) as exc:
                log.warning("no intensity history for %s to account emissions: %s", region, exc)
        return histories

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
        _collect_deferred(parameters, found, 0)
        _collect_deferred(list(wait_for or ()), found, 0)
        return found


def _collect_deferred(value: Any, found: list[DeferredFuture], depth: int) -> None:
    """A cheap walk of plain containers (Prefect's visit_collection is general but slow)."""
    if isinstance(value, DeferredFuture):
        if not value.done():
            found.append(value)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect_deferred(item, found, depth + 1)
    elif depth < 8 and isinstance(value, dict):
        for item in value.values():
            _collect_deferred(item, found, depth + 1)


def _unwrap(parameters: dict[str, Any], *, keep_futures: bool) -> dict[str, Any]:
    """Swap released deferred futures for their real futures, or for their values when the
    work goes to another runner (a future of one runner means nothing to another)."""
    def visit(expr: Any) -> Any:
        if isinstance(expr, DeferredFuture):
            if keep_futures and expr.inner is not None:
                return expr.inner
            return expr.result()
        return expr

    return visit_collection(parameters, visit, return_data=True)


def _already_cached(task: Any, parameters: dict[str, Any]) -> bool:
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


def _label(task: Any, parameters: dict[str, Any]) -> str:
    names = [f"{k}={v!r}" for k, v in parameters.items()
             if isinstance(v, (int, float, str)) and len(repr(v)) <= 24][:2]
    return f"{task.name}({', '.join(names)})" if names else task.name


def _fallback_job(label: str, now: float, home: str, duration: float) -> Job:
    return Job(duration=max(duration, 1.0), earliest=now, home=home, energy_kwh=0.0, name=label)


def _past_duration(task: Any) -> float | None:
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


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return log
