"""Jobs and decisions: what the planner is asked, and the answer with its reasons and baselines.

Both are plain frozen values with JSON-safe ``to_dict``/``from_dict`` so a task runner can log,
store and show them. Times are UTC epoch seconds; emissions grams of CO2eq.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, duration_seconds, iso, to_epoch
from flowcache.errors import ConfigError, InvalidJob


@dataclass(frozen=True)
class Job:
    """A unit of work to place. Give ``energy_kwh`` or ``power_w``; ``deadline`` (latest end)
    and/or ``max_delay`` (latest start minus earliest start) bound the wait; with neither the job
    can only move in space. ``regions`` are the allowed regions besides ``home``."""

    duration: float
    earliest: float
    home: str
    power_w: float | None = None
    energy_kwh: float | None = None
    deadline: float | None = None
    max_delay: float | None = None
    regions: tuple[str, ...] = ()
    data_gb: float = 0.0
    interruptible: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise InvalidJob(f"job {self.name!r}: duration must be positive, got {self.duration}")
        if self.power_w is None and self.energy_kwh is None:
            raise InvalidJob(f"job {self.name!r}: give power_w or energy_kwh so emissions can be "
                             "estimated (see flowcache.carbon.emissions.PowerModel)")
        if (self.power_w or 0) < 0 or (self.energy_kwh or 0) < 0 or self.data_gb < 0:
            raise InvalidJob(f"job {self.name!r}: power, energy and data must not be negative")
        if self.max_delay is not None and self.max_delay < 0:
            raise InvalidJob(f"job {self.name!r}: max_delay must not be negative")
        object.__setattr__(self, "regions", tuple(self.regions))

    @classmethod
    def build(cls, *, duration: str | float | timedelta, earliest: TimeLike, home: str,
              max_delay: str | float | timedelta | None = None,
              deadline: TimeLike | None = None, **rest: Any) -> Job:
        """A job from user spellings (``"2h"``, ISO times); the edge-parsing constructor."""
        try:
            return cls(duration=duration_seconds(duration), earliest=to_epoch(earliest),
                       home=home, deadline=None if deadline is None else to_epoch(deadline),
                       max_delay=None if max_delay is None else duration_seconds(max_delay),
                       **rest)
        except ConfigError as exc:
            raise InvalidJob(str(exc)) from exc

    @property
    def energy(self) -> float:
        """kWh the run draws (energy if given, else power x duration)."""
        if self.energy_kwh is not None:
            return float(self.energy_kwh)
        return float(self.power_w or 0.0) * self.duration / 3.6e6

    @property
    def latest_start(self) -> float:
        bounds = [self.earliest + self.max_delay] if self.max_delay is not None else []
        if self.deadline is not None:
            bounds.append(self.deadline - self.duration)
        return max(self.earliest, min(bounds)) if bounds else self.earliest

    @property
    def window_end(self) -> float:
        """The latest instant the job may still be running."""
        return self.latest_start + self.duration if not self.interruptible or \
            self.deadline is None else max(self.deadline, self.earliest + self.duration)

    @property
    def allowed(self) -> list[str]:
        seen: list[str] = []
        for region in (self.home, *self.regions):
            if region not in seen:
                seen.append(region)
        return seen


@dataclass(frozen=True)
class Decision:
    """Where and when to run, what that is expected to emit, and what the alternatives were.

    ``now_home_g`` is the counterfactual of not being carbon-aware (start at once at home);
    ``best_now_*`` the best region if starting at once. ``fallback`` is True when the decision was
    made without live data (a provider failed, or no forecast covered the job).
    """

    job: str
    region: str
    start: float
    end: float
    intervals: tuple[tuple[float, float], ...]
    expected_g: float
    expected_intensity: float
    energy_kwh: float
    transfer_g: float
    delay: float
    cost: float | None
    now_home_g: float
    best_now_region: str
    best_now_g: float
    home: str = ""
    soft_violations: tuple[str, ...] = ()
    fallback: bool = False
    signal: str = "average"
    source: str = ""
    planned_at: float = 0.0
    #: False for the run-now-at-home fallback (then ``note`` says why)
    planned: bool = True
    note: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        """``run-now``, ``defer``, ``relocate`` or ``defer+relocate``."""
        return action_of(self)

    @property
    def reason(self) -> str:
        """One line saying what was decided and why."""
        return reason_of(self)

    @property
    def saving_g(self) -> float:
        """Expected grams saved against running now at home."""
        return self.now_home_g - self.expected_g

    @property
    def saving_pct(self) -> float:
        if not self.now_home_g or not math.isfinite(self.now_home_g):
            return float("nan")
        return 100.0 * self.saving_g / self.now_home_g

    def with_(self, **changes: Any) -> Decision:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["intervals"] = [list(i) for i in self.intervals]
        data["soft_violations"] = list(self.soft_violations)
        data["start_iso"] = iso(self.start)
        data["action"] = self.action
        data["reason"] = self.reason
        for key, value in list(data.items()):
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if values.get("cost") is not None:
            values["cost"] = float(values["cost"])
        values["intervals"] = tuple(tuple(i) for i in values.get("intervals", ()))
        values["soft_violations"] = tuple(values.get("soft_violations", ()))
        for key in ("expected_g", "expected_intensity", "now_home_g", "best_now_g"):
            if values.get(key) is None:
                values[key] = float("nan")
        return cls(**values)


def action_of(decision: Decision) -> str:
    moved = decision.region != decision.home
    waited = decision.delay > 1.0
    return {(False, False): "run-now", (False, True): "defer", (True, False): "relocate",
            (True, True): "defer+relocate"}[(moved, waited)]


def reason_of(decision: Decision) -> str:
    if not decision.planned:
        return f"run now in {decision.home}: {decision.note}"
    action = action_of(decision)
    parts = {
        "run-now": f"run now in {decision.region}",
        "defer": f"wait {decision.delay / 3600:.1f} h, start {iso(decision.start)}",
        "relocate": f"run now in {decision.region}",
        "defer+relocate": f"wait {decision.delay / 3600:.1f} h and run in {decision.region} "
                          f"from {iso(decision.start)}",
    }
    reason = parts[action] + f": expected {decision.expected_g:.1f} g"
    if math.isfinite(decision.now_home_g) and decision.now_home_g > 0:
        reason += (f" vs {decision.now_home_g:.1f} g running now in {decision.home} "
                   f"({-decision.saving_pct:+.1f} %)")
    if len(decision.intervals) > 1:
        reason += f", in {len(decision.intervals)} pieces"
    if decision.soft_violations:
        reason += "; breaks soft limits: " + ", ".join(decision.soft_violations)
    if decision.note:
        reason += f"; {decision.note}"
    return reason


def summarise(decisions: Sequence[Decision]) -> dict[str, float]:
    """Totals for reporting: expected grams, run-now-at-home grams, saving and actions."""
    expected = sum(d.expected_g for d in decisions if math.isfinite(d.expected_g))
    baseline = sum(d.now_home_g for d in decisions if math.isfinite(d.now_home_g))
    out = {"jobs": float(len(decisions)), "expected_g": expected, "now_home_g": baseline,
           "saving_g": baseline - expected,
           "saving_pct": 100.0 * (baseline - expected) / baseline if baseline else 0.0}
    for d in decisions:
        out[d.action] = out.get(d.action, 0.0) + 1
    return out


def run_now_at_home(job: Job, reason: str, forecast: IntensitySeries | None = None,
                    *, planned_at: float | None = None) -> Decision:
    """The decision to fall back on: start at once, where the job was submitted."""
    end = job.earliest + job.duration
    intensity = float(forecast.mean(job.earliest, end)) if forecast is not None else float("nan")
    grams = job.energy * intensity
    return Decision(job=job.name, region=job.home, start=job.earliest, end=end,
                    intervals=((job.earliest, end),), expected_g=grams,
                    expected_intensity=intensity, energy_kwh=job.energy, transfer_g=0.0,
                    delay=0.0, cost=None, now_home_g=grams, best_now_region=job.home,
                    best_now_g=grams, home=job.home, fallback=True, planned=False, note=reason,
                    planned_at=planned_at if planned_at is not None else time.time())
