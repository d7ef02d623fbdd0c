"""Billing and the ledger: ``billing``, ``ledger watch``, ``ledger reconcile``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from flowcache.accounts import billing
from flowcache.accounts.evictions import watch_evictions
from flowcache.accounts.ledger import ledger_of
from flowcache.cli import output
from flowcache.config import StoreConfig
from flowcache.errors import ConfigError
from flowcache.identity import validate_user
from flowcache.units import parse_duration

ledger_app = typer.Typer(
    cls=output.OneLineErrors, help="Operators: keep the billing ledger exact.",
    no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def parse_when(text: str, now: float | None = None) -> float:
    """``2026-11-01``, ``2026-11-01T12:00`` (UTC unless it says otherwise) or ``7d`` (ago)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return (dt.datetime.now(dt.UTC).timestamp() if now is None else now) - \
                parse_duration(text)
        except ConfigError:
            raise ConfigError(f"cannot read {text!r} as a time: give a date (2026-11-01), a "
                              "date and time (2026-11-01T12:00) or a duration ago (7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def billing_command(
    since: Annotated[str, typer.Option("--since", help="start: 2026-11-01, 2026-11-01T12:00 "
                                       "or 7d")],
    until: Annotated[str | None, typer.Option("--until", help="end (default: now)")] = None,
    user: Annotated[str | None, typer.Option("--user", help="whose usage (default: the "
                                             "configured user)")] = None,
    by: Annotated[str, typer.Option("--by", help="group rows by tier, flow, run or task")]
    = "tier",
    as_json: Json = False,
) -> None:
    """Byte-hours per tier, entries, and the compute time hits saved, from the ledger."""
    config = StoreConfig.from_env()
    ledger = config.build_ledger()
    if ledger is None:
        output.fail("the ledger is off (FLOWCACHE_LEDGER=off): nothing to bill", output.USAGE)
    if by not in billing.GROUPS:
        output.fail(f"--by {by!r}: use one of {', '.join(billing.GROUPS)}", output.USAGE)
    user = validate_user(user or config.user)
    start = parse_when(since)
    end = parse_when(until) if until else dt.datetime.now(dt.UTC).timestamp()
    if end < start:
        output.fail(f"--until {_utc(end)} is before --since {_utc(start)}", output.USAGE)
    events = list(output.tracked(ledger.events(user), "reading the ledger"))
    report = billing.usage(events, user=user, since=start, until=end, by=by)
    if as_json:
        output.emit_json(_usage_json(report))
        return
    lead = ["tier"] if by == "tier" else [by, "tier"]
    table = Table(*lead, "byte-hours", "entries", "written", "hits", "saved (s)",
                  title=f"{user}: {_utc(start)} .. {_utc(end)}")
    for row in report.rows:
        names = [row.tier] if by == "tier" else [row.group, row.tier]
        table.add_row(*names, f"{row.byte_hours:,.3f}", str(row.entries),
                      output.size(row.bytes_written), str(row.hits), f"{row.saved_seconds:,.1f}")
    table.add_row(*(["TOTAL"] + [""] * (len(lead) - 1)), f"{report.byte_seconds() / 3600:,.3f}",
                  str(int(report.total("entries"))),
                  output.size(report.total("bytes_written")),
                  str(int(report.total("hits"))), f"{report.total('saved_seconds'):,.1f}")
    output.console.print(table)
    output.note(f"{report.misses} misses")


def _usage_json(report: billing.Usage) -> dict:
    return {"user": report.user, "since": report.since, "until": report.until, "by": report.by,
            "misses": report.misses,
            "rows": [{"group": r.group, "tier": r.tier, "byte_seconds": r.byte_seconds,
                      "byte_hours": r.byte_hours, "entries": r.entries,
                      "bytes_written": r.bytes_written, "hits": r.hits,
                      "saved_seconds": r.saved_seconds} for r in report.rows]}


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@ledger_app.command("watch")
def ledger_watch(configure: Annotated[bool, typer.Option(
        "--configure", help="first add E, e and x to the server's notify-keyspace-events")]
        = False) -> None:
    """End Redis residencies as Redis evicts or expires them (runs until interrupted)."""
    store = StoreConfig.from_env().build()
    tier = next((t for t in store.hot if t.name == "redis"), None)
    ledger = ledger_of(store)
    if tier is None or ledger is None:
        output.fail("ledger watch needs a redis tier in FLOWCACHE_STORE and a ledger",
                    output.USAGE)
    watcher = watch_evictions(tier.client, ledger, prefix=tier.prefix)
    if configure:
        output.note(f"notify-keyspace-events = {watcher.configure()}")
    watcher.start()
    output.note(f"watching {tier.describe()} for evictions and expiries (Ctrl-C stops)")
    try:
        watcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        ledger.close()
    output.note(f"recorded {watcher.reported} removals")


@ledger_app.command("reconcile")
def ledger_reconcile(as_json: Json = False) -> None:
    """End the residencies whose copy is gone (what the watcher missed); gc does this too."""
    store = StoreConfig.from_env().build()
    ledger = ledger_of(store)
    if ledger is None:
        output.fail("the ledger is off (FLOWCACHE_LEDGER=off)", output.USAGE)
    ended = ledger.reconcile(store)
    ledger.close()
    if as_json:
        output.emit_json({"ended": len(ended)})
        return
    output.note(f"ended {len(ended)} residencies whose copy was gone")
