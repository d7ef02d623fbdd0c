"""The ``flowcache`` command: inspect and manage the store configured by the environment."""

from __future__ import annotations

import datetime as dt
import sys

import typer
from rich.console import Console
from rich.table import Table

from flowcache.carbon.cli import carbon_app
from flowcache.config import StoreConfig
from flowcache.errors import FlowcacheError
from flowcache.lifecycle import PurgeReport, clear, sweep
from flowcache.lifetimes import parse_duration

app = typer.Typer(help="flowcache: tiered content-addressed cache and carbon-aware scheduling.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(carbon_app, name="carbon", help="Carbon intensity forecasts and plans.")
console = Console()


def _config() -> StoreConfig:
    try:
        return StoreConfig.from_env()
    except FlowcacheError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def info() -> None:
    """Show the configured user, tiers and lock backend."""
    config = _config()
    store = config.build()
    console.print(f"user      {config.user}")
    for index, tier in enumerate(store.tiers):
        role = "durable" if tier.durable else "hot"
        console.print(f"tier {index}    {tier.describe()} ({role})")
    outer = store.locks.outer
    console.print(f"locks     {type(outer).__name__ if outer else 'threads only'}")


@app.command("ls")
def list_entries(limit: int = typer.Option(50, help="show at most this many entries")) -> None:
    """List this user's entries in the durable tier (newest first)."""
    store = _config().build()
    rows = []
    for name, header in store.headers():
        rows.append((name, header))
    rows.sort(key=lambda row: -(row[1].created if row[1] else 0))
    table = Table("key", "bytes", "created", "lifetime", "task")
    for name, header in rows[:limit]:
        if header is None:
            table.add_row(store.key_of(name)[:16], "?", "?", "[red]unreadable[/red]", "")
            continue
        created = dt.datetime.fromtimestamp(header.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(header.key[:16], f"{header.size:,}", created,
                      header.lifetime.get("kind", "?"), str(header.meta.get("task", "")))
    console.print(table)
    console.print(f"{len(rows)} entries")


@app.command("clear")
def clear_command(
    flow: str = typer.Option(None, "--flow", help="only entries written by this flow"),
    older_than: str = typer.Option(None, "--older-than",
                                   help="only entries older than this, e.g. 7d or 12h"),
    all_entries: bool = typer.Option(False, "--all", help="every entry of this user"),
) -> None:
    """Remove entries from every tier: all of them, one flow's, or those older than a duration."""
    if not (flow or older_than or all_entries):
        console.print("[red]say what to clear:[/red] --all, --flow NAME or --older-than 7d")
        raise typer.Exit(2)
    store = _config().build()
    seconds = parse_duration(older_than) if older_than else None
    report = clear(store, flow=flow, older_than=seconds)
    _print_report("cleared", report)


@app.command("gc")
def gc_command(
    stale_after: str = typer.Option("15m", help="a run whose processes have not beaten for "
                                                "this long is abandoned"),
) -> None:
    """Remove what outlived its lifetime: abandoned runs' intermediates, expired entries,
    hot copies whose durable object is gone."""
    store = _config().build()
    report = sweep(store, stale_after=parse_duration(stale_after))
    _print_report("collected", report)


def _print_report(verb: str, report: PurgeReport) -> None:
    console.print(f"{verb} {report.entries} entries ({report.bytes:,} bytes) from every tier"
                  + (f", {report.runs} abandoned runs" if report.runs else "")
                  + (f", {report.hot_copies} orphaned hot copies" if report.hot_copies else ""))


def main() -> None:
    try:
        app()
    except FlowcacheError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
