"""The store's commands: ``info``, ``doctor``, ``ls``, ``clear`` and ``gc``."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import typer
from rich.table import Table

from flowcache.accounts.ledger import ledger_of
from flowcache.admin import clear_namespace
from flowcache.cli import output
from flowcache.config import StoreConfig
from flowcache.diagnostics import FAIL, WARN, diagnose
from flowcache.files import sweep_files
from flowcache.identity import key_of
from flowcache.purge import PurgeReport, clear, sweep
from flowcache.units import format_duration, parse_duration

Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would be removed; remove "
                                      "nothing")]


def info(as_json: Json = False) -> None:
    """Show the configured user, tiers, lock and ledger backends."""
    config = StoreConfig.from_env()
    store = config.build()
    ledger = ledger_of(store)
    outer = store.locks.outer
    data = {"user": config.user,
            "tiers": [{"index": index, "tier": tier.describe(),
                       "role": "durable" if tier.durable else "hot"}
                      for index, tier in enumerate(store.tiers)],
            "locks": type(outer).__name__ if outer else "threads only",
            "ledger": ledger.backend.describe() if ledger is not None else "off"}
    if as_json:
        output.emit_json(data)
        return
    output.note(f"user      {config.user}")
    for row in data["tiers"]:
        output.note(f"tier {row['index']}    {row['tier']} ({row['role']})")
    output.note(f"locks     {data['locks']}")
    output.note(f"ledger    {data['ledger']}")


def doctor(as_json: Json = False) -> None:
    """Check the setup end to end: each tier answers, the bucket exists, a signed entry
    round-trips; show the user, key, ledger and locks; warn about what is risky."""
    checks = diagnose(StoreConfig.from_env(), dict(os.environ))
    if as_json:
        output.emit_json([check.as_dict() for check in checks])
    else:
        colour = {"ok": "green", WARN: "yellow", FAIL: "red"}
        for check in checks:
            output.console.print(f"[{colour[check.status]}]{check.status:4}[/] "
                                 f"{check.name}: {check.detail}"
                                 + (f" ({check.seconds * 1000:.0f} ms)" if check.seconds else ""),
                                 highlight=False, soft_wrap=True)
    failed = [check.name for check in checks if check.status == FAIL]
    if failed:
        output.fail(f"{len(failed)} check(s) failed: {', '.join(failed)}")


def list_entries(limit: Annotated[int, typer.Option(help="stop after this many entries")] = 50,
                 newest: Annotated[bool, typer.Option(
                     "--newest", help="newest first (reads every header before printing)")]
                 = False, as_json: Json = False) -> None:
    """List this user's entries in the durable tier."""
    store = StoreConfig.from_env().build()
    rows = []
    headers = store.headers()
    if newest:
        everything = list(output.tracked(headers, "reading headers"))
        everything.sort(key=lambda row: -(row[1].created if row[1] else 0))
        headers = iter(everything)
    for name, header in headers:
        if len(rows) >= limit:
            break
        rows.append({"key": key_of(name), "bytes": header.size if header else None,
                     "created": _utc(header.created) if header else None,
                     "lifetime": header.lifetime.get("kind") if header else "unreadable",
                     "task": str(header.meta.get("task", "")) if header else ""})
    if as_json:
        output.emit_json(rows)
        return
    table = Table("key", "size", "created", "lifetime", "task")
    for row in rows:
        table.add_row(row["key"][:16], output.size(row["bytes"]) if row["bytes"] is not None
                      else "?", row["created"] or "?", row["lifetime"], row["task"])
    output.console.print(table)
    output.note(f"{len(rows)} entries" + (f" (the first {limit}: --limit N for more)"
                                          if len(rows) >= limit else ""))


