"""Durations and sizes: what people write parses to what they meant; the ambiguous is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowcache.errors import ConfigError
from flowcache.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("1ms", 0.001), ("500ms", 0.5), ("90s", 90), ("90", 90), (" 2h ", 7200), ("7d", 604800),
    ("2w", 1209600), ("1h30m", 5400), ("1h 30m", 5400), ("1.5h", 5400), ("10 minutes", 600),
    ("1 minute", 60), ("2 hours 30 minutes", 9000), ("1 hour and 30 minutes", 5400),
    ("1h, 30min", 5400), ("3 days", 259200), ("0.25s", 0.25), ("PT2H", 7200),
    ("PT1H30M", 5400), ("P1D", 86400), ("P1DT12H", 129600), ("PT0.5S", 0.5), ("P2W", 1209600),
    ("pt15m", 900), ("15m", 900), ("0", 0), (3600, 3600), (1.5, 1.5),
    (timedelta(minutes=3), 180),
])
def test_durations_people_write(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "why"), [
    ("1M", "minutes or months"), ("2 months", "no fixed length"), ("1y", "no fixed length"),
    ("P1M", "years and months"), ("P1Y", "years and months"), ("1h30", "has no unit"),
    ("5 fortnights", "unknown unit"), ("-5s", "cannot read"), ("-5", "non-negative"),
    ("", "empty"), ("soon", "cannot read"), ("inf", "finite"), ("nan", "finite"), ("PT", "ISO"),
    (True, "boolean"), ([1], "list"),
])
def test_ambiguous_or_wrong_durations_are_refused_with_an_example(text, why):
    with pytest.raises(ConfigError, match=why) as info:
        parse_duration(text, setting="lifetime")
    assert "lifetime=" in str(info.value)
    assert "'1h30m'" in str(info.value)  # a correct example


def test_sizes():
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size(1024) == 1024
    assert parse_size("1.5 KiB") == 1536
    for bad in ("lots", "-1", "1.2.3MB", True):
        with pytest.raises(ConfigError, match="max_bytes="):
            parse_size(bad, setting="max_bytes")


def test_formatting_round_trips():
    assert format_size(1536) == "1.5 KiB"
    assert format_size(100) == "100 B"
    assert format_size(5 << 30) == "5.0 GiB"
    for seconds in (0.5, 59, 5400, 90061):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
