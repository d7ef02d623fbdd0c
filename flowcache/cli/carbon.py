"""The ``flowcache carbon`` commands: ``forecast REGION``, ``plan`` and ``report RUN``.

Configuration is read here, at the edge: provider options from flags and, for API tokens, the
environment (``ELECTRICITYMAPS_TOKEN``, ``WATTTIME_USERNAME``/``WATTTIME_PASSWORD``). The
default provider reads the shipped 2022 Electricity Maps files, so ``--at 2022-06-01T12:00Z``
works offline. A plan made without any carbon data (run now at home, by default) exits 1.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flowcache.carbon.decision import Job
from flowcache.carbon.forecasting.intervals import bounds
from flowcache.carbon.forecasting.methods import forecast_for
from flowcache.carbon.planner import Planner, run_now_at_home
from flowcache.carbon.providers import get_provider
from flowcache.carbon.risk import describe_risk, weigh_risk
from flowcache.carbon.timestamps import duration_seconds, iso, to_epoch
from flowcache.cli import output
from flowcache.config import CarbonSettings
from flowcache.errors import CarbonError

carbon_app = typer.Typer(
    cls=output.OneLineErrors, help="Grid carbon intensity: forecasts and carbon-aware plans.",
                         no_args_is_help=True)
console = output.console
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

Provider = Annotated[str, typer.Option("--provider", help="files, electricitymaps, watttime, "
                                       "ukgrid, carbonaware, sdkjson")]
At = Annotated[str | None, typer.Option("--at", help="'now' for planning (ISO time); default: "
                                        "the wall clock")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="directory of Electricity Maps "
                                              "CSV files (files provider)")]
Csv = Annotated[list[Path] | None, typer.Option("--csv", help="a CSV file for the files "
                                                "provider, as REGION=PATH or PATH")]
Method = Annotated[str, typer.Option("--method", help="ensemble (default), blend, mean7 or "
                                     "holtwinters (when the provider has no forecast)")]


def make_provider(name: str, data_dir: Path | None, csv: list[Path] | None, column: str,
                  base_url: str | None = None) -> Any:
    if name in ("files", "emcsv"):
        files = {}
        for item in csv or []:
            text = str(item)
            region, sep, path = text.partition("=")
            if sep:
                files[region] = Path(path)
            else:
                files[Path(text).name.split("_")[0].split(".")[0]] = Path(text)
        return get_provider("files", data_dir=data_dir, files=files, column=column)
    options: dict[str, Any] = {"base_url": base_url} if base_url else {}
    if name == "electricitymaps":
        options["token"] = os.environ.get("ELECTRICITYMAPS_TOKEN")
    elif name == "watttime":
        options["username"] = os.environ.get("WATTTIME_USERNAME")
        options["password"] = os.environ.get("WATTTIME_PASSWORD")
    elif name == "sdkjson":
        if not csv:
            raise typer.BadParameter("sdkjson needs --csv PATH (the emissions JSON file)")
        return get_provider("sdkjson", path=csv[0])
    return get_provider(name, **options)


def _now(at: str | None) -> float:
    return to_epoch(at) if at else time.time()


@carbon_app.command()
def forecast(region: Annotated[str, typer.Argument(help="cloud region, alias or zone")],
             provider: Provider = "files", at: At = None,
             hours: Annotated[float, typer.Option(help="forecast horizon in hours")] = 24.0,
             method: Method = "ensemble", data_dir: DataDir = None, csv: Csv = None,
             column: Annotated[str, typer.Option(help="lca or direct (files)")] = "lca",
             base_url: Annotated[str | None, typer.Option(help="API base URL")] = None,
             as_json: Json = False) -> None:
    """Print the intensity forecast for REGION."""
    source = make_provider(provider, data_dir, csv, column, base_url)
    series = forecast_for(source, region, _now(at), hours * 3600.0, using=method)
    if as_json:
        output.emit_json(series.to_dict())
        return
    band = bounds(series)
    table = Table(title=f"{region}: {series.signal} gCO2eq/kWh from {series.source}"
                  + (f" (fallback: {series.fallback})" if series.fallback else ""))
    table.add_column("from (UTC)")
    table.add_column("gCO2eq/kWh", justify="right")
    if band is not None:
        table.add_column("90 % interval", justify="right")
    for i, (t, v) in enumerate(zip(series.times, series.values, strict=True)):
        cells = [iso(t), _number(v)]
        if band is not None:
            cells.append(f"{_number(band[0][i])} - {_number(band[1][i])}")
        table.add_row(*cells)
    console.print(table)
    for line in _forecast_notes(series):
        console.print(line)


@carbon_app.command()
def plan(duration: Annotated[str, typer.Option(help="expected run time, e.g. 2h")],
         regions: Annotated[str, typer.Option(help="allowed regions, comma-separated; the first "
                                              "is home unless --home")],
         max_delay: Annotated[str, typer.Option(help="how long it may wait, e.g. 8h")] = "0h",
         home: Annotated[str | None, typer.Option(help="where it runs by default")] = None,
         power: Annotated[float, typer.Option(help="average power draw in watts")] = 100.0,
         data_gb: Annotated[float, typer.Option(help="GB to move to another region")] = 0.0,
         interruptible: Annotated[bool, typer.Option(help="may run in pieces")] = False,
         provider: Provider = "files", at: At = None, method: Method = "ensemble",
         data_dir: DataDir = None, csv: Csv = None,
         column: Annotated[str, typer.Option(help="lca or direct (files)")] = "lca",
         plot: Annotated[Path | None, typer.Option(help="write a PNG of the forecasts and the "
                                                   "chosen window (needs matplotlib)")] = None,
         base_url: Annotated[str | None, typer.Option(help="API base URL")] = None,
         as_json: Json = False) -> None:
    """Choose when and where to run a job, and print why."""
    names = [r.strip() for r in regions.split(",") if r.strip()]
    if not names:
        raise typer.BadParameter("give at least one region")
    now = _now(at)
    delay = duration_seconds(max_delay)
    job = Job(duration=duration_seconds(duration), earliest=now, home=home or names[0],
              power_w=power, max_delay=delay, regions=tuple(names), data_gb=data_gb,
              interruptible=interruptible, deadline=now + delay + duration_seconds(duration)
              if interruptible else None, name="cli")
    source = make_provider(provider, data_dir, csv, column, base_url)
    horizon = max(job.window_end - now, 3600.0)
    forecasts, failed = {}, []
    for region in job.allowed:
        try:
            forecasts[region] = forecast_for(source, region, now, horizon, using=method)
        except CarbonError as exc:
            failed.append(f"{region}: {exc}")
    if forecasts and job.home in forecasts:
        decision = weigh_risk(job, Planner(forecasts, clock=lambda: now).plan(job), forecasts,
                              now, risk_aware=CarbonSettings.from_env().risk_aware)
    elif forecasts:
        decision = Planner(forecasts, clock=lambda: now).plan(job)
    else:
        decision = run_now_at_home(job, "no forecasts: " + "; ".join(failed), planned_at=now)
    if as_json:
        output.emit_json({"decision": decision.to_dict(), "left_out": failed})
        if not forecasts:
            raise typer.Exit(output.FAILURE)
        return
    table = Table(title=f"{duration} job, up to {max_delay} delay, at {iso(now)}")
    for col in ("region", "run now g/kWh", "best window g/kWh", "best start (UTC)"):
        table.add_column(col, justify="right" if "g/kWh" in col else "left")
    for region, series in forecasts.items():
        sub = Planner({region: series}).plan(Job(**{**job.__dict__, "home": region,
                                                    "regions": ()}))
        now_mean = series.mean(now, now + job.duration)
        table.add_row(region, f"{float(now_mean):.1f}", f"{sub.expected_intensity:.1f}",
                      iso(sub.start))
    console.print(table)
    console.print(f"[bold]decision:[/bold] {decision.reason}")
    if risk := describe_risk(decision):
        console.print(f"[dim]{risk}[/dim]")
    for line in failed:
        console.print(f"[yellow]left out[/yellow] {line}")
    if not forecasts:
        output.fail("no carbon data for any region: the plan is only 'run now at home'")
    if plot is not None:
        from flowcache.carbon.plot import plot_plan

        plot_plan(forecasts, decision, plot)
        console.print(f"wrote {plot}")


@carbon_app.command()
def report(flow_run: Annotated[str | None, typer.Argument(
               help="a flow run id: that run's decisions")] = None,
           since: Annotated[str | None, typer.Option(
               help="totals across runs over this past stretch, e.g. 7d")] = None,
           by: Annotated[str | None, typer.Option(help="with --since: group by user, flow "
                                                  "or region")] = None,
           as_json: Json = False) -> None:
    """What the carbon-aware runner decided and saved: for one flow run, or across runs."""
    if (flow_run is None) == (since is None):
        output.fail("give a flow run id, or --since (e.g. --since 7d) for the totals across "
                    "runs", output.USAGE)
    if since is not None:
        _report_since(since, by, as_json)
        return
    if by is not None:
        output.fail("--by groups the totals across runs: use it with --since", output.USAGE)
    _report_run(flow_run, as_json)


def _report_since(since: str, by: str | None, as_json: bool) -> None:
    from flowcache.accounts.ledger import ledger_of
    from flowcache.carbon.impact import GROUPS, aggregate, counter_line, read_impact
    from flowcache.config import StoreConfig
    from flowcache.units import format_duration, parse_duration

    if by is not None and by not in GROUPS:
        output.fail(f"--by {by}: use one of {', '.join(GROUPS)}", output.USAGE)
    seconds = parse_duration(since, "--since")
    config = StoreConfig.from_env()
    team = CarbonSettings.from_env().team_view
    ledger = ledger_of(config.build())
    if ledger is None:
        output.fail("the ledger is off (FLOWCACHE_LEDGER=off): carbon impact is logged there",
                    output.USAGE)
    users = [config.user]
    if team:
        users = sorted({*ledger.users(), config.user})
    events = read_impact(ledger, users, time.time() - seconds)
    rows = aggregate(events, by)
    line = counter_line(events, since_text=f"past {format_duration(seconds)}", team=team)
    if as_json:
        output.emit_json({"since_seconds": seconds, "team_view": team, "by": by,
                          "rows": rows, "counter": line})
        return
    columns = ("group", "runs", "users", "tasks", "recommended", "followed", "uptake",
               "shifted", "realised_g", "saved_vs_now_g", "saved_vs_home_g", "unknown")
    table = Table(*columns, title=f"carbon impact over the past {format_duration(seconds)}"
                  + (" (team view)" if team else f" ({config.user}'s runs)"))
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    console.print(table)
    console.print(line)


def _report_run(flow_run: str, as_json: bool) -> None:
    from flowcache.carbon.report import load_records, report_rows, summary_line
    from flowcache.config import StoreConfig

    try:
        records = load_records(StoreConfig.from_env().build(), flow_run)
    except KeyError:
        output.fail(f"no carbon records for flow run {flow_run} (a run keeps them only if it "
                    "used the CarbonAwareTaskRunner with carbon-aware tasks, and you read the "
                    "store it wrote to)")
    if as_json:
        output.emit_json(report_rows(records))
        return
    table = Table("task", "action", "region", "planned start", "actual start", "expected g",
                  "realised g", "now at home g", "saved g", "saved %",
                  title=f"carbon decisions of flow run {flow_run}")
    for row in report_rows(records):
        table.add_row(*(_cell(row[k]) for k in (
            "task", "action", "region", "planned start", "actual start", "expected g",
            "realised g", "run now at home g", "saved g", "saved %")))
    console.print(table)
    console.print(summary_line(records))
    for row in report_rows(records):
        console.print(f"  {row['task']}: {row['why']}")


def _number(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"


def _forecast_notes(series: Any) -> list[str]:
    """What a reader should know about how the forecast was made."""
    meta = series.meta
    notes = []
    if meta.get("method"):
        notes.append(f"made by {meta['method']} from {meta.get('history_days', '?')} days of "
                     "history" + (f" ({meta['fallback']})" if meta.get("fallback") else ""))
    if meta.get("interval"):
        notes.append(f"interval: {meta['interval']['calibration']}")
    elif meta.get("interval_note"):
        notes.append(meta["interval_note"])
    return notes


def _cell(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{value:.2f}" if isinstance(value, float) else str(value)

