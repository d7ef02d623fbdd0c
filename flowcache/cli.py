"""The ``flowcache`` command: inspect and manage the store configured by the environment.

Users' commands (``info``, ``ls``, ``clear``, ``gc``, ``billing``, ``runs``) act as the
configured user; operators' (``admin ...``, ``clear --user``, ``ledger watch``) need a
configuration whose credentials reach every namespace (Redis admin, the whole bucket).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flowcache import admin, identity, manifest
from flowcache.accounts import billing
from flowcache.accounts.evictions import watch_evictions
from flowcache.accounts.ledger import ledger_of
from flowcache.carbon.cli import carbon_app
from flowcache.config import StoreConfig, TierSpec
from flowcache.errors import ConfigError, FlowcacheError
from flowcache.purge import PurgeReport, clear, sweep
from flowcache.units import parse_duration

app = typer.Typer(help="flowcache: tiered content-addressed cache and carbon-aware scheduling.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(carbon_app, name="carbon", help="Carbon intensity forecasts and plans.")
admin_app = typer.Typer(help="Operators: provision users, generate bucket policies.",
                        no_args_is_help=True)
app.add_typer(admin_app, name="admin")
ledger_app = typer.Typer(help="Operators: keep the billing ledger exact.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
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
    user: str = typer.Option(None, "--user", help="operators: every entry of this user, "
                             "removed by name (needs credentials that reach every namespace)"),
) -> None:
    """Remove entries from every tier: all of them, one flow's, or those older than a duration."""
    if user:
        if flow or older_than:
            console.print("[red]--user clears a whole namespace[/red]: drop --flow/--older-than")
            raise typer.Exit(2)
        store = _config().build()
        cleared = admin.clear_namespace(store.tiers, user, ledger=ledger_of(store))
        hot = ", ".join(f"{n} from {tier}" for tier, n in cleared.hot.items())
        console.print(f"cleared {cleared.entries} entries of {user} from the durable tier"
                      + (f" ({hot})" if hot else "") + f", {cleared.records} run records")
        return
    if not (flow or older_than or all_entries):
        console.print("[red]say what to clear:[/red] --all, --flow NAME or --older-than 7d")
        raise typer.Exit(2)
    store = _config().build()
    seconds = parse_duration(older_than, "--older-than") if older_than else None
    report = clear(store, flow=flow, older_than=seconds)
    _print_report("cleared", report)


@app.command("gc")
def gc_command(
    stale_after: str = typer.Option("15m", help="a run whose processes have not beaten for "
                                                "this long is abandoned"),
) -> None:
    """Remove what outlived its lifetime: abandoned runs' intermediates, expired entries,
    hot copies whose durable object is gone, cached copies of deleted or replaced files."""
    from flowcache.files import sweep_files

    store = _config().build()
    report = sweep(store, stale_after=parse_duration(stale_after, "--stale-after"))
    _print_report("collected", report)
    files = sweep_files(store)
    if files.urls:
        console.print(f"cached files: checked {files.urls}, dropped {files.entries} copies "
                      f"({files.bytes:,} bytes) of {len(files.deleted)} deleted and "
                      f"{len(files.replaced)} replaced files"
                      + (f"; could not check {len(files.errors)}" if files.errors else ""))
    ledger = ledger_of(store)
    if ledger is not None:
        ended = ledger.reconcile(store)
        if ended:
            console.print(f"ledger: ended {len(ended)} residencies whose copy was gone")


def _print_report(verb: str, report: PurgeReport) -> None:
    console.print(f"{verb} {report.entries} entries ({report.bytes:,} bytes) from every tier"
                  + (f", {report.runs} abandoned runs" if report.runs else "")
                  + (f", {report.hot_copies} orphaned hot copies" if report.hot_copies else ""))


# -- billing --------------------------------------------------------------------------------------
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


