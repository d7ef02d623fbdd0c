"""Decision records: what was recommended, what actually ran, and what that emitted.

A task runner keeps one :class:`DecisionRecord` per carbon-aware task: the planner's
:class:`Decision`, the actual start, end and region, and the realised emissions computed from the
intensity *history* of the interval that actually ran, with three counterfactuals of the same
length: run at submission time at home (not carbon-aware at all), run at submission time where
it ran ("run now": the gain from waiting), and run when it ran but at home ("run at home": the
gain from moving). Records are JSON (``to_json``/``from_json``) so uptake can be reported
across runs: how often the recommendation was followed and what it saved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flowcache.carbon.decision import Decision
from flowcache.carbon.emissions import emissions_g
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, to_epoch
from flowcache.errors import CarbonError


@dataclass(frozen=True)
class DecisionRecord:
    decision: Decision
    submitted: float
    actual_region: str
    actual_start: float
    actual_end: float
    energy_kwh: float
    realised_g: float | None = None
    now_home_g: float | None = None
    now_there_g: float | None = None
    then_home_g: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def followed(self) -> bool:
        """Whether the run matched the recommendation (same region, start within 5 minutes)."""
        return (self.actual_region == self.decision.region
                and abs(self.actual_start - self.decision.start) <= 300.0)

    def saving_vs(self, counterfactual: str) -> float | None:
        """Grams saved against ``now_home``, ``now_there`` or ``then_home``."""
        base = getattr(self, f"{counterfactual}_g")
        if base is None or self.realised_g is None:
            return None
        return base - self.realised_g

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decision"] = self.decision.to_dict()
        data["followed"] = self.followed
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRecord:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["decision"] = Decision.from_dict(dict(data["decision"]))
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, default=_json_default)

    @classmethod
    def from_json(cls, text: str | bytes) -> DecisionRecord:
        return cls.from_dict(json.loads(text))


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _grams(history: Mapping[str, IntensitySeries], region: str, start: float, end: float,
           energy: float) -> float | None:
    series = history.get(region)
    if series is None:
        return None
    try:
        return emissions_g(series, start, end, energy=energy)
    except CarbonError:
        return None


def record_outcome(decision: Decision, *, submitted: TimeLike, actual_start: TimeLike,
                   actual_end: TimeLike, actual_region: str,
                   history: Mapping[str, IntensitySeries], energy_kwh: float | None = None,
                   power_w: float | None = None) -> DecisionRecord:
    """The record of a finished run, with realised and counterfactual grams from ``history``.

    ``energy_kwh`` defaults to the decision's estimate scaled to the actual duration, or is
    computed from ``power_w``. A counterfactual whose data is missing is left as None.
    """
    t_sub, t0, t1 = to_epoch(submitted), to_epoch(actual_start), to_epoch(actual_end)
    length = max(0.0, t1 - t0)
    if energy_kwh is None:
        if power_w is not None:
            energy_kwh = power_w * length / 3.6e6
        else:
            planned = decision.end - decision.start
            energy_kwh = decision.energy_kwh * (length / planned if planned > 0 else 1.0)
    home = decision.home or actual_region
    return DecisionRecord(
        decision=decision, submitted=t_sub, actual_region=actual_region, actual_start=t0,
        actual_end=t1, energy_kwh=energy_kwh,
        realised_g=_grams(history, actual_region, t0, t1, energy_kwh),
        now_home_g=_grams(history, home, t_sub, t_sub + length, energy_kwh),
        now_there_g=_grams(history, actual_region, t_sub, t_sub + length, energy_kwh),
        then_home_g=_grams(history, home, t0, t1, energy_kwh))


def uptake(records: Sequence[DecisionRecord]) -> dict[str, float]:
    """How often recommendations were followed and what was saved in total."""
    done = [r for r in records if r.realised_g is not None and r.now_home_g is not None]
    realised = sum(r.realised_g for r in done)  # type: ignore[misc]
    baseline = sum(r.now_home_g for r in done)  # type: ignore[misc]
    return {"records": float(len(records)),
            "followed": float(sum(r.followed for r in records)),
            "fallbacks": float(sum(r.decision.fallback for r in records)),
            "realised_g": realised, "now_home_g": baseline,
            "saved_g": baseline - realised,
            "saved_pct": 100.0 * (baseline - realised) / baseline if baseline else float("nan")}
