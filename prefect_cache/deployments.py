"""Carbon-aware deployment schedules: run a nightly deployment at the greenest time in its window.

A cron schedule fixes the minute a deployment runs; the greenest minute of "some time tonight
between 22:00 and 06:00" changes every night. So instead of putting the job itself on a cron, put
a tiny planning flow on the cron at the window's start; it asks the planner for the greenest
start and schedules the real deployment's run for then::

    @flow
    def plan_nightly_etl() -> None:
        schedule_greenest_run("etl/nightly", window="22:00-06:00", duration="1h",
                              region="eu-west", provider=get_provider("electricitymaps"))

    plan_nightly_etl.serve(name="planner", cron="55 21 * * *")     # or `prefect deploy`

The run appears in the Prefect UI as Scheduled at the chosen time right after the planner ran.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.planner import plan_with_provider
from flowcache.carbon.providers import IntensityProvider
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ConfigError
from flowcache.units import parse_duration


def window_bounds(window: str, *, day: dt.date, tz: str = "UTC") -> tuple[float, float]:
    """``"22:00-06:00"`` on ``day`` -> (start, end) epoch seconds; an end earlier than the
    start is on the next day."""
    try:
        first, _, last = window.partition("-")
        start_time = dt.time.fromisoformat(first.strip())
        end_time = dt.time.fromisoformat(last.strip())
    except ValueError:
        raise ConfigError(f"cannot read window {window!r}; write it like '22:00-06:00'") from None
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, start_time, zone)
    end = dt.datetime.combine(day, end_time, zone)
    if end <= start:
        end += dt.timedelta(days=1)
    return start.timestamp(), end.timestamp()


def plan_window(window: str, *, duration: str | float, region: str,
                provider: IntensityProvider, day: dt.date | None = None, tz: str = "UTC",
                now: Any = None, power_w: float = 1000.0) -> Decision:
    """The planner's decision for a job that must run inside ``window`` (tonight by default)."""
    current = to_epoch(now) if now is not None else dt.datetime.now(dt.UTC).timestamp()
    if day is None:
        day = dt.datetime.fromtimestamp(current, ZoneInfo(tz)).date()
    start, end = window_bounds(window, day=day, tz=tz)
    seconds = parse_duration(duration)
    if end - start < seconds:
        raise ConfigError(f"a {seconds / 3600:g} h job does not fit in the window {window}")
    earliest = max(start, current)
    if earliest + seconds > end:
        raise ConfigError(f"the window {window} of {day} has already passed")
    job = Job(duration=seconds, earliest=earliest, home=region, power_w=power_w, deadline=end,
              name=f"window {window}")
    return plan_with_provider(job, provider, now=earliest)


def greenest_start(window: str, *, duration: str | float, region: str,
                   provider: IntensityProvider, day: dt.date | None = None, tz: str = "UTC",
                   now: Any = None) -> dt.datetime:
    """When, inside ``window``, a job of ``duration`` emits least (the window's start if the
    provider has no data: the decision falls back to running at once)."""
    decision = plan_window(window, duration=duration, region=region, provider=provider, day=day,
                           tz=tz, now=now)
    return dt.datetime.fromtimestamp(decision.start, dt.UTC)


def schedule_greenest_run(deployment: str, *, window: str, duration: str | float, region: str,
                          provider: IntensityProvider, parameters: dict[str, Any] | None = None,
                          day: dt.date | None = None, tz: str = "UTC", now: Any = None) -> Any:
    """Create a run of ``deployment`` ("flow-name/deployment-name") scheduled at the greenest
    start inside ``window``; returns the flow run."""
    from prefect.deployments import run_deployment

    start = greenest_start(window, duration=duration, region=region, provider=provider, day=day,
                           tz=tz, now=now)
    return run_deployment(deployment, parameters=parameters, scheduled_time=start, timeout=0)
