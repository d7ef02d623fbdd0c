"""Backtests: replay jobs over a historical series, each decision forecast from the past only.

Used by ``bench/carbon_eval.py`` and its tests. The forecasts come from a method's
``predict_block`` at each decision's origin (the index of the decision hour: values before it
are known, the value of that hour is not), so no decision sees its own outcome; only the
:class:`~flowcache.carbon.forecasting.seasonal.PerfectForesight` oracle does, by design.
Savings are measured on the true series, against running at once (or at the nominal time for
scheduled jobs).

Two protocols for deferrable jobs: **plan once** (:func:`defer_hourly`: the start is fixed when
the job arrives) and **re-plan** (:func:`defer_hourly_replan`: a waiting job is re-evaluated
every slot with the forecast made then, and starts when "now" is its best remaining option or
its latest start has come; the runtime counterpart is :mod:`flowcache.carbon.replan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flowcache.carbon.forecasting.intervals import LEVELS, chance_above, window_offsets
from flowcache.carbon.forecasting.seasonal import Forecaster, predict


@dataclass(frozen=True)
class Outcome:
    """Emissions of a replay: with the method's choices and running at once."""

    chosen: float
    baseline: float

    @property
    def saving(self) -> float:
        return 1.0 - self.chosen / self.baseline if self.baseline else 0.0


def forecasts(values: np.ndarray, origins: np.ndarray, horizon: int,
              methods: Mapping[str, Forecaster], period: int = 24,
              start: float | None = None) -> dict[str, np.ndarray]:
    """Each method's (origins x horizon) forecast matrix (``start``: epoch of ``values[0]``,
    for methods that use the calendar)."""
    return {name: predict(m, values, origins, horizon, period, start=start)
            for name, m in methods.items()}


def defer_hourly(values: np.ndarray, origins: np.ndarray, forecast: np.ndarray,
                 max_delay: int, mask: np.ndarray | None = None) -> Outcome:
    """One-slot jobs arriving at each origin, allowed to start up to ``max_delay`` slots later:
    each starts in the slot its forecast says is cheapest (ties: the earliest)."""
    choice = np.argmin(forecast[:, : max_delay + 1], axis=1)
    sel = np.ones(origins.size, bool) if mask is None else mask
    return Outcome(float(values[origins[sel] + choice[sel]].sum()),
                   float(values[origins[sel]].sum()))


def replan_starts(origins: np.ndarray, forecast: np.ndarray, max_delay: int) -> np.ndarray:
    """Start slot of a one-slot job arriving at each origin under re-planning.

    ``origins`` must be consecutive slots and ``forecast`` their forecasts (each made from the
    data before its own origin). The job arriving at ``t`` is looked at again at every slot
    ``s = t, t + 1, ...``: with ``r = t + max_delay - s`` slots of slack left, it starts at
    ``s`` if the forecast made at ``s`` puts slot ``s`` at or below every slot up to ``s + r``
    (ties: now), and at ``t + max_delay`` at the latest. A job still waiting at the last origin
    takes that origin's plan for the rest of its window."""
    origins = np.asarray(origins)
    if origins.size > 1 and not np.all(np.diff(origins) == 1):
        raise ValueError("re-planning needs a forecast at every slot: origins must be consecutive")
    n = origins.size
    f = forecast[:, : max_delay + 1]
    go = np.ones((n, max_delay + 1), bool)   # go[s, r]: at s with r slots of slack, start now
    if max_delay:
        go[:, 1:] = f[:, :1] <= np.minimum.accumulate(f[:, 1:], axis=1)
    start = origins + max_delay
    decided = np.zeros(n, bool)
    idx = np.arange(n)
    for k in range(max_delay + 1):
        s = idx + k
        here = ~decided & (s < n)
        here[here] = go[s[here], max_delay - k]
        start[here] = origins[idx[here]] + k
        decided |= here
    if not decided.all():  # windows running past the last origin: its forecast plans the rest
        slack = origins[~decided] + max_delay - origins[-1]
        last = f[-1]
        start[~decided] = origins[-1] + np.array([int(np.argmin(last[: r + 1])) for r in slack])
    return start


def defer_hourly_replan(values: np.ndarray, origins: np.ndarray, forecast: np.ndarray,
                        max_delay: int, mask: np.ndarray | None = None) -> Outcome:
    """Like :func:`defer_hourly`, under re-planning (:func:`replan_starts`)."""
    start = replan_starts(origins, forecast, max_delay)
    sel = np.ones(origins.size, bool) if mask is None else mask
    return Outcome(float(values[start[sel]].sum()), float(values[origins[sel]].sum()))


def defer_multi_region(values: Sequence[np.ndarray], home: int, origins: np.ndarray,
                       forecast: Sequence[np.ndarray], max_delay: int,
                       mask: np.ndarray | None = None) -> Outcome:
    """Like :func:`defer_hourly`, but the job may also run in any of the given regions."""
    stacked = np.stack([f[:, : max_delay + 1] for f in forecast], 1)  # (n, regions, delay)
    flat = stacked.reshape(origins.size, -1)
    best = np.argmin(flat, axis=1)
    region, delay = np.divmod(best, max_delay + 1)
    truth = np.stack(values)
    sel = np.ones(origins.size, bool) if mask is None else mask
    return Outcome(float(truth[region[sel], origins[sel] + delay[sel]].sum()),
                   float(values[home][origins[sel]].sum()))


