"""Impact across runs and users: a log of carbon decisions and their uptake, and its totals.

The GSF proposal this grew from asks for two things a single run's report cannot give: a log of
recommendation uptake, and a running counter ("27 other users shifted their loads in the past
hour and saved 512 kg"). Both come from the ledger (:mod:`flowcache.accounts.ledger`), the
per-user append-only log that billing already keeps: at the end of a carbon-aware run, every
:class:`~flowcache.carbon.records.DecisionRecord` becomes one ``carbon`` event (its figures, as
JSON, in the event's ``reason``; billing ignores the kind). So the log inherits the ledger's
backends (SQLite on one host, a Redis stream per user) and its confinement: a tenant reads and
appends to their own stream only; reading everyone's (:meth:`Ledger.users`) is an operator's
right, which is what the team view (``FLOWCACHE_CARBON_TEAM_VIEW``) needs.

:func:`aggregate` groups the events by ``user``, ``flow`` or ``region`` (or not at all):
runs, users, tasks; what was recommended (a move: wait and/or relocate) against what ran
(``followed``), the uptake rate, and realised grams against running now at home and running at
home when it ran. Tasks whose emissions could not be computed are counted as ``unknown`` and
left out of the grams, never counted as zero.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowcache.accounts.billing import Event
from flowcache.accounts.ledger import Ledger, ledger_of
from flowcache.carbon.records import DecisionRecord

log = logging.getLogger("flowcache.carbon.impact")
KIND = "carbon"
GROUPS = ("user", "flow", "region")
#: a task that started this much later than submitted, or away from home, was shifted
SHIFT_SECONDS = 60.0


def impact_fields(record: DecisionRecord) -> dict[str, Any]:
    """What the log keeps of one record (JSON-safe; None for unknown grams)."""
    d = record.decision
    recommended = d.planned and (d.region != d.home or d.delay > 1.0)

    def grams(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else round(value, 4)

    return {"action": d.action if d.planned else "run-now", "recommended": recommended,
            "followed": record.followed, "home": d.home or record.actual_region,
            "shifted": (record.actual_start - record.submitted > SHIFT_SECONDS
                        or record.actual_region != (d.home or record.actual_region)),
            "realised_g": grams(record.realised_g), "now_home_g": grams(record.now_home_g),
            "then_home_g": grams(record.then_home_g)}


def log_impact(ledger: Ledger, *, user: str, run: str, flow: str,
               records: Sequence[DecisionRecord]) -> None:
    """One ``carbon`` event per record, into ``ledger`` (queued; flushed by the ledger)."""
    ledger.record(*(Event(ts=r.actual_end or r.actual_start, kind=KIND, user=user, run=run,
                          flow=flow, task=r.decision.job, name=r.actual_region,
                          reason=json.dumps(impact_fields(r), allow_nan=False))
                    for r in records))


@dataclass(frozen=True)
class ImpactEvent:
    user: str
    run: str
    flow: str
    region: str
    ts: float
    fields: dict[str, Any]


def read_impact(ledger: Ledger, users: Iterable[str], since: float) -> list[ImpactEvent]:
    """The ``carbon`` events of ``users`` recorded at or after ``since``."""
    ledger.flush()
    found = []
    for user in users:
        for event in ledger.events(user, since=since):
            if event.kind != KIND or event.ts < since:
                continue
            try:
                fields = json.loads(event.reason)
            except ValueError:
                log.warning("a carbon event of %s in the ledger is not JSON; skipped", user)
                continue
            found.append(ImpactEvent(event.user, event.run, event.flow, event.name, event.ts,
                                     fields))
    return found


def aggregate(events: Sequence[ImpactEvent], by: str | None = None) -> list[dict[str, Any]]:
    """One row per group (one row in all without ``by``), sorted by grams saved."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"group by one of {', '.join(GROUPS)}, not {by!r}")
    groups: dict[str, list[ImpactEvent]] = {}
    for event in events:
        groups.setdefault(getattr(event, by) if by else "all", []).append(event)
    rows = [_row(name, items) for name, items in groups.items()]
    return sorted(rows, key=lambda r: -(r["saved_vs_now_g"] or 0.0))


def _row(name: str, items: Sequence[ImpactEvent]) -> dict[str, Any]:
    known = [e.fields for e in items
             if e.fields.get("realised_g") is not None and e.fields.get("now_home_g") is not None]
    at_home = [f for f in known if f.get("then_home_g") is not None]
    recommended = [e.fields for e in items if e.fields.get("recommended")]
    realised = sum(f["realised_g"] for f in known)
    now_home = sum(f["now_home_g"] for f in known)
    return {
        "group": name, "runs": len({e.run for e in items}),
        "users": len({e.user for e in items}), "tasks": len(items),
        "recommended": len(recommended),
        "followed": sum(bool(f.get("followed")) for f in recommended),
        "uptake": (sum(bool(f.get("followed")) for f in recommended) / len(recommended)
                   if recommended else None),
        "shifted": sum(bool(e.fields.get("shifted")) for e in items),
        "accounted": len(known), "unknown": len(items) - len(known),
        "realised_g": realised if known else None,
        "saved_vs_now_g": now_home - realised if known else None,
        "saved_vs_home_g": (sum(f["then_home_g"] - f["realised_g"] for f in at_home)
                            if at_home else None),
    }


def counter_line(events: Sequence[ImpactEvent], *, since_text: str, team: bool) -> str:
    """The line at the end of each carbon-aware run: this week's shifts and savings."""
    shifted = [e for e in events if e.fields.get("shifted")]
    runs = len({e.run for e in shifted})
    users = len({e.user for e in shifted})
    saved = sum(e.fields["now_home_g"] - e.fields["realised_g"] for e in shifted
                if e.fields.get("realised_g") is not None
                and e.fields.get("now_home_g") is not None)
    unknown = sum(1 for e in shifted if e.fields.get("realised_g") is None
                  or e.fields.get("now_home_g") is None)
    who = f"{runs} runs of {users} users" if team else f"{runs} of your runs"
    tail = f" ({unknown} tasks' emissions unknown)" if unknown else ""
    return (f"carbon impact, {since_text}: {who} shifted {len(shifted)} tasks and saved "
            f"{_kilograms(saved)} CO2eq against running them at once at home{tail}")


def _kilograms(grams: float) -> str:
    return f"{grams / 1000:.2f} kg" if abs(grams) >= 1000 else f"{grams:.1f} g"


WEEK = 7 * 86400.0


def publish_impact(store: Any, *, run: str, flow: str, records: Sequence[DecisionRecord],
                   now: float, team_view: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Log a run's records and return the counter line and the week's rows (by user when
    ``team_view``, else the user's own); a store without a ledger says so instead."""
    ledger = ledger_of(store)
    if ledger is None:
        return "carbon impact: not logged (the ledger is off: FLOWCACHE_LEDGER)", []
    user = store.namespace
    log_impact(ledger, user=user, run=run, flow=flow, records=records)
    users = [user]
    if team_view:
        try:
            users = sorted({*ledger.users(), user})
        except Exception as exc:  # a tenant may not list others' streams: their own view
            log.warning("the team view needs an operator's ledger access (%s); showing %s's "
                        "runs only", exc, user)
            team_view = False
    events = read_impact(ledger, users, now - WEEK)
    return (counter_line(events, since_text="past 7 days", team=team_view),
            aggregate(events, "user" if team_view else None))
