"""The planner: for a job, the start time and region with the lowest expected emissions.

Inputs are forecasts (one :class:`IntensitySeries` per region) and a :class:`Job`; the output is
a :class:`Decision` that carries its counterfactuals (run now at home, the best region right now)
and a reason in words. The search is exact (see :mod:`flowcache.carbon.windows`); constraints and
priorities follow :mod:`flowcache.carbon.constraints`. Data moved to another region costs
``data_gb x kwh_per_gb`` of energy at the mean intensity of both ends over the job's window
(default 0.001 kWh/GB, the Cloud Carbon Footprint networking coefficient).

:meth:`Planner.plan` plans one job (the reference implementation, any ranking);
:meth:`Planner.plan_many` plans many at once, vectorised, within per-region capacity
(:mod:`flowcache.carbon.batch`, :mod:`flowcache.carbon.capacity`). When no forecast is
available, :func:`~flowcache.carbon.decision.run_now_at_home` gives the decision to fall back on,
and :func:`plan_with_provider` does that by itself on provider errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowcache.carbon.batch import plan_batch
from flowcache.carbon.capacity import CapacityLedger
from flowcache.carbon.constraints import Ranking
from flowcache.carbon.decision import Decision, Job, run_now_at_home
from flowcache.carbon.forecasting.methods import forecast_for
from flowcache.carbon.forecasting.seasonal import Forecaster
from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, to_epoch
from flowcache.carbon.windows import EPS, candidate_starts, cheapest_slots
from flowcache.errors import CarbonError, ProviderError

log = logging.getLogger("flowcache.carbon.planner")
#: Cloud Carbon Footprint's networking coefficient (kWh per GB transferred)
KWH_PER_GB = 0.001

__all__ = ["KWH_PER_GB", "Decision", "Job", "Planner", "RegionPrice", "plan_with_provider",
           "run_now_at_home"]


@dataclass(frozen=True)
class RegionPrice:
    """What running in a region costs: per hour of the job, and per GB moved into it."""

    per_hour: float = 0.0
    egress_per_gb: float = 0.0


@dataclass
class _Options:
    region: str
    rank: int
    starts: np.ndarray
    means: np.ndarray
    intervals: list[tuple[tuple[float, float], ...]] = field(default_factory=list)


class Planner:
    """Plans jobs against a fixed set of forecasts (one per region)."""

    def __init__(self, forecasts: Mapping[str, IntensitySeries], *,
                 ranking: Ranking | None = None, kwh_per_gb: float = KWH_PER_GB,
                 prices: Mapping[str, RegionPrice] | None = None,
                 clock: Any = time.time) -> None:
        self.forecasts = dict(forecasts)
        self.ranking = ranking or Ranking()
        self.kwh_per_gb = kwh_per_gb
        self.prices = dict(prices or {})
        self.clock = clock

    # -- shared pieces ------------------------------------------------------------------
    def regions_for(self, job: Job) -> list[str]:
        return [r for r in job.allowed if r in self.forecasts]

    def window_means(self, region: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Mean of the forecast slots overlapping each ``[lo, hi)`` (gaps ignored; NaN if none):
        the intensity data transfers are charged at."""
        series = self.forecasts[region]
        values = np.where(np.isnan(series.values), 0.0, series.values)
        total = np.r_[0.0, np.cumsum(values)]
        count = np.r_[0, np.cumsum(~np.isnan(series.values))]
        a = np.clip(np.floor((np.asarray(lo) - series.start) / series.resolution), 0, len(series))
        b = np.clip(np.ceil((np.asarray(hi) - series.start) / series.resolution), 0, len(series))
        a, b = a.astype(np.int64), np.maximum(a, b).astype(np.int64)
        n = count[b] - count[a]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (total[b] - total[a]) / np.maximum(n, 1), np.nan)

    def window_mean(self, region: str, job: Job) -> float:
        """Mean forecast intensity over the job's whole window (for transfer energy)."""
        return float(self.window_means(region, np.array([job.earliest]),
                                       np.array([job.window_end]))[0])

    def transfer_g(self, job: Job, region: str) -> float:
        if region == job.home or job.data_gb <= 0:
            return 0.0
        ends = [self.window_mean(job.home, job) if job.home in self.forecasts else np.nan,
                self.window_mean(region, job)]
        intensity = float(np.nanmean(ends)) if np.isfinite(ends).any() else 0.0
        return job.data_gb * self.kwh_per_gb * intensity

    def cost(self, job: Job, region: str) -> float:
        price = self.prices.get(region)
        if price is None:
            return 0.0
        egress = price.egress_per_gb * job.data_gb if region != job.home else 0.0
        return price.per_hour * job.duration / 3600.0 + egress

    def now_home(self, job: Job) -> float:
        home = self.forecasts.get(job.home)
        if home is None:
            return float("nan")
        return job.energy * float(home.mean(job.earliest, job.earliest + job.duration))

    # -- one job ------------------------------------------------------------------
    def plan(self, job: Job, *, load: CapacityLedger | None = None) -> Decision:
        """The best (start, region) for ``job`` (exhaustive, any ranking)."""
        now = self.clock()
        home_series = self.forecasts.get(job.home)
        if job.deadline is not None and job.earliest + job.duration > job.deadline + EPS:
            return run_now_at_home(job, f"the deadline cannot be met: the job needs "
                                   f"{job.duration / 3600:g} h and only "
                                   f"{(job.deadline - job.earliest) / 3600:g} h remain",
                                   home_series, planned_at=now)
        options = [self._options(job, region, rank, load)
                   for rank, region in enumerate(self.regions_for(job))]
        options = [o for o in options if o.starts.size]
        if not options:
            return run_now_at_home(job, "no forecast covers a window the job fits in "
                                   "(in any allowed region)", home_series, planned_at=now)
        starts = np.concatenate([o.starts for o in options])
        means = np.concatenate([o.means for o in options])
        which = np.concatenate([np.full(o.starts.size, i) for i, o in enumerate(options)])
        transfer = np.array([self.transfer_g(job, o.region) for o in options])[which]
        costs = np.array([self.cost(job, o.region) for o in options])[which]
        metrics = {"carbon": job.energy * means + transfer, "delay": starts - job.earliest,
                   "cost": costs}
        baseline = {"carbon": self.now_home(job), "delay": 0.0,
                    "cost": self.cost(job, job.home)}
        feasible, violations, broken = self.ranking.evaluate(metrics, baseline, job.duration)
        feasible &= np.isfinite(metrics["carbon"])
        if not feasible.any():
            why = "no option satisfies the hard constraints" if np.isfinite(
                metrics["carbon"]).any() else "the forecasts have gaps in every window"
            return run_now_at_home(job, why, home_series, planned_at=now)
        idx = np.flatnonzero(feasible)
        ranks = np.array([o.rank for o in options])[which]
        best = idx[self.ranking.best({k: v[idx] for k, v in metrics.items()}, violations[idx],
                                     starts[idx], ranks[idx])]
        option = options[which[best]]
        local = best - sum(o.starts.size for o in options[: which[best]])
        intervals = option.intervals[local] if option.intervals else \
            ((float(starts[best]), float(starts[best] + job.duration)),)
        return self._decision(job, option.region, float(starts[best]), intervals,
                              float(means[best]), float(transfer[best]), float(costs[best]),
                              tuple(broken[best]), now)

    def _options(self, job: Job, region: str, rank: int, load: CapacityLedger | None
                 ) -> _Options:
        series = self.forecasts[region]
        if job.interruptible:
            pieces, mean = cheapest_slots(series, job.duration, job.earliest, job.window_end)
            if not pieces or (load is not None and not load.fits(region, pieces)):
                return _Options(region, rank, np.empty(0), np.empty(0))
            return _Options(region, rank, np.array([pieces[0][0]]), np.array([mean]),
                            [tuple(pieces)])
        cuts = tuple(job.earliest + c.bound(0.0, job.duration)
                     for c in self.ranking.constraints if c.metric == "delay")
        starts = candidate_starts(series, job.duration, job.earliest, job.latest_start, cuts)
        means = series.mean(starts, starts + job.duration) if starts.size else np.empty(0)
        keep = np.isfinite(means)
        if load is not None and starts.size:
            keep &= ~load.blocked(region, starts, job.duration)
        return _Options(region, rank, starts[keep], means[keep])

    def _decision(self, job: Job, region: str, start: float,
                  intervals: tuple[tuple[float, float], ...], intensity: float,
                  transfer: float, cost: float, soft: tuple[str, ...], now: float) -> Decision:
        now_home = self.now_home(job)
        best_region, best_now = job.home, now_home
        for r in self.regions_for(job):
            g = job.energy * float(self.forecasts[r].mean(job.earliest,
                                                          job.earliest + job.duration))
            g += self.transfer_g(job, r)
            if np.isfinite(g) and (not np.isfinite(best_now) or g < best_now - 1e-9):
                best_region, best_now = r, g
        expected = job.energy * intensity + transfer
        series = self.forecasts[region]
        decision = Decision(
            job=job.name, region=region, start=start, end=intervals[-1][1], intervals=intervals,
            expected_g=expected, expected_intensity=intensity, energy_kwh=job.energy,
            transfer_g=transfer, delay=start - job.earliest, cost=cost if self.prices else None,
            now_home_g=now_home, best_now_region=best_region, best_now_g=best_now,
            home=job.home, soft_violations=soft, fallback=bool(series.fallback),
            signal=series.signal, source=series.source, planned_at=now,
            note=f"on fallback data ({series.fallback})" if series.fallback else "")
        return decision

    # -- many jobs ------------------------------------------------------------------
    def plan_many(self, jobs: Sequence[Job], *, capacity: int | Mapping[str, int] | None = None,
                  capacity_slot: float = 3600.0, ledger: CapacityLedger | None = None
                  ) -> list[Decision]:
        """Plan ``jobs`` together so that no region runs more than ``capacity`` of them in any
        ``capacity_slot``; see :func:`flowcache.carbon.batch.plan_batch`."""
        return plan_batch(self, jobs, capacity=capacity, capacity_slot=capacity_slot,
                          ledger=ledger)


