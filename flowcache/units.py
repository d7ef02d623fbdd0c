"""Durations and sizes as people write them, parsed strictly into seconds and bytes.

Durations follow Go's ``time.ParseDuration`` and Prometheus (``500ms``, ``90s``, ``1h30m``,
``1.5h``, ``7d``, ``2w``), accept words (``10 minutes``, ``2 hours 30 minutes``) and ISO 8601
(``PT2H``, ``P1DT12H``), and take plain numbers as seconds. What is ambiguous is refused, not
guessed: months and years (28 to 31, 365 or 366 days), a capital ``M`` (minutes or months?),
a unit missing between two numbers (``1h30``), negative or non-finite values. Sizes take
decimal (``KB``, ``MB``, ``GB``) and binary (``KiB``, ``MiB``, ``GiB``) units; plain integers
are bytes.

Every error is a :class:`~flowcache.errors.ConfigError` naming the setting, the value and a
correct example, because a typo in a lifetime or a budget must stop the run, not change it.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from flowcache.errors import ConfigError

_UNIT_SECONDS = {
    "ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "wk": 604800.0, "wks": 604800.0, "week": 604800.0, "weeks": 604800.0,
}
_AMBIGUOUS = {"mo", "mon", "mons", "month", "months", "y", "yr", "yrs", "year", "years"}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Zµ]+)?\s*,?")
_ISO = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                  r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                  r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
_DURATION_EXAMPLE = "e.g. '500ms', '90s', '1h30m', '2 hours', '7d' or 'PT2H'"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "ki": 2**10, "kib": 2**10,
               "m": 10**6, "mb": 10**6, "mi": 2**20, "mib": 2**20, "g": 10**9, "gb": 10**9,
               "gi": 2**30, "gib": 2**30, "t": 10**12, "tb": 10**12, "ti": 2**40, "tib": 2**40}


def parse_duration(value: str | float | timedelta, setting: str = "duration") -> float:
    """Seconds in ``value``: ``"90s"``, ``"1h30m"``, ``"10 minutes"``, ``"PT2H"``, ``3600`` or
    a ``timedelta``; :class:`ConfigError` naming ``setting`` for anything else."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise _bad_duration(setting, value, "a boolean is not a duration")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value, setting)
    else:
        raise _bad_duration(setting, value, f"a {type(value).__name__} is not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise _bad_duration(setting, value, "it must be a finite, non-negative time")
    return seconds


def _parse_text(text: str, setting: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise _bad_duration(setting, text, "it is empty")
    if re.match(r"^[Pp](?:\d|[Tt]|$)", stripped):
        return _parse_iso(stripped, setting)
    try:
        return float(stripped)  # a bare number: seconds
    except ValueError:
        pass
    total, position = 0.0, 0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None or match.end() == position:
            raise _bad_duration(setting, text, f"cannot read {stripped[position:]!r}")
        number, unit = match.group(1), match.group(2)
        if unit is None:
            raise _bad_duration(setting, text, f"{number} has no unit (write {number}s, "
                                               f"{number}min, {number}h...)")
        if unit == "M":
            raise _bad_duration(setting, text, "'M' could be minutes or months: write 'min'")
        key = unit.lower()
        if key in _AMBIGUOUS:
            raise _bad_duration(setting, text, f"'{unit}' has no fixed length: write days "
                                               "('30d') or weeks ('52w')")
        if key not in _UNIT_SECONDS:
            raise _bad_duration(setting, text, f"unknown unit {unit!r} (use ms, s, min, h, d "
                                               "or w, or words: minutes, hours...)")
        total += float(number) * _UNIT_SECONDS[key]
        position = match.end()
        if stripped[position:position + 3].lower() == "and":
            position += 3
    return total


def _parse_iso(text: str, setting: str) -> float:
    match = _ISO.match(text.upper())
    if match is None or text.upper() in ("P", "PT"):
        if re.match(r"^P(?:\d+(?:\.\d+)?[YM])", text.upper()):
            raise _bad_duration(setting, text, "ISO 8601 years and months have no fixed "
                                               "length: use days ('P30D')")
        raise _bad_duration(setting, text, "not an ISO 8601 duration (PnWnDTnHnMnS)")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return (parts.get("w", 0.0) * 604800 + parts.get("d", 0.0) * 86400
            + parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0))


def _bad_duration(setting: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"{setting}={value!r} is not a duration ({why}); use "
                       f"{_DURATION_EXAMPLE}")


def parse_size(value: str | int, setting: str = "size") -> int:
    """Bytes in ``value``: ``"512MiB"`` -> 536870912, ``"2GB"``, ``1024``; ConfigError naming
    ``setting`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{setting}={value!r} is not a size; use e.g. 512MiB or 2GB")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{setting}={value!r} is negative; use e.g. 512MiB or 2GB")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"{setting}={value!r} is not a size; use e.g. 512MiB or 2GB "
                          "(KiB/MiB/GiB are binary, KB/MB/GB decimal)")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


def format_size(nbytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: how every command prints a size."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"``: the inverse of :func:`parse_duration`, for messages."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    out, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"
