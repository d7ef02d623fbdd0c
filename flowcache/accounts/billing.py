"""Billing: ledger events folded into residencies, byte-seconds per tier, and hit savings.

A *residency* is one copy of one entry in one tier: it begins with a ``write`` event and ends
with the first ``remove`` of that copy. Its cost is bytes x seconds. The fold reads events in
ledger-clock order (ties in arrival order) and follows four rules:

* a write opens a residency for ``(tier, name, proc)`` (``proc`` only for per-process tiers);
  a write over an open residency ends it first (``replaced``), so nothing is counted twice;
* a remove ends the open residency of its ``(tier, name, proc)``, unless it carries ``before``
  and that residency began later (a reconciliation never ends a copy it could not have seen);
* a remove with nothing open is ignored: the same removal is often reported twice (the store,
  then the eviction watcher or a reconciliation), and the first one counts;
* a Redis residency never outlives the expiry Redis was given (``expires``): Redis drops the
  key then, whether or not anyone reports it.

This module only computes (and defines the event record); :mod:`flowcache.accounts.ledger` records
and stores the events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EVENT_FIELDS = ("ts", "kind", "user", "tier", "name", "nbytes", "run", "flow", "task",
                "reason", "seconds", "expires", "proc", "before")


@dataclass(frozen=True)
class Event:
    """One ledger record, as stored by every ledger backend."""

    ts: float
    kind: str  # write | remove | hit | miss
    user: str
    tier: str = ""
    name: str = ""  # the entry's name in its tiers (hits and misses: its key)
    nbytes: int = 0
    run: str = ""
    flow: str = ""
    task: str = ""
    reason: str = ""
    seconds: float = 0.0  # hit: compute seconds recorded when the entry was written
    expires: float | None = None  # write: when the tier drops the copy by itself (a TTL)
    proc: str = ""  # write/remove in a per-process tier (memory): "host:pid"
    before: float | None = None  # remove: only ends a residency that began by then
    seq: int = 0  # arrival order in the backend, filled in when read

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EVENT_FIELDS}


def event_from_fields(raw: dict[str, Any], seq: int) -> Event:
    """An event from its stored fields (SQLite columns, or a Redis stream entry's strings)."""
    def number(name: str, kind: type, default: Any) -> Any:
        value = raw.get(name)
        return default if value is None or value == "" else kind(value)

    return Event(ts=float(raw["ts"]), kind=str(raw["kind"]), user=str(raw["user"]),
                 tier=str(raw.get("tier") or ""), name=str(raw.get("name") or ""),
                 nbytes=number("nbytes", int, 0), run=str(raw.get("run") or ""),
                 flow=str(raw.get("flow") or ""), task=str(raw.get("task") or ""),
                 reason=str(raw.get("reason") or ""), seconds=number("seconds", float, 0.0),
                 expires=number("expires", float, None), proc=str(raw.get("proc") or ""),
                 before=number("before", float, None), seq=seq)


GROUPS = ("tier", "flow", "run", "task")


@dataclass
class Residency:
    user: str
    tier: str
    name: str
    nbytes: int
    start: float
    end: float | None = None  # None: still held (as far as the ledger knows)
    reason: str = ""
    run: str = ""
    flow: str = ""
    task: str = ""
    proc: str = ""
    expires: float | None = None

    def end_by(self, until: float) -> float:
        """When this copy stopped costing, or ``until`` if it was still held then."""
        end = until if self.end is None else min(self.end, until)
        if self.expires is not None:
            end = min(end, self.expires)
        return end

    def seconds_within(self, since: float, until: float) -> float:
        return max(0.0, self.end_by(until) - max(self.start, since))

    @property
    def open(self) -> bool:
        return self.end is None


def residencies(events: Iterable[Event]) -> list[Residency]:
    """Every residency the events describe, in the order they began."""
    done: list[Residency] = []
    held: dict[tuple[str, str, str], Residency] = {}
    for event in sorted(events, key=lambda e: (e.ts, e.seq)):
        slot = (event.tier, event.name, event.proc)
        if event.kind == "write":
            previous = held.pop(slot, None)
            if previous is not None:
                previous.end, previous.reason = event.ts, "replaced"
            residency = Residency(event.user, event.tier, event.name, event.nbytes, event.ts,
                                  run=event.run, flow=event.flow, task=event.task,
                                  proc=event.proc, expires=event.expires)
            held[slot] = residency
            done.append(residency)
        elif event.kind == "remove":
            residency = held.get(slot)
            if residency is None or (event.before is not None
                                     and residency.start > event.before):
                continue
            residency.end, residency.reason = event.ts, event.reason
            del held[slot]
    return done


def open_residencies(events: Iterable[Event], now: float | None = None) -> list[Residency]:
    """Copies no event has ended (and, given ``now``, whose tier has not expired them)."""
    return [r for r in residencies(events)
            if r.open and (now is None or r.expires is None or r.expires > now)]


@dataclass
class UsageRow:
    group: str  # the tier, flow, run or task the row is about
    tier: str
    byte_seconds: float = 0.0
    entries: int = 0  # copies held in the tier at some point of the window
    bytes_written: int = 0  # bytes of the copies made during the window
    hits: int = 0
    saved_seconds: float = 0.0  # compute time the hits did not spend

    @property
    def byte_hours(self) -> float:
        return self.byte_seconds / 3600.0


@dataclass
class Usage:
    user: str
    since: float
    until: float
    by: str
    rows: list[UsageRow] = field(default_factory=list)
    misses: int = 0

    def total(self, attribute: str, tier: str | None = None) -> float:
        return sum(getattr(row, attribute) for row in self.rows
                   if tier is None or row.tier == tier)

    def byte_seconds(self, tier: str | None = None) -> float:
        return self.total("byte_seconds", tier)


def usage(events: Iterable[Event], *, user: str, since: float, until: float,
          by: str = "tier") -> Usage:
    """What ``user`` held and gained in ``[since, until)``, grouped ``by`` tier/flow/run/task."""
    if by not in GROUPS:
        raise ValueError(f"group billing by one of {', '.join(GROUPS)}, not {by!r}")
    if not until > since or not math.isfinite(until - since):
        raise ValueError(f"the billing window must end after it starts ({since} .. {until})")
    events = [e for e in events if e.user == user]
    rows: dict[tuple[str, str], UsageRow] = {}

    def row(group: str, tier: str) -> UsageRow:
        key = (group or "-", tier)
        if key not in rows:
            rows[key] = UsageRow(group or "-", tier)
        return rows[key]

    for residency in residencies(events):
        in_window = residency.start < until and residency.end_by(until) > since
        made_in_window = since <= residency.start < until
        if not (in_window or made_in_window):
            continue
        target = row(_group(residency, by), residency.tier)
        target.byte_seconds += residency.nbytes * residency.seconds_within(since, until)
        target.entries += 1
        if made_in_window:
            target.bytes_written += residency.nbytes
    result = Usage(user, since, until, by)
    for event in events:
        if not since <= event.ts < until:
            continue
        if event.kind == "hit":
            target = row(_group(event, by), event.tier)
            target.hits += 1
            target.saved_seconds += event.seconds
        elif event.kind == "miss":
            result.misses += 1
    result.rows = [rows[key] for key in sorted(rows)]
    return result


def _group(item: Residency | Event, by: str) -> str:
    return item.tier if by == "tier" else getattr(item, by)


@dataclass
class RunUsage:
    """One flow run's cache footprint so far (for the end-of-run report)."""

    run_id: str
    byte_seconds: dict[str, float] = field(default_factory=dict)  # by tier
    by_task: dict[str, float] = field(default_factory=dict)  # byte-seconds by task
    bytes_added: int = 0  # bytes the run wrote to the durable tier
    entries_added: int = 0

    @property
    def byte_hours(self) -> float:
        return sum(self.byte_seconds.values()) / 3600.0

    def add(self, other: RunUsage) -> None:
        for tier, value in other.byte_seconds.items():
            self.byte_seconds[tier] = self.byte_seconds.get(tier, 0.0) + value
        for task, value in other.by_task.items():
            self.by_task[task] = self.by_task.get(task, 0.0) + value
        self.bytes_added += other.bytes_added
        self.entries_added += other.entries_added


def run_usage(events: Iterable[Event], run_id: str, *, until: float,
              durable: str = "object") -> RunUsage:
    """Byte-seconds of the copies ``run_id`` made, up to ``until``, and what it added durably."""
    result = RunUsage(run_id)
    for residency in residencies(events):
        if residency.run != run_id:
            continue
        cost = residency.nbytes * residency.seconds_within(residency.start, until)
        result.byte_seconds[residency.tier] = result.byte_seconds.get(residency.tier, 0.0) + cost
        task = residency.task or "-"
        result.by_task[task] = result.by_task.get(task, 0.0) + cost
        if residency.tier == durable:
            result.bytes_added += residency.nbytes
            result.entries_added += 1
    return result
