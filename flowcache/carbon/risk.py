"""Risk-aware moves: defer or relocate only when the saving beats the forecast's uncertainty.

A forecast's 90 % prediction interval (:mod:`flowcache.carbon.forecasting.intervals`) says how
far above its forecast the chosen window may come out. A move (a wait, another region) is kept
only when its expected saving is larger than that margin, i.e. when even the top of the interval
still beats running now at home: waiting or moving then turns out worse in about 5 % of cases
at most. Smaller expected savings are not worth the risk; the work runs now, and the decision
says why. Either way the decision's ``notes`` carry the margin (``upper_margin_g``) and the
chance that the move turns out worse than running now (``chance_worse``), so reports can show
them. A forecast without an interval (a provider's own) leaves the move as planned and notes
that its uncertainty is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowcache.carbon.decision import Decision, Job, run_now_at_home
from flowcache.carbon.forecasting.intervals import chance_worse, upper_margin
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso


def moved(decision: Decision, now: float) -> bool:
    """Whether the decision waits or leaves home."""
    return decision.planned and (decision.region != decision.home or decision.start > now)


def weigh_risk(job: Job, decision: Decision, forecasts: Mapping[str, IntensitySeries],
               now: float, *, risk_aware: bool = True) -> Decision:
    """``decision`` with its uncertainty noted; when ``risk_aware``, "run now at home" instead
    if its expected saving does not beat the top of the 90 % interval for its window."""
    if not moved(decision, now):
        return decision
    forecast = forecasts[decision.region]
    energy = decision.energy_kwh
    span = sum(end - start for start, end in decision.intervals)
    margins = [upper_margin(forecast, start, end) for start, end in decision.intervals]
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
    line = f"90 % interval: up to {notes['upper_margin_g']:.2f} g more than expected"
    if notes.get("chance_worse") is not None:
        line += f"; chance it is worse than running now: {100 * notes['chance_worse']:.0f} %"
    return line
