"""Constraints and ranking, Caribou-style: hard limits discard, soft limits rank, priorities order.

A :class:`Constraint` bounds one metric of a candidate (region, start):

* ``carbon``: expected grams of CO2eq (run + data transfer);
* ``delay``: seconds between the earliest start and the start;
* ``cost``: money for the run (region price per hour) plus egress for moved data.

An absolute limit is in the metric's unit. A relative limit is a fraction of the *run now at
home* value: ``Constraint("cost", 0.1, relative=True)`` allows 10 % more than home costs now,
``Constraint("carbon", -0.2, relative=True)`` demands a 20 % saving. Running now at home has no
delay, so a relative delay limit is a fraction of the job's duration (finish at most that much
later than running now). Hard constraints remove candidates; candidates are then ranked by how
many soft constraints they break, then by the metrics in ``priority`` order (keeping all
candidates within the metric's tolerance of the best, so near-ties fall to the next priority),
then by start, then by the order of the allowed regions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from flowcache.errors import ConfigError

Metric = Literal["carbon", "delay", "cost"]
METRICS: tuple[Metric, ...] = ("carbon", "delay", "cost")
DEFAULT_PRIORITY: tuple[Metric, ...] = ("carbon", "delay", "cost")


@dataclass(frozen=True)
class Constraint:
    metric: Metric
    limit: float
    relative: bool = False
    hard: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"constraint metric must be one of {METRICS}, got {self.metric!r}")

    def bound(self, baseline: float, duration: float) -> float:
        """The absolute limit for a job whose run-now-at-home value is ``baseline``."""
        if not self.relative:
            return self.limit
        if self.metric == "delay":
            return self.limit * duration
        return baseline * (1.0 + self.limit)

    def describe(self) -> str:
        kind = "hard" if self.hard else "soft"
        if self.relative:
            amount = f"{self.limit:+.0%} of run-now-at-home" if self.metric != "delay" else \
                f"{self.limit:.0%} of the duration"
        else:
            unit = {"carbon": " g", "delay": " s", "cost": ""}[self.metric]
            amount = f"{self.limit:g}{unit}"
        return f"{kind} {self.metric} <= {amount}"


@dataclass(frozen=True)
class Ranking:
    """How candidates are filtered and ordered (see the module docstring)."""

    constraints: tuple[Constraint, ...] = ()
    priority: tuple[Metric, ...] = DEFAULT_PRIORITY
    tolerance: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        priority = tuple(self.priority)
        if sorted(set(priority)) != sorted(priority) or not set(priority) <= set(METRICS):
            raise ConfigError(f"priority must list distinct metrics from {METRICS}, got "
                              f"{priority!r}")
        missing = tuple(m for m in DEFAULT_PRIORITY if m not in priority)
        object.__setattr__(self, "priority", priority + missing)
        object.__setattr__(self, "constraints", tuple(self.constraints))

    @property
    def carbon_first(self) -> bool:
        """Whether the vectorised batch path applies (carbon first, exact comparisons)."""
        return self.priority[0] == "carbon" and not any(self.tolerance.values())

    def evaluate(self, metrics: Mapping[str, np.ndarray], baseline: Mapping[str, float],
                 duration: float) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Hard-feasibility mask, soft-violation counts and the names of broken soft limits."""
        n = len(next(iter(metrics.values())))
        feasible = np.ones(n, bool)
        violations = np.zeros(n, np.int64)
        broken: list[list[str]] = [[] for _ in range(n)]
        for c in self.constraints:
            base = baseline.get(c.metric, float("nan"))
            bound = c.bound(base, duration)
            if np.isnan(bound):
                continue  # a relative limit without a baseline cannot be judged
            ok = metrics[c.metric] <= bound + 1e-9
            if c.hard:
                feasible &= ok
            else:
                violations += ~ok
                for i in np.flatnonzero(~ok):
                    broken[i].append(c.describe())
        return feasible, violations, broken

    def best(self, metrics: Mapping[str, np.ndarray], violations: np.ndarray,
             starts: np.ndarray, region_rank: np.ndarray) -> int:
        """Index of the best candidate: fewest soft violations, then each priority metric in
        turn (keeping every candidate within its tolerance of the best), then the earliest
        start, then the region listed first."""
        keep = np.flatnonzero(violations == violations.min())
        for metric in self.priority:
            values = np.asarray(metrics[metric], dtype=np.float64)[keep]
            tol = self.tolerance.get(metric, 0.0)
            keep = keep[values <= values.min() + tol + 1e-9 * max(1.0, abs(values.min()))]
        order = np.lexsort((region_rank[keep], starts[keep]))
        return int(keep[order[0]])


def ranking(constraints: Sequence[Constraint] = (), priority: Sequence[str] = DEFAULT_PRIORITY,
            tolerance: Mapping[str, float] | None = None) -> Ranking:
    return Ranking(tuple(constraints), tuple(priority), dict(tolerance or {}))  # type: ignore