def clear_command(
    flow: Annotated[str | None, typer.Option("--flow", help="only entries written by this "
                                             "flow")] = None,
    older_than: Annotated[str | None, typer.Option("--older-than", help="only entries older "
                                                   "than this, e.g. 7d or 12h")] = None,
    all_entries: Annotated[bool, typer.Option("--all", help="every entry of this user")]
    = False,
    user: Annotated[str | None, typer.Option("--user", help="operators: every entry of this "
                    "user, removed by name (needs credentials that reach every namespace)")]
    = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before --all or "
                                      "--user")] = False,
    dry_run: DryRun = False, as_json: Json = False,
) -> None:
    """Remove entries from every tier: all of them, one flow's, or those older than a duration."""
    if user and (flow or older_than or all_entries):
        output.fail("--user clears a whole namespace: drop --flow, --older-than and --all",
                    output.USAGE)
    if not (user or flow or older_than or all_entries):
        output.fail("say what to clear: --all, --flow NAME, --older-than 7d or --user NAME",
                    output.USAGE)
    seconds = parse_duration(older_than, "--older-than") if older_than else None
    store = StoreConfig.from_env().build()
    whom = user or store.identity.user
    if (user or all_entries) and not dry_run and not yes:
        _confirm(f"remove every entry of {whom!r} from every tier ({store.describe()})?")
    if user:
        if dry_run:
            output.fail("--dry-run cannot list another user's entries: it reads by name only",
                        output.USAGE)
        cleared = clear_namespace(store.tiers, user, ledger=ledger_of(store))
        data = {"user": user, "entries": cleared.entries, "hot": cleared.hot,
                "records": cleared.records}
        if as_json:
            output.emit_json(data)
            return
        hot = ", ".join(f"{n} from {tier}" for tier, n in cleared.hot.items())
        output.note(f"cleared {cleared.entries} entries of {user} from the durable tier"
                    + (f" ({hot})" if hot else "") + f", {cleared.records} run records")
        return
    with output.progress("clearing") as advance:
        report = clear(store, flow=flow, older_than=seconds, dry_run=dry_run, progress=advance)
    _print_report("would clear" if dry_run else "cleared", report, as_json)


def gc_command(
    stale_after: Annotated[str, typer.Option(help="a run whose processes on other hosts have "
                                             "not beaten for this long is abandoned")] = "15m",
    dry_run: DryRun = False, as_json: Json = False,
) -> None:
    """Remove what outlived its lifetime: abandoned runs' intermediates, expired entries,
    hot copies whose durable object is gone, leftovers of interrupted writes, cached copies
    of deleted or replaced files."""
    store = StoreConfig.from_env().build()
    stale = parse_duration(stale_after, "--stale-after")
    with output.progress("collecting") as advance:
        report = sweep(store, stale_after=stale, dry_run=dry_run, progress=advance)
    data = {"store": report.as_dict()}
    if not dry_run:
        files = sweep_files(store)
        data["files"] = {"checked": files.urls, "entries": files.entries, "bytes": files.bytes,
                         "deleted": len(files.deleted), "replaced": len(files.replaced),
                         "errors": len(files.errors)}
        ledger = ledger_of(store)
        data["ledger_ended"] = len(ledger.reconcile(store)) if ledger is not None else 0
    if as_json:
        output.emit_json(data)
        return
    _print_report("would collect" if dry_run else "collected", report, False)
    output.note(f"(runs are abandoned when their processes here are gone, or elsewhere silent "
                f"for {format_duration(stale)})")
    files_data = data.get("files")
    if files_data and files_data["checked"]:
        output.note(f"cached files: checked {files_data['checked']}, dropped "
                    f"{files_data['entries']} copies ({output.size(files_data['bytes'])}) of "
                    f"{files_data['deleted']} deleted and {files_data['replaced']} replaced "
                    "files" + (f"; could not check {files_data['errors']}"
                               if files_data["errors"] else ""))
    if data.get("ledger_ended"):
        output.note(f"ledger: ended {data['ledger_ended']} residencies whose copy was gone")


def _print_report(verb: str, report: PurgeReport, as_json: bool) -> None:
    if as_json:
        output.emit_json(report.as_dict())
        return
    output.note(f"{verb} {report.entries} entries ({output.size(report.bytes)}) from every tier"
                + (f", {report.runs} abandoned runs" if report.runs else "")
                + (f", {report.hot_copies} orphaned hot copies" if report.hot_copies else "")
                + (f", {report.debris} leftovers of interrupted writes"
                   if report.debris else ""))


def _confirm(question: str) -> None:
    if not output.is_interactive():
        output.fail(f"{question} Not asked: stdin is not a terminal; pass --yes to confirm",
                    output.USAGE)
    if not typer.confirm(question, default=False):
        output.fail("nothing removed", output.FAILURE)


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