def plan_with_provider(job: Job, provider: IntensityProvider, *,
                       using: str | Forecaster = "default", now: TimeLike | None = None,
                       history_days: float | None = None, **planner_options: Any) -> Decision:
    """Fetch forecasts for the job's regions and plan; on provider failure, run now at home.

    Regions whose forecast fails are left out (and named in the reason); if none is left, the
    decision is :func:`run_now_at_home` with the error as its reason, so a task runner can always
    go ahead.
    """
    t0 = to_epoch(now) if now is not None else job.earliest
    horizon = max(job.window_end - t0, job.duration, 3600.0)
    forecasts: dict[str, IntensitySeries] = {}
    failures: list[str] = []
    for region in job.allowed:
        try:
            forecasts[region] = forecast_for(provider, region, t0, horizon, using=using,
                                             history_days=history_days)
        except (ProviderError, CarbonError) as exc:
            log.warning("no carbon forecast for %s: %s", region, exc)
            failures.append(f"{region}: {exc}")
    if not forecasts:
        return run_now_at_home(job, "carbon data unavailable, running now at home ("
                               + "; ".join(failures) + ")", planned_at=t0)
    decision = Planner(forecasts, **planner_options).plan(job)
    if failures:
        left_out = "left out: " + "; ".join(failures)
        decision = decision.with_(note=f"{decision.note}; {left_out}" if decision.note
                                  else left_out)
    return decision