def nightly(values: np.ndarray, forecast: np.ndarray, decision: np.ndarray,
            flex_slots: int, job_slots: float = 0.5, step: float = 0.5) -> Outcome:
    """A job of ``job_slots`` slots nominally at ``nominal`` may start anywhere within
    ``flex_slots`` either side; decided at ``decision`` (= nominal - flex) from the forecast,
    whose column 0 is the slot at ``decision``. Windows are time-weighted over slots."""
    offsets = np.arange(0.0, 2 * flex_slots + step / 2, step)            # from the decision time
    def window_means(rows: np.ndarray) -> np.ndarray:
        cum = np.concatenate([np.zeros((rows.shape[0], 1)), np.cumsum(rows, 1)], 1)
        grid = np.arange(cum.shape[1])
        lo = np.array([np.interp(offsets, grid, c) for c in cum])
        hi = np.array([np.interp(offsets + job_slots, grid, c) for c in cum])
        return (hi - lo) / job_slots
    width = int(np.ceil(2 * flex_slots + job_slots)) + 1
    truth = values[decision[:, None] + np.arange(width)[None, :]]
    predicted = window_means(forecast[:, :width])
    actual = window_means(truth)
    pick = np.argmin(predicted, axis=1)
    chosen = actual[np.arange(decision.size), pick]
    base_idx = round(flex_slots / step)
    return Outcome(float(chosen.sum()), float(actual[:, base_idx].sum()))


def rolling_offsets(values: np.ndarray, origins: np.ndarray, forecast: np.ndarray,
                    days: float, half_life: float | None, period: int = 24,
                    every: int = 1) -> np.ndarray:
    """The split-conformal offsets (origins x levels x horizon) each decision would have had:
    at origin ``o``, the errors of the forecasts made at earlier origins whose outcome was
    known before ``o``, over the last ``days`` days, weighted by age (``half_life`` days), as
    :func:`~flowcache.carbon.forecasting.intervals.calibrate` does live (``origins``
    consecutive, ``forecast`` their matrix). Recalibrated every ``every`` origins (1: at each,
    as a live runner refreshing hourly)."""
    n, horizon = forecast.shape
    index = origins[:, None] + np.arange(horizon)[None, :]
    truth = np.where(index < values.size, values[np.minimum(index, values.size - 1)], np.nan)
    errors = truth - forecast
    window = int(days * period)
    out = np.full((n, len(LEVELS), horizon), np.nan)
    current = np.full((len(LEVELS), horizon), np.nan)
    for i in range(n):
        if i % every == 0:
            lo = max(0, i - window - horizon)
            current = window_offsets(errors[lo:i], origins[lo:i], int(origins[i]), window,
                                     half_life * period if half_life else None)
        out[i] = current
    return out


def coverage(values: np.ndarray, origins: np.ndarray, forecast: np.ndarray,
             offsets: np.ndarray, low_row: int, high_row: int,
             mask: np.ndarray | None = None) -> np.ndarray:
    """Per horizon, the share of outcomes inside ``[forecast + offsets[low_row],
    forecast + offsets[high_row]]`` (decisions with an unknown interval left out)."""
    index = origins[:, None] + np.arange(forecast.shape[1])[None, :]
    ok = index < values.size
    truth = np.where(ok, values[np.minimum(index, values.size - 1)], np.nan)
    low = forecast + offsets[:, low_row, :]
    high = forecast + offsets[:, high_row, :]
    sel = np.ones(origins.size, bool) if mask is None else mask
    valid = sel[:, None] & ok & ~np.isnan(low) & ~np.isnan(high) & ~np.isnan(truth)
    inside = (truth >= low) & (truth <= high) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside.sum(axis=0) / valid.sum(axis=0)


@dataclass(frozen=True)
class RiskOutcome:
    """A replay of one-slot deferrals: its saving, and how often waiting turned out worse."""

    outcome: Outcome
    decisions: int
    deferred: int
    worse: int  # deferred, and the chosen slot turned out dirtier than running at once
    predicted_worse: float  # the mean chance of that, as the intervals said at decision time


def defer_hourly_risk(values: np.ndarray, origins: np.ndarray, forecast: np.ndarray,
                      offsets: np.ndarray, max_delay: int, level: float, *,
                      risk_aware: bool, levels: Sequence[float] = LEVELS,
                      mask: np.ndarray | None = None) -> RiskOutcome:
    """Like :func:`defer_hourly`; when ``risk_aware``, a deferral is kept only if its expected
    saving beats the error quantile at ``level`` for the chosen slot (the live rule,
    :mod:`flowcache.carbon.risk`, with tolerance ``1 - level``). Decisions whose interval is
    unknown keep their choice."""
    f = forecast[:, : max_delay + 1]
    choice = np.argmin(f, axis=1)
    rows = np.arange(origins.size)
    saving = f[:, 0] - f[rows, choice]
    grid = np.asarray(levels, dtype=np.float64)
    below = int(np.searchsorted(grid, level, side="right") - 1)
    above = min(below + 1, grid.size - 1)
    share = 0.0 if above == below else (level - grid[below]) / (grid[above] - grid[below])
    margin = (1 - share) * offsets[rows, below, choice] + share * offsets[rows, above, choice]
    if risk_aware:
        choice = np.where((choice > 0) & ~np.isnan(margin) & ~(saving > margin), 0, choice)
    sel = np.ones(origins.size, bool) if mask is None else mask
    chosen = values[origins + choice]
    now = values[origins]
    deferred = sel & (choice > 0)
    chance = np.array([chance_above(offsets[i, :, c], saving[i], levels)
                       for i, c in zip(np.flatnonzero(deferred), choice[deferred], strict=True)])
    return RiskOutcome(Outcome(float(chosen[sel].sum()), float(now[sel].sum())),
                       decisions=int(sel.sum()), deferred=int(deferred.sum()),
                       worse=int((deferred & (chosen > now)).sum()),
                       predicted_worse=float(np.nanmean(chance)) if chance.size else 0.0)

