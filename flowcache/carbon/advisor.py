"""The carbon advisor: decides when and where each piece of carbon-aware work runs, and
accounts for what it then emitted. Shared by the Prefect runner and the Dask placer.

An engine hands it a unit of work (its :class:`CarbonOptions`, a label, the time now, a duration)
and gets a :class:`Decision` (forecasts fetched per region and reused for ``refresh_every`` wall
seconds; one capacity ledger for all decisions, so deferred work does not pile into one hour;
run now at home, with the reason, whenever carbon data is missing), plus where and when to put
it. After the work ran, the engine reports the actual start, end and region; :meth:`outcomes`
turns every placement into a :class:`DecisionRecord` with realised and counterfactual grams.

Nothing here may fail or stall a flow: the provider is asked through a
:class:`~flowcache.carbon.guard.GuardedProvider` (a time budget for all the flow's decisions,
another for its accounting, and a breaker), and any error while forecasting or planning
becomes "run now at home" with the reason. Work is deferred or moved only when the window it
gets (after capacity) is expected to beat running now at home and, when risk-aware (the
default), only when that saving beats the forecast's uncertainty at that horizon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flowcache.carbon.capacity import CapacityLedger
from flowcache.carbon.clocks import Clock, WallClock
from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.forecasting.methods import forecast_for
from flowcache.carbon.guard import GuardedProvider
from flowcache.carbon.options import CarbonOptions
from flowcache.carbon.planner import Planner, run_now_at_home
from flowcache.carbon.providers import IntensityProvider
from flowcache.carbon.records import DecisionRecord, record_outcome
from flowcache.carbon.risk import describe_risk, weigh_risk
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso
from flowcache.errors import CarbonError

log = logging.getLogger("flowcache.carbon.advisor")
HOUR = 3600.0


@dataclass
class Placement:
    """One piece of work: the decision, and then what actually happened."""

    label: str
    decision: Decision
    options: CarbonOptions
    submitted: float
    power_w: float | None
    energy_kwh: float | None
    region: str  # where it is to run
    start: float  # when it is to be released
    actual_start: float | None = None
    actual_end: float | None = None
    actual_region: str | None = None

    def started(self, now: float, region: str) -> None:
        self.actual_start, self.actual_region = now, region

    def finished(self, now: float) -> None:
        self.actual_end = now


class CarbonAdvisor:
    def __init__(self, provider: IntensityProvider, *, home: str, regions: Iterable[str] = (),
                 clock: Clock | None = None, capacity: int | dict[str, int] | None = None,
                 power: PowerModel | None = None, default_duration: float = HOUR,
                 horizon: float = 48 * HOUR, refresh_every: float = 900.0,
                 using: str = "default", decision_budget: float = 5.0,
                 accounting_budget: float = 5.0, retry_after: float = 300.0,
                 risk_aware: bool | float = True) -> None:
        self.provider = provider if isinstance(provider, GuardedProvider) else GuardedProvider(
            provider, budget=decision_budget, retry_after=retry_after)
        self.accounting_budget = accounting_budget
        self.risk_aware = risk_aware
        self.home = home
        self.regions = {home, *regions}
        self.clock = clock or WallClock()
        self.power = power or PowerModel()
        self.default_duration = default_duration
        self.horizon = horizon
        self.refresh_every = refresh_every
        self.using = using
        self.ledger = CapacityLedger(capacity)
        self.placements: list[Placement] = []
        self._forecasts: dict[str, tuple[float, IntensitySeries]] = {}
        self._lock = threading.Lock()

    @property
    def forecasts(self) -> dict[str, IntensitySeries]:
        return {region: series for region, (_, series) in self._forecasts.items()}

    # -- deciding -----------------------------------------------------------------------------
    def place(self, options: CarbonOptions, label: str, *, duration: float | None = None,
              duration_note: str = "") -> Placement:
        """Decide for one piece of work submitted now; returns where and when to run it."""
        now = self.clock.now()
        if duration is None:
            duration = options.duration
        if duration is None:
            duration = self.default_duration
            duration_note = duration_note or (f"duration unknown, assumed "
                                               f"{self.default_duration / HOUR:g} h")
        decision = self.decide(options, label, now, duration, duration_note)
        region, start = self._where_and_when(options, decision, now)
        placement = Placement(label, decision, options, now,
                              None if options.energy_kwh else options.watts(self.power),
                              options.energy_kwh, region, start)
        with self._lock:
            self.placements.append(placement)
        return placement

    def decide(self, options: CarbonOptions, label: str, now: float, duration: float,
               note: str = "") -> Decision:
        """The decision for one piece of work; never raises: any failure is "run now at home",
        with the reason."""
        try:
            return self._decide(options, label, now, duration, note)
        except Exception as exc:
            log.warning("carbon decision for %s failed (%s: %s); running it now at home",
                        label, type(exc).__name__, exc)
            fallback = Job(duration=max(duration, 1.0), earliest=now, home=self.home,
                           energy_kwh=0.0, name=label)
            return run_now_at_home(fallback, f"the carbon decision failed "
                                             f"({type(exc).__name__}: {exc})", planned_at=now)

    def _decide(self, options: CarbonOptions, label: str, now: float, duration: float,
                note: str) -> Decision:
        defers = options.defers or options.mode == "advise"
        allowed = tuple(r for r in options.regions if r in self.regions)
        try:
            job = Job(duration=duration, earliest=now, home=self.home,
                      power_w=None if options.energy_kwh else options.watts(self.power),
                      energy_kwh=options.energy_kwh,
                      deadline=options.deadline if defers else None,
                      max_delay=options.max_delay if defers else 0.0,
                      regions=allowed if options.relocates or options.mode == "advise" else (),
                      data_gb=options.data_gb, name=label)
        except CarbonError as exc:
            fallback = Job(duration=max(duration, 1.0), earliest=now, home=self.home,
                           energy_kwh=0.0, name=label)
            return run_now_at_home(fallback, str(exc), planned_at=now)
        forecasts, failures = self._forecasts_for(job, now)
        if self.home not in forecasts:
            why = "; ".join(failures) or f"no forecast for {self.home}"
            return run_now_at_home(job, f"carbon data unavailable ({why})", planned_at=now)
        if job.deadline is not None and job.deadline < now + duration:
            return run_now_at_home(job, "its deadline cannot be met even now",
                                   forecast=forecasts[self.home], planned_at=now)
        with self._lock:
            decision = Planner(forecasts, clock=self.clock.now).plan(job, load=self.ledger)
            if decision.planned and (decision.region != job.home or decision.start > now) \
                    and not decision.expected_g < decision.now_home_g:
                # capacity left this work only windows no better than running now: run now
                decision = run_now_at_home(
                    job, f"the window left after capacity ({decision.expected_g:.2f} g in "
                         f"{decision.region} at {iso(decision.start)}) is not expected to beat "
                         f"running now ({decision.now_home_g:.2f} g)",
                    forecast=forecasts[self.home], planned_at=now)
            else:
                decision = weigh_risk(job, decision, forecasts, now,
                                      risk_aware=self.risk_aware)
            self.ledger.reserve(decision.region, decision.intervals)
        notes = [n for n in (decision.note, note, "; ".join(failures)) if n]
        return decision.with_(note="; ".join(notes)) if notes else decision

    def _where_and_when(self, options: CarbonOptions, decision: Decision, now: float
                        ) -> tuple[str, float]:
        if options.mode == "advise" or not decision.planned:
            return self.home, now
        region = decision.region if options.relocates else self.home
        start = decision.start if options.defers else now
        return region, max(now, start)

    def _forecasts_for(self, job: Job, now: float) -> tuple[dict[str, IntensitySeries],
                                                             list[str]]:
        needed = max(job.window_end - now, job.duration) + HOUR
        forecasts, failures = {}, []
        for region in job.allowed:
            cached = self._forecasts.get(region)
            # age in wall time (how long since we asked); coverage in the clock's time
            if cached and time.monotonic() - cached[0] < self.refresh_every and \
                    cached[1].covers(now, now + needed):
                forecasts[region] = cached[1]
                continue
            try:
                series = forecast_for(self.provider, region, now, max(self.horizon, needed),
                                      using=self.using)
            except Exception as exc:  # no forecast for this region: the others may do
                log.warning("no carbon forecast for %s: %s", region, exc)
                failures.append(f"{region}: {exc}")
                continue
            self._forecasts[region] = (time.monotonic(), series)
            forecasts[region] = series
        return forecasts, failures

    def describe(self, placement: Placement) -> str:
        """The one readable log line of a decision."""
        d = placement.decision
        if not d.planned:
            return f"carbon: {placement.label}: run now in {self.home} ({d.note})"
        line = (f"carbon: {placement.label}: {d.action}, start {iso(d.start)} in {d.region}; "
                f"expected {d.expected_g:.2f} gCO2eq vs {d.now_home_g:.2f} g now in {d.home}")
        if d.best_now_region != d.home:
            line += f" and {d.best_now_g:.2f} g now in {d.best_now_region}"
        if d.note:
            line += f"; {d.note}"
        if risk := describe_risk(d):
            line += f"; {risk}"
        if placement.options.mode == "advise":
            line += " (advice only, running now at home)"
        return line

    # -- accounting ---------------------------------------------------------------------------
    def outcomes(self) -> list[DecisionRecord]:
        """A record for every placement that started, from the intensity history of its run
        (fetched within the accounting budget: what cannot be had is recorded as unknown)."""
        self.provider.renew(self.accounting_budget)
        started = [p for p in self.placements if p.actual_start is not None]
        histories = self._histories(started)
        return [record_outcome(p.decision, submitted=p.submitted, actual_start=p.actual_start,
                               actual_end=p.actual_end if p.actual_end is not None
                               else p.actual_start, actual_region=p.actual_region or self.home,
                               history=histories, power_w=p.power_w, energy_kwh=p.energy_kwh)
                for p in started]

    def _histories(self, placements: list[Placement]) -> dict[str, IntensitySeries]:
        if not placements:
            return {}
        start = min(p.submitted for p in placements) - HOUR
        end = max((p.actual_end or p.actual_start or p.submitted)
                  + p.decision.end - p.decision.start for p in placements) + HOUR
        regions = {self.home} | {p.actual_region for p in placements if p.actual_region}
        histories = {}
        for region in regions:
            try:
                histories[region] = self.provider.history(region, start, end)
            except Exception as exc:  # unknown emissions, not a failed flow
                log.warning("no intensity history for %s to account emissions: %s", region, exc)
        return histories
