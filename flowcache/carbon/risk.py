"""Risk-aware moves: defer or relocate only when the saving beats the forecast's uncertainty.

A forecast's calibrated error quantiles (:mod:`flowcache.carbon.forecasting.intervals`) say how
far above its forecast the chosen window may come out. A move (a wait, another region) is kept
only when its expected saving is larger than the margin the window exceeds with probability
``tolerance``: the move then turns out worse than running now at home in at most that share of
cases. Smaller expected savings are not worth the risk; the work runs now, and the decision
says why.

The default tolerance, 0.25 (the margin is the upper quartile of the errors, the top of the
50 % interval), is what ``bench/carbon_eval.py --tune`` chose on January-June: the largest
saving with at most 5 % of decisions turning out worse than running at once. The top of the
90 % interval (``tolerance=0.05``) makes almost no decision worse (0.3 %) but keeps well
under half of the saving (docs/carbon-eval.md).

Either way the decision's ``notes`` carry the margin (``upper_margin_g``) and the chance that
the move turns out worse than running now (``chance_worse``), so reports can show them. A
forecast without an interval (a provider's own) leaves the move as planned and notes
that its uncertainty is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowcache.carbon.decision import Decision, Job, run_now_at_home
from flowcache.carbon.forecasting.intervals import chance_worse, upper_margin
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso
from flowcache.errors import ConfigError

#: the chance of a move turning out worse that ``risk_aware=True`` tolerates
DEFAULT_TOLERANCE = 0.25


def risk_tolerance(risk_aware: bool | float) -> float | None:
    """``risk_aware`` as a tolerated chance of a worse outcome (None: not risk-aware)."""
    if risk_aware is True:
        return DEFAULT_TOLERANCE
    if risk_aware is False:
        return None
    tolerance = float(risk_aware)
    if not 0.0 < tolerance <= 0.5:
        raise ConfigError(f"risk_aware={risk_aware!r}: give true, false, or the chance of a "
                          "move turning out worse that is tolerated, above 0 and at most 0.5 "
                          "(e.g. 0.25, or 0.05 for the top of the 90 % interval)")
    return tolerance


def moved(decision: Decision, now: float) -> bool:
    """Whether the decision waits or leaves home."""
    return decision.planned and (decision.region != decision.home or decision.start > now)


def weigh_risk(job: Job, decision: Decision, forecasts: Mapping[str, IntensitySeries],
               now: float, *, risk_aware: bool | float = True) -> Decision:
    """``decision`` with its uncertainty noted; when ``risk_aware``, "run now at home" instead
    if its chance of turning out worse than that is above the tolerance."""
    tolerance = risk_tolerance(risk_aware)
    if not moved(decision, now):
        return decision
    forecast = forecasts[decision.region]
    energy = decision.energy_kwh
    span = sum(end - start for start, end in decision.intervals)
    level = 1.0 - (tolerance if tolerance is not None else DEFAULT_TOLERANCE)
    margins = [upper_margin(forecast, start, end, level) for start, end in decision.intervals]
    if energy <= 0 or span <= 0 or any(m is None for m in margins):
        why = forecast.meta.get("interval_note") or "the forecast has no interval"
        return decision.with_(notes={**decision.notes, "uncertainty": f"unknown ({why})"})
    upper_g = energy * sum(m * (end - start) for m, (start, end)  # type: ignore[operator]
                           in zip(margins, decision.intervals, strict=True)) / span
    chance = chance_worse(forecast, decision.start, decision.end, decision.saving_g / energy)
    notes = {**decision.notes, "upper_margin_g": round(upper_g, 3),
             "chance_worse": None if chance is None else round(chance, 3)}
    if risk_aware and not decision.saving_g > upper_g:
        odds = "" if chance is None else f", a {100 * chance:.0f} % chance it is worse"
        return run_now_at_home(
            job, f"the expected saving of {decision.saving_g:.2f} g by "
                 f"{decision.action.replace('+', ' and ')} to {decision.region} at "
                 f"{iso(decision.start)} is within the forecast's uncertainty (up to "
                 f"{upper_g:.2f} g more at the top of its 90 % interval{odds})",
            forecast=forecasts.get(job.home), planned_at=now).with_(notes=notes)
    return decision.with_(notes=notes)


def describe_risk(decision: Decision) -> str:
    """One line on the uncertainty of a move, for people ("" when there is nothing to say)."""
    notes = decision.notes
    if "uncertainty" in notes:
        return f"uncertainty {notes['uncertainty']}"
    if "upper_margin_g" not in notes:
        return ""
    tail = 100 * (1 - notes.get("margin_level", 0.95))
    line = (f"uncertainty: {notes['upper_margin_g']:.2f} g more than expected in {tail:.0f} % "
            "of cases")
    if notes.get("chance_worse") is not None:
        line += f"; chance it is worse than running now: {100 * notes['chance_worse']:.0f} %"
    return line
