"""Re-planning (rolling horizon): look at a waiting job again with fresher data until it starts.

A plan made when a job arrives rests on a forecast of the whole window; an hour later the
intensity of that hour is known and the forecast is better. A runner that keeps deferred jobs
waiting can call :func:`replan_step` (forecasts in hand) or :func:`replan_with_provider` at
each look (e.g. every hour): the job's remaining window is planned again from ``now``, with the
same latest start and deadline, and the step says whether to commit (the plan starts before the
next look) or to look again at ``next_check``. A job always starts by its latest start, so the
deadline holds whatever the forecasts do; on provider failure the step commits to running now
at home (:func:`~flowcache.carbon.planner.plan_with_provider`'s fallback).

The evaluation's counterpart is :func:`flowcache.carbon.replay.replan_starts`, which applies the
same rule to a year of hourly jobs at once (a test checks the two agree), so the re-planning
figures in docs/carbon-eval.md are what this module does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.planner import Planner, plan_with_provider
from flowcache.carbon.timestamps import TimeLike, to_epoch

if TYPE_CHECKING:
    from flowcache.carbon.forecasting.seasonal import Forecaster
    from flowcache.carbon.providers.base import IntensityProvider
    from flowcache.carbon.series import IntensitySeries

HOUR = 3600.0


@dataclass(frozen=True)
class ReplanStep:
    """One look at a waiting job.

    ``commit``: start as ``decision`` says (its start is before the next look); otherwise keep
    waiting and call again at ``next_check``. ``decision`` is the plan made at this look: its
    ``delay`` counts from the job's original earliest start, but its counterfactuals
    (``now_home_g``, ``best_now_g``) are "run at this look"; keep the first look's decision to
    report savings against running on arrival.
    """

    commit: bool
    decision: Decision
    next_check: float | None

    @property
    def start(self) -> float:
        return self.decision.start


def remaining(job: Job, now: TimeLike) -> Job:
    """The job as seen at ``now``: earliest start ``now`` (or later), same latest start and
    deadline, so re-planning can never push it past its original window (a look after the
    latest start leaves no slack: run now)."""
    t = max(to_epoch(now), job.earliest)
    changes: dict[str, Any] = {"earliest": t}
    if job.max_delay is not None:
        changes["max_delay"] = max(0.0, job.latest_start - t)
    return replace(job, **changes)


def _step(job: Job, decision: Decision, now: float, check_every: float) -> ReplanStep:
    decision = decision.with_(delay=decision.start - job.earliest)
    due = now >= job.latest_start - 1e-9
    if due or decision.start < now + check_every - 1e-9 or not decision.planned:
        return ReplanStep(True, decision, None)
    return ReplanStep(False, decision, min(now + check_every, decision.start))


def replan_step(job: Job, forecasts: Mapping[str, IntensitySeries] | Planner, now: TimeLike,
                *, check_every: float = HOUR, **planner_options: Any) -> ReplanStep:
    """Plan what is left of ``job`` at ``now`` with forecasts made at ``now`` (from data
    before it); commit if the plan starts before ``now + check_every``."""
    t = to_epoch(now)
    planner = forecasts if isinstance(forecasts, Planner) else Planner(forecasts,
                                                                       **planner_options)
    return _step(job, planner.plan(remaining(job, t)), t, check_every)


def replan_with_provider(job: Job, provider: IntensityProvider, now: TimeLike, *,
                         check_every: float = HOUR, using: str | Forecaster = "default",
                         history_days: float | None = None, **planner_options: Any
                         ) -> ReplanStep:
    """:func:`replan_step` with fresh forecasts from ``provider`` (or made from its history);
    if no region has data, commits to running now at home."""
    t = to_epoch(now)
    decision = plan_with_provider(remaining(job, t), provider, using=using, now=t,
                                  history_days=history_days, **planner_options)
    return _step(job, decision, t, check_every)
