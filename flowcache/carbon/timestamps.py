"""Instants: the one place user and API spellings of a point in time become UTC epoch seconds.

The carbon core computes in float epoch seconds (UTC) because numpy does arithmetic on them
directly; datetimes, ISO strings and ``numpy.datetime64`` are accepted at the edges and converted
here. A naive datetime or ISO string without an offset is taken as UTC: every source the core
reads (Electricity Maps, WattTime, the UK API, the GSF SDK) reports UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from flowcache.errors import ConfigError
from flowcache.units import parse_duration

TimeLike = float | int | datetime | str | np.datetime64

__all__ = ["TimeLike", "floor_to", "iso", "parse_duration", "to_datetime", "to_epoch"]


def to_epoch(value: TimeLike) -> float:
    """Seconds since 1970-01-01 UTC for any accepted spelling of an instant."""
    if isinstance(value, bool):
        raise ConfigError(f"cannot read {value!r} as a time")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[ms]").astype(np.int64)) / 1000.0
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "now":
            return datetime.now(UTC).timestamp()
        try:
            parsed = datetime.fromisoformat(text.replace(" UTC", "").replace("z", "Z"))
        except ValueError as exc:
            raise ConfigError(
                f"cannot read {value!r} as a time; use ISO 8601 such as 2022-06-01T12:00Z"
            ) from exc
        return to_epoch(parsed)
    raise ConfigError(f"cannot read a {type(value).__name__} as a time")


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def iso(epoch: float, *, seconds: bool = True) -> str:
    """``2022-01-01T00:00:00Z``: the spelling every provider accepts."""
    moment = to_datetime(epoch)
    if not seconds:
        return moment.strftime("%Y-%m-%dT%H:%MZ")
    if moment.microsecond:
        moment = moment.replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(epoch: float, step: float) -> float:
    return float(np.floor(epoch / step) * step)


def duration_seconds(value: str | float | timedelta) -> float:
    """``"2h"``, ``5400``, ``timedelta(hours=2)`` -> seconds (shared with cache lifetimes)."""
    seconds = parse_duration(value)
    if seconds < 0:
        raise ConfigError(f"a duration cannot be negative, got {value!r}")
    return seconds
