"""GSF Carbon Aware SDK WebAPI: whatever data source the SDK is configured with, by cloud region.

Endpoints (the SDK names locations by cloud region, e.g. ``eastus``, so the bare region name is
sent; repeated ``location=`` parameters):

* ``GET /emissions/bylocations?location=eastus&time=...&toTime=...`` -> ``[{"location", "time",
  "rating", "duration"}]`` (``duration`` a TimeSpan such as ``"01:00:00"``; 204 when empty);
* ``GET /emissions/forecasts/current?location=eastus&dataStartAt=&dataEndAt=`` -> ``[{"location",
  "generatedAt", "forecastData": [{"timestamp", "duration" (minutes), "value"}],
  "optimalDataPoints": [...]}]``.

Ratings are gCO2eq/kWh; whether marginal or average depends on the SDK's data source, so the
``signal`` is a constructor option (default marginal: WattTime is the SDK's usual source).
"""

from __future__ import annotations

from typing import Any

from flowcache.carbon.providers.http import HttpProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import iso
from flowcache.errors import RegionNotFound


class CarbonAwareSDK(HttpProvider):
    name = "carbonaware"
    base_url = "http://localhost:8080"

    def __init__(self, *, signal: Signal = "marginal", **http: Any) -> None:
        super().__init__(**http)
        self.signal = signal
        self.read = Reader(self.name)

    def location(self, region: Region) -> str:
        """The SDK location name: the cloud region without its ``cloud:`` prefix."""
        return region.key.partition(":")[2] or region.key

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        location = self.location(region)
        body = self.http.get("/emissions/bylocations", allow_empty=True, params=[
            ("location", location), ("time", iso(start)), ("toTime", iso(end))])
        if body is None:
            raise RegionNotFound(self.name, f"no emissions data for {location!r} between "
                                 f"{iso(start)} and {iso(end)} (HTTP 204)")
        rows = self.read.array(body, "$")
        times, values, durations = [], [], []
        for i, raw in enumerate(rows):
            where = f"$[{i}]"
            row = self.read.obj(raw, where)
            if str(row.get("location", location)).lower() != location.lower():
                continue
            times.append(self.read.time(self.read.field(row, "time", where), f"{where}.time"))
            values.append(self.read.number(row.get("rating"), f"{where}.rating"))
            minutes = row.get("duration")
            durations.append(self.read.minutes(minutes, f"{where}.duration") * 60
                             if minutes not in (None, "00:00:00", 0) else None)
        if not times:
            raise RegionNotFound(self.name, f"the response has no rows for {location!r}")
        return self._build(times, values, durations, estimated=False)

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        location = self.location(region)
        body = self.http.get("/emissions/forecasts/current", params=[
            ("location", location), ("dataStartAt", iso(start)), ("dataEndAt", iso(end))])
        forecasts = self.read.array(body, "$")
        if not forecasts:
            raise RegionNotFound(self.name, f"no forecast for {location!r}")
        first = self.read.obj(forecasts[0], "$[0]")
        points = self.read.array(self.read.field(first, "forecastData", "$[0]"),
                                 "$[0].forecastData")
        times, values, durations = [], [], []
        for i, raw in enumerate(points):
            where = f"$[0].forecastData[{i}]"
            point = self.read.obj(raw, where)
            times.append(self.read.time(self.read.field(point, "timestamp", where),
                                        f"{where}.timestamp"))
            values.append(self.read.number(point.get("value"), f"{where}.value"))
            minutes = point.get("duration")
            durations.append(None if minutes in (None, 0)
                             else self.read.minutes(minutes, f"{where}.duration") * 60)
        if not times:
            raise self.read.fail("$[0].forecastData", "no data points")
        generated = first.get("generatedAt")
        series = self._build(times, values, durations, estimated=True)
        issued = self.read.time(generated, "$[0].generatedAt") if generated else self.clock()
        return series.with_(issued_at=issued)

    def _build(self, times: list[float], values: list[float | None],
               durations: list[float | None], *, estimated: bool) -> IntensitySeries:
        known = [d for d in durations if d]
        if known and len(known) == len(durations):
            dur: list[float] | None = known
        else:
            dur = None  # infer from spacing
        return IntensitySeries.from_points(times, values, durations=dur,
                                           estimated=[estimated] * len(times),
                                           signal=self.signal, source=self.name)
