"""The GSF Carbon Aware SDK's emissions JSON files: offline data keyed by location name.

Two shapes are read: the SDK's JSON data source ``{"Emissions": [{"Location", "Time", "Rating",
"Duration"?}]}`` (extra top-level fields such as ``Description`` are ignored) and the legacy bare
array ``[{"Location", "Time", "Rating", "Duration"}]`` of the SDK's generated test data. Ratings
may be numbers or numeric strings; ``Duration`` is a TimeSpan (``"01:00"``) and otherwise the
spacing of the points is used. Files may start with a UTF-8 byte-order mark (the SDK's do).
The SDK ships only synthetic sample data: use this provider for tests, demos and your own exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowcache.carbon.providers.base import BaseProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.errors import MalformedResponse, RegionNotFound


def parse_emissions(document: Any, *, name: str = "sdkjson", signal: Signal = "marginal",
                    source: str = "sdkjson") -> dict[str, IntensitySeries]:
    """An SDK emissions document (either shape) -> one series per location (lower-cased)."""
    read = Reader(name)
    if isinstance(document, dict):
        rows, path = read.array(read.field(document, "Emissions", "$"), "$.Emissions"), \
            "$.Emissions"
    else:
        rows, path = read.array(document, "$"), "$"
    grouped: dict[str, tuple[list[float], list[float | None], list[float | None]]] = {}
    for i, raw in enumerate(rows):
        where = f"{path}[{i}]"
        row = read.obj(raw, where)
        location = read.field(row, "Location", where)
        if not isinstance(location, str):
            raise read.fail(f"{where}.Location", "expected a string")
        times, values, durations = grouped.setdefault(location.lower(), ([], [], []))
        times.append(read.time(read.field(row, "Time", where), f"{where}.Time"))
        values.append(read.number(read.field(row, "Rating", where), f"{where}.Rating"))
        duration = row.get("Duration")
        durations.append(read.minutes(duration, f"{where}.Duration") * 60 if duration else None)
    result = {}
    for location, (times, values, durations) in grouped.items():
        known = all(d for d in durations)
        result[location] = IntensitySeries.from_points(
            times, values, durations=durations if known else None, signal=signal,
            source=source, region=location)
    return result


class CarbonAwareJSON(BaseProvider):
    """History from an SDK emissions JSON file (locations are cloud region names)."""

    name = "sdkjson"

    def __init__(self, path: str | Path, *, signal: Signal = "marginal", **base: Any) -> None:
        super().__init__(**base)
        self.path = Path(path)
        self.signal = signal
        self._data: dict[str, IntensitySeries] | None = None

    def cache_identity(self) -> str:
        return f"{self.name}:{self.signal}:{self.path}"

    def data(self) -> dict[str, IntensitySeries]:
        if self._data is None:
            try:
                document = json.loads(self.path.read_text(encoding="utf-8-sig"))
            except OSError as exc:
                raise MalformedResponse(self.name, f"cannot read {self.path}: {exc}") from exc
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MalformedResponse(self.name, f"{self.path} is not JSON: {exc}") from exc
            self._data = parse_emissions(document, name=self.name, signal=self.signal,
                                         source=self.name)
        return self._data

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        location = (region.key.partition(":")[2] or region.key).lower()
        data = self.data()
        if location not in data:
            raise RegionNotFound(self.name, f"{self.path.name} has no location {location!r}; "
                                 f"it has {', '.join(sorted(data)[:10])}")
        return data[location]
