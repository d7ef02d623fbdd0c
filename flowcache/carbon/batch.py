"""Batch planning: many jobs at once, vectorised, within per-region capacity.

Capacity is the number of planned jobs a region may run at once, counted per ``capacity_slot``
(default one hour): a job occupies every slot its run overlaps. Without it, deferred work piles
into the single cleanest hour. Placement runs in rounds: every unplaced job proposes its best
(start, region) among windows that do not touch a full slot; each slot accepts proposals in order
of urgency (least slack first, then submission order) up to its remaining capacity, a proposal
needs room in all its slots, and the rest propose again with the now-full slots excluded. A
job with no room left anywhere runs now at home, with that reason. A :class:`CapacityLedger` can
be kept between calls so jobs submitted later respect earlier reservations.

The vectorised path covers the common ranking (carbon first, exact comparison) with any hard
limits, and a soft delay limit; other rankings, several soft delay limits and interruptible jobs
are planned one by one with :meth:`Planner.plan` in urgency order (same semantics, slower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from flowcache.carbon.capacity import CapacityLedger
from flowcache.carbon.constraints import Ranking
from flowcache.carbon.decision import Decision, Job, run_now_at_home
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.windows import EPS, WindowTable


class JobPlanner(Protocol):
    """What batch planning needs of a planner (:class:`~flowcache.carbon.planner.Planner`)."""

    forecasts: Mapping[str, IntensitySeries]
    ranking: Ranking
    kwh_per_gb: float
    clock: Callable[[], float]

    def plan(self, job: Job, *, load: CapacityLedger | None = None) -> Decision: ...

    def window_means(self, region: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray: ...

    def cost(self, job: Job, region: str) -> Any: ...


def plan_batch(planner: JobPlanner, jobs: Sequence[Job], *, capacity: int | Mapping[str, int] |
               None = None, capacity_slot: float = 3600.0, ledger: CapacityLedger | None = None
               ) -> list[Decision]:
    if ledger is None and capacity is not None:
        ledger = CapacityLedger(capacity, capacity_slot)
    soft_delays = [c for c in planner.ranking.constraints if c.metric == "delay" and not c.hard]
    if not planner.ranking.carbon_first or len(soft_delays) > 1 or \
            any(j.interruptible for j in jobs):
        return _one_by_one(planner, jobs, ledger)
    return _Vectorised(planner, list(jobs), ledger).run()


def urgency(jobs: Sequence[Job]) -> np.ndarray:
    """Order of placement: least slack first, then submission order."""
    slack = np.array([j.latest_start - j.earliest for j in jobs])
    return np.lexsort((np.arange(len(jobs)), slack))


def _one_by_one(planner: JobPlanner, jobs: Sequence[Job], ledger: CapacityLedger | None
                ) -> list[Decision]:
    out: list[Decision | None] = [None] * len(jobs)
    for i in urgency(jobs):
        decision = planner.plan(jobs[i], load=ledger)
        if ledger is not None:
            ledger.reserve(decision.region, decision.intervals)
        out[i] = decision
    return [d for d in out if d is not None]


class _Vectorised:
    def __init__(self, planner: JobPlanner, jobs: list[Job], ledger: CapacityLedger | None) -> None:
        self.run_now = run_now_at_home
        self.p, self.jobs, self.ledger = planner, jobs, ledger
        self.now = planner.clock()
        self.regions = list(dict.fromkeys(r for j in jobs for r in j.allowed
                                          if r in planner.forecasts))
        n, nr = len(jobs), len(self.regions)
        self.d = np.array([j.duration for j in jobs])
        self.lo = np.array([j.earliest for j in jobs])
        self.hi = np.array([j.latest_start for j in jobs])
        self.energy = np.array([j.energy for j in jobs])
        self.rank = np.full((n, nr), 10**6)
        for i, job in enumerate(jobs):
            for pos, region in enumerate(job.allowed):
                if region in planner.forecasts:
                    self.rank[i, self.regions.index(region)] = pos
        self.allowed = self.rank < 10**6
        home = np.array([self.regions.index(j.home) if j.home in self.regions else -1
                         for j in jobs])
        self.now_means = np.full((n, nr), np.nan)
        ends = np.array([j.window_end for j in jobs])
        window = np.full((n, nr), np.nan)
        for r, region in enumerate(self.regions):
            series = planner.forecasts[region]
            self.now_means[:, r] = series.mean(self.lo, self.lo + self.d)
            window[:, r] = planner.window_means(region, self.lo, ends)
        rows = np.arange(n)
        home_window = np.where(home >= 0, window[rows, np.maximum(home, 0)], np.nan)
        gb = np.array([j.data_gb for j in jobs])
        ends_mean = np.where(np.isnan(home_window[:, None]), window,
                             np.where(np.isnan(window), home_window[:, None],
                                      (home_window[:, None] + window) / 2))
        self.transfer = np.where(np.isfinite(ends_mean), ends_mean, 0.0) * \
            (gb * planner.kwh_per_gb)[:, None]
        self.transfer[rows[home >= 0], home[home >= 0]] = 0.0
        self.cost = np.zeros((n, nr))
        if planner.prices:
            for i, job in enumerate(jobs):
                for r in np.flatnonzero(self.allowed[i]):
                    self.cost[i, r] = planner.cost(job, self.regions[r])
        self.baseline = np.where(home >= 0, self.energy * self.now_means[rows, np.maximum(home, 0)],
                                 np.nan)
        self.home_cost = np.array([planner.cost(j, j.home) for j in jobs]) if planner.prices \
            else np.zeros(n)
        self.soft_hi = np.full(n, np.inf)
        for c in planner.ranking.constraints:
            if c.metric == "delay":
                bound = self.lo + (c.limit * self.d if c.relative else c.limit)
                if c.hard:
                    self.hi = np.minimum(self.hi, bound)
                else:
                    self.soft_hi = np.minimum(self.soft_hi, bound)
        now_g = self.energy[:, None] * self.now_means + self.transfer
        now_g = np.where(self.allowed & np.isfinite(now_g), now_g, np.inf)
        self.best_now = np.where(np.isfinite(now_g).any(1), np.argmin(now_g, 1), -1)
        self.best_now_g = np.where(self.best_now >= 0, now_g.min(1), np.nan)
        self.has_soft = any(not c.hard for c in planner.ranking.constraints)
        self.soft_delay = next((c for c in planner.ranking.constraints
                                if c.metric == "delay" and not c.hard), None)
        self.groups = {key: np.flatnonzero(np.round(self.d, 3) == key)
                       for key in np.unique(np.round(self.d, 3))}
        self.tables: dict[tuple[str, float], WindowTable] = {}
        for key, idx in self.groups.items():
            for region in self.regions:
                self.tables[(region, key)] = WindowTable(
                    planner.forecasts[region], float(key), float(self.lo[idx].min()),
                    float(self.hi[idx].max()))

    # -- proposals ------------------------------------------------------------------
    def _endpoint(self, region: str, starts: np.ndarray, duration: float, ok: np.ndarray
                  ) -> np.ndarray:
        means = self.p.forecasts[region].mean(starts, starts + duration)
        means = np.where(ok & np.isfinite(means), means, np.inf)
        if self.ledger is not None:
            means = np.where(self.ledger.blocked(region, starts, duration), np.inf, means)
        return means

    def _best_in(self, idx: np.ndarray, region: str, key: float, hi: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        table = self.tables[(region, key)]
        lo = self.lo[idx]
        ok = hi >= lo - EPS
        k, score = table.best(lo, hi)
        start = np.where(k >= 0, table.starts[np.maximum(k, 0)], np.inf)
        for point in (lo, hi):
            m = self._endpoint(region, point, key, ok)
            better = (m < score) | ((m == score) & (point < start) & np.isfinite(m))
            score = np.where(better, m, score)
            start = np.where(better, point, start)
        return start, score

    def propose(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best option per job: (region index or -1, start, mean intensity)."""
        nr, ranges = len(self.regions), (2 if self.soft_delay is not None else 1)
        start = np.full((idx.size, nr, ranges), np.inf)
        mean = np.full((idx.size, nr, ranges), np.inf)
        for key, members in self.groups.items():
            sel = np.flatnonzero(np.isin(idx, members))
            if not sel.size:
                continue
            jobs = idx[sel]
            for r, region in enumerate(self.regions):
                his = [self.hi[jobs]] + ([np.minimum(self.hi[jobs], self.soft_hi[jobs])]
                                         if ranges == 2 else [])
                for g, hi in enumerate(his):
                    start[sel, r, g], mean[sel, r, g] = self._best_in(jobs, region, key, hi)
        carbon = self.energy[idx, None, None] * mean + self.transfer[idx, :, None]
        feasible = self.allowed[idx, :, None] & np.isfinite(carbon)
        violations = np.zeros(carbon.shape, np.int64)
        base = {"carbon": self.baseline[idx], "cost": self.home_cost[idx]}
        values = {"carbon": carbon, "cost": np.broadcast_to(self.cost[idx, :, None], carbon.shape)}
        for c in self.p.ranking.constraints:
            if c.metric == "delay":
                if not c.hard:
                    violations += start > self.soft_hi[idx, None, None] + EPS
                continue
            bound = self.lo[idx] * 0 + c.bound(np.nan, 0.0) if not c.relative else \
                base[c.metric] * (1.0 + c.limit)
            ok = values[c.metric] <= np.where(np.isnan(bound), np.inf, bound)[:, None, None] + 1e-9
            if c.hard:
                feasible &= ok
            else:
                violations += ~ok
        flat = lambda a: a.reshape(idx.size, -1)  # noqa: E731
        keys = [flat(np.broadcast_to(self.rank[idx, :, None], carbon.shape)), flat(start)]
        metric_values = {"carbon": carbon, "delay": start - self.lo[idx, None, None],
                         "cost": values["cost"]}
        for metric in reversed(self.p.ranking.priority):  # no tolerances on this path
            keys.append(flat(metric_values[metric]))
        keys.append(np.where(flat(feasible), flat(violations), 10**9))
        best = np.lexsort(keys, axis=-1)[:, 0]
        rows = np.arange(idx.size)
        found = flat(feasible)[rows, best]
        region = np.where(found, best // ranges, -1)
        return region, flat(start)[rows, best], flat(mean)[rows, best]

    # -- rounds ------------------------------------------------------------------
    def run(self) -> list[Decision]:
        n = len(self.jobs)
        out: list[Decision | None] = [None] * n
        late = np.array([j.deadline is not None and j.earliest + j.duration > j.deadline + EPS
                         for j in self.jobs], dtype=bool)
        for i in np.flatnonzero(late):
            job = self.jobs[i]
            out[i] = self.run_now(job, "the deadline cannot be met: the job needs "
                                  f"{job.duration / 3600:g} h and only "
                                  f"{(job.deadline - job.earliest) / 3600:g} h remain",  # type: ignore[operator]
                                  self.p.forecasts.get(job.home), planned_at=self.now)
        order = urgency(self.jobs)
        pending = order[~late[order]]
        placed = False
        while pending.size:
            region, start, mean = self.propose(pending)
            none = region < 0
            why = "no capacity left in any allowed region before the deadline" \
                if self.ledger is not None and placed else \
                "no forecast window satisfies the job and its hard constraints"
            for i in pending[none]:
                out[i] = self._run_now(int(i), why)
            pending, region, start, mean = (pending[~none], region[~none], start[~none],
                                            mean[~none])
            accepted = self._accept(pending, region, start)
            for i, r, s, m in zip(pending[accepted], region[accepted], start[accepted],
                                  mean[accepted], strict=True):
                out[i] = self._decision(int(i), int(r), float(s), float(m))
            placed = placed or bool(accepted.any())
            if self.ledger is None or accepted.all():
                break
            for (name, key), table in self.tables.items():
                table.block(self.ledger.blocked(name, table.starts, key))
            pending = pending[~accepted]
        return [d for d in out if d is not None]

    def _accept(self, idx: np.ndarray, region: np.ndarray, start: np.ndarray) -> np.ndarray:
        if self.ledger is None or not idx.size:
            return np.ones(idx.size, bool)
        ledger = self.ledger
        first = np.floor(start / ledger.slot + 1e-9).astype(np.int64)
        last = np.maximum(first, np.ceil((start + self.d[idx]) / ledger.slot - 1e-9
                                         ).astype(np.int64) - 1)
        count = last - first + 1
        owner = np.repeat(np.arange(idx.size), count)
        offset = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
        slot = first[owner] + offset
        reg = region[owner]
        order = np.lexsort((owner, slot, reg))  # idx is already in urgency order
        reg_s, slot_s = reg[order], slot[order]
        new_group = np.r_[True, (reg_s[1:] != reg_s[:-1]) | (slot_s[1:] != slot_s[:-1])]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(order.size), 0))
        position = np.empty(order.size, np.int64)
        position[order] = np.arange(order.size) - group_start
        room = np.empty(owner.size, np.int64)
        for r in np.unique(reg):
            name = self.regions[r]
            cap = ledger.limit(name)
            sel = reg == r
            used = ledger.counts[name]
            room[sel] = (10**9 if cap is None else cap) - np.array(
                [used.get(int(x), 0) for x in slot[sel]], dtype=np.int64)
        ok_pair = position < room
        accepted = np.ones(idx.size, bool)
        np.logical_and.at(accepted, owner, ok_pair)
        for k in np.flatnonzero(accepted):
            ledger.reserve(self.regions[region[k]], [(float(start[k]),
                                                      float(start[k] + self.d[idx[k]]))])
        return accepted

    def _run_now(self, i: int, why: str) -> Decision:
        job = self.jobs[i]
        grams = float(self.baseline[i])
        end = job.earliest + job.duration
        return Decision(job=job.name, region=job.home, start=job.earliest, end=end,
                        intervals=((job.earliest, end),), expected_g=grams,
                        expected_intensity=grams / job.energy if job.energy else float("nan"),
                        energy_kwh=job.energy, transfer_g=0.0, delay=0.0, cost=None,
                        now_home_g=grams, best_now_region=job.home, best_now_g=grams,
                        home=job.home, fallback=True, planned=False, note=why,
                        planned_at=self.now)

    def _decision(self, i: int, r: int, start: float, mean: float) -> Decision:
        job = self.jobs[i]
        region = self.regions[r]
        series = self.p.forecasts[region]
        carbon = job.energy * mean + float(self.transfer[i, r])
        soft: tuple[str, ...] = ()
        if self.has_soft:
            metrics = {"carbon": np.array([carbon]), "delay": np.array([start - job.earliest]),
                       "cost": np.array([self.cost[i, r]])}
            baseline = {"carbon": float(self.baseline[i]), "delay": 0.0,
                        "cost": float(self.home_cost[i])}
            soft = tuple(self.p.ranking.evaluate(metrics, baseline, job.duration)[2][0])
        best = int(self.best_now[i])
        return Decision(
            job=job.name, region=region, start=start, end=start + job.duration,
            intervals=((start, start + job.duration),), expected_g=carbon,
            expected_intensity=mean, energy_kwh=job.energy, transfer_g=float(self.transfer[i, r]),
            delay=start - job.earliest, cost=float(self.cost[i, r]) if self.p.prices else None,
            now_home_g=float(self.baseline[i]),
            best_now_region=self.regions[best] if best >= 0 else job.home,
            best_now_g=float(self.best_now_g[i]), home=job.home, soft_violations=soft,
            fallback=bool(series.fallback), signal=series.signal, source=series.source,
            planned_at=self.now, note=f"on fallback data ({series.fallback})"
            if series.fallback else "")