@app.command("billing")
def billing_command(
    since: str = typer.Option(..., "--since", help="start: 2026-11-01, 2026-11-01T12:00 or 7d"),
    until: str = typer.Option(None, "--until", help="end (default: now)"),
    user: str = typer.Option(None, "--user", help="whose usage (default: the configured user)"),
    by: str = typer.Option("tier", "--by", help="group rows by tier, flow, run or task"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Byte-hours per tier, entries, and the compute time hits saved, from the ledger."""
    config = _config()
    ledger = config.build_ledger()
    if ledger is None:
        console.print("[red]the ledger is off[/red] (FLOWCACHE_LEDGER=off): nothing to bill")
        raise typer.Exit(2)
    user = identity.validate_user(user or config.user)
    start = parse_when(since)
    end = parse_when(until) if until else dt.datetime.now(dt.UTC).timestamp()
    try:
        report = billing.usage(ledger.events(user), user=user, since=start, until=end, by=by)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(_usage_json(report), indent=1))
        return
    lead = ["tier"] if by == "tier" else [by, "tier"]
    table = Table(*lead, "byte-hours", "entries", "bytes written", "hits", "saved (s)",
                  title=f"{user}: {_utc(start)} .. {_utc(end)}")
    for row in report.rows:
        names = [row.tier] if by == "tier" else [row.group, row.tier]
        table.add_row(*names, f"{row.byte_hours:,.3f}", str(row.entries),
                      f"{row.bytes_written:,}", str(row.hits), f"{row.saved_seconds:,.1f}")
    table.add_row(*(["TOTAL"] + [""] * (len(lead) - 1)), f"{report.byte_seconds() / 3600:,.3f}",
                  str(int(report.total("entries"))), f"{int(report.total('bytes_written')):,}",
                  str(int(report.total("hits"))), f"{report.total('saved_seconds'):,.1f}")
    console.print(table)
    console.print(f"{report.misses} misses")


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
def ledger_watch(configure: bool = typer.Option(
        False, "--configure", help="first add E, e and x to the server's notify-keyspace-events"),
) -> None:
    """End Redis residencies as Redis evicts or expires them (runs until interrupted)."""
    config = _config()
    store = config.build()
    tier = next((t for t in store.hot if t.name == "redis"), None)
    ledger = ledger_of(store)
    if tier is None or ledger is None:
        console.print("[red]needs a redis tier in FLOWCACHE_STORE and a ledger[/red]")
        raise typer.Exit(2)
    watcher = watch_evictions(tier.client, ledger, prefix=tier.prefix)
    if configure:
        console.print(f"notify-keyspace-events = {watcher.configure()}")
    watcher.start()
    console.print(f"watching {tier.describe()} for evictions and expiries (Ctrl-C stops)")
    try:
        watcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        ledger.close()
    console.print(f"recorded {watcher.reported} removals")


@ledger_app.command("reconcile")
def ledger_reconcile() -> None:
    """End the residencies whose copy is gone (what the watcher missed); gc does this too."""
    store = _config().build()
    ledger = ledger_of(store)
    if ledger is None:
        console.print("[red]the ledger is off[/red]")
        raise typer.Exit(2)
    ended = ledger.reconcile(store)
    ledger.close()
    console.print(f"ended {len(ended)} residencies whose copy was gone")


# -- run manifests --------------------------------------------------------------------------------
@app.command("runs")
def runs_command(
    directory: str = typer.Argument(..., help="an output directory with a run manifest"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Which run wrote each file of DIRECTORY, from what; stale entries are marked."""
    if not manifest.manifest_path(directory).exists():
        console.print(f"[red]no run manifest in {directory}[/red] ({manifest.MANIFEST_NAME})")
        raise typer.Exit(2)
    rows = manifest.check(directory, _config().fingerprinter())
    if as_json:
        typer.echo(json.dumps([{"workflow": r.workflow, "file": r.file, "status": r.status,
                                "reasons": list(r.reasons), **r.entry} for r in rows], indent=1))
        return
    table = Table("workflow", "file", "task", "finished", "status")
    for row in rows:
        status = row.status if row.status == "ok" else f"[red]{row.status.upper()}[/red]: " + \
            "; ".join(row.reasons)
        table.add_row(row.workflow, row.file, str(row.entry.get("task", "")),
                      str(row.entry.get("finished", ""))[:19], status)
    console.print(table)
    stale = sum(row.status != "ok" for row in rows)
    console.print(f"{len(rows)} files, {stale} not up to date")


# -- operators ------------------------------------------------------------------------------------
def _admin_redis(config: StoreConfig, url: str | None) -> tuple[object, str] | None:
    import redis

    spec = next((TierSpec.parse(t) for t in config.tiers if TierSpec.parse(t).kind == "redis"),
                None)
    prefix = str(spec.options.get("prefix", "flowcache:")) if spec else "flowcache:"
    if url:
        return redis.Redis.from_url(url), prefix
    if spec is None:
        return None
    return redis.Redis.from_url(spec.url), prefix


@admin_app.command("add-user")
def admin_add_user(
    user: str = typer.Argument(..., help="the new user (their namespace)"),
    redis_url: str = typer.Option(None, "--redis-url", help="admin connection to Redis "
                                  "(default: the redis tier of FLOWCACHE_STORE)"),
    key_dir: str = typer.Option(None, "--key-dir", help="where to write <user>.key "
                                 "(default: FLOWCACHE_KEYS_DIR)"),
    inline_key: bool = typer.Option(False, "--inline-key", help="print FLOWCACHE_SIGNING_KEY "
                                    "instead of a key file path"),
    rotate_key: bool = typer.Option(False, "--rotate-key", help="replace an existing key "
                                    "(entries signed with the old one become unreadable)"),
) -> None:
    """Provision USER: a signing key, a Redis ACL user confined to their keys, and print the
    configuration they need."""
    config = _config()
    identity.validate_user(user)
    key_path = (Path(key_dir) if key_dir else config.keys_dir).expanduser() / f"{user}.key"
    if key_path.exists() and not rotate_key:
        key = identity.load_or_create_key(key_path)
    else:
        key = identity.new_key()
        identity.write_key(key_path, key, replace=rotate_key)
    lines = [f"# flowcache configuration for {user}", f"export FLOWCACHE_USER={user}",
             f"export FLOWCACHE_SIGNING_KEY={key.hex()}" if inline_key
             else f"export FLOWCACHE_SIGNING_KEY_FILE={shlex.quote(str(key_path))}"]
    connection = _admin_redis(config, redis_url)
    if connection is None:
        lines.append(f"export FLOWCACHE_STORE={shlex.quote('+'.join(config.tiers))}")
        lines.append("# no redis tier: no Redis ACL user was made")
    else:
        client, prefix = connection
        tenant = admin.provision_redis_user(client, user, prefix=prefix)
        lines.append("export FLOWCACHE_STORE="
                     + shlex.quote(admin.tenant_store_spec(config.tiers, tenant)))
        lines.append(f"# Redis ACL user {tenant.acl_user}: keys "
                     + " ".join(admin.tenant_key_patterns(user, prefix))
                     + (" (saved to the ACL file)" if tenant.persisted else
                        " (not persisted: the server has no aclfile; re-run after a restart)"))
    lines.append(f"# object store: confine {user}'s credentials to their prefix with "
                 f"`flowcache admin bucket-policy {user} --s3 BUCKET/PREFIX` (or --gcs)")
    typer.echo("\n".join(lines))


@admin_app.command("remove-user")
def admin_remove_user(
    user: str = typer.Argument(...),
    redis_url: str = typer.Option(None, "--redis-url", help="admin connection to Redis"),
) -> None:
    """Delete USER's Redis ACL user (their entries stay: `flowcache clear --user` removes them)."""
    connection = _admin_redis(_config(), redis_url)
    if connection is None:
        console.print("[red]no redis tier configured and no --redis-url[/red]")
        raise typer.Exit(2)
    removed = admin.remove_redis_user(connection[0], user)
    console.print(f"{admin.acl_username(user)}: {'removed' if removed else 'did not exist'}")


@admin_app.command("bucket-policy")
def admin_bucket_policy(
    user: str = typer.Argument(...),
    s3: str = typer.Option(None, "--s3", help="BUCKET/PREFIX of the durable tier on S3"),
    gcs: str = typer.Option(None, "--gcs", help="BUCKET/PREFIX of the durable tier on GCS"),
    principal: str = typer.Option(None, "--principal", help="S3: the user's IAM ARN, for a "
                                  "bucket policy (default: an identity policy)"),
    member: str = typer.Option(None, "--member", help="GCS: the user's principal, e.g. "
                               "serviceAccount:alice@project.iam.gserviceaccount.com"),
    commands: bool = typer.Option(False, "--commands", help="GCS: print the gcloud commands "
                                  "for a managed folder (listing included) instead"),
) -> None:
    """Print an IAM policy confining USER's object-store credentials to their prefix."""
    if bool(s3) == bool(gcs):
        console.print("[red]give exactly one of --s3 BUCKET/PREFIX or --gcs BUCKET/PREFIX[/red]")
        raise typer.Exit(2)
    if s3:
        typer.echo(json.dumps(admin.s3_policy(user, s3, principal=principal), indent=2))
    elif commands:
        typer.echo("\n".join(admin.gcs_managed_folder_commands(user, gcs, member=member)))
    else:
        typer.echo(json.dumps(admin.gcs_policy(user, gcs, member=member), indent=2))


def main() -> None:
    try:
        app()
    except FlowcacheError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
