"""GSF Carbon Aware SDK WebAPI: whatever data source the SDK is configured with, by cloud region.

Written against the SDK's own source and tests (``CarbonAwareController``, ``ForecastHandler``,
``EmissionsForecast.Validate``, ``IntervalHelper``, ``WattTimeDataSource``; see
tests/carbon/sdk_server.py, which replays that contract):

* ``GET /emissions/bylocations?location=eastus&time=...&toTime=...`` -> ``[{"location", "time",
  "rating", "duration"}]`` with ``duration`` a TimeSpan (``"00:05:00"``); **204** when no point
  overlaps the window. Each row's ``location`` is the data source's region (WattTime's
  balancing authority, e.g. ``CAISO_NORTH``), not the name asked for, so rows are never
  filtered by it: one location is asked per call. A rating below zero is the Electricity Maps
  source's "no value" (-1): a gap.
* ``GET /emissions/forecasts/current?location=eastus`` -> ``[{"generatedAt", "location",
  "forecastData": [{"timestamp", "duration" (whole minutes), "value"}], ...}]``. The SDK
  answers **400** when ``dataEndAt`` is later than its forecast's last point or ``dataStartAt``
  earlier than its first (its test "valid startTime, late endTime"), and its sources forecast
  about 24 h, so flowcache asks **without bounds** and trims locally: what the forecast covers
  is used and :func:`~flowcache.carbon.forecasting.methods.forecast_for` extends the rest from
  history. ``windowSize`` (overlapping rolling means) is never asked for.
* Errors are problem details (``title``: the exception's type, ``detail``, ``errors``):
  ``Unknown Location`` -> :class:`RegionNotFound`; no forecast source configured (400) or a
  feature the source lacks (501) -> :class:`ForecastNotSupported`, so forecasts come from
  history instead.

Points are placed on the grid time-weighted by their own durations; a point of zero duration
covers no time (the SDK drops it from history and refuses to average it), so a window holding
only such points is :class:`NoIntensityData`, never a value stretched over an hour.

Where flowcache deliberately differs: the SDK's ``average-carbon-intensity`` answers 0 g/kWh
when it has no data; flowcache never turns "no data" into a number (it raises
:class:`NoIntensityData`, and emissions it cannot compute are reported unknown).

Ratings are gCO2eq/kWh; whether marginal or average depends on the SDK's data source, so the
``signal`` is a constructor option (default marginal: WattTime is the SDK's usual source).
"""

from __future__ import annotations

from typing import Any

import httpx

from flowcache.carbon.providers.http import HttpProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import iso
from flowcache.errors import (
    ForecastNotSupported,
    NoIntensityData,
    ProviderError,
    RegionNotFound,
)

#: the SDK's ``DateTimeOffset.MinValue``: a ``generatedAt`` its source did not set
_YEAR_ONE = -62135596800.0 + 366 * 86400


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

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        detail = str(problem.get("detail") or "")
        errors = problem.get("errors") if isinstance(problem.get("errors"), dict) else {}
        where = response.request.url.path
        said = "; ".join(f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}"
                         for key, value in errors.items()) or detail or response.text[:200]
        if "Unknown Location" in detail:
            return RegionNotFound(self.name, f"HTTP {response.status_code} from {where}: "
                                  f"{detail}; use a location the SDK's location source knows")
        if response.status_code == 501 or "ForecastDataSource is not configured" in detail:
            return ForecastNotSupported(self.name, f"HTTP {response.status_code} from {where}: "
                                        f"{detail or 'not implemented by its data source'}")
        if response.status_code == 400:
            return ProviderError(self.name, f"HTTP 400 from {where}: "
                                 f"{problem.get('title') or 'bad request'}: {said}")
        return None

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        location = self.location(region)
        body = self.http.get("/emissions/bylocations", allow_empty=True, params=[
            ("location", location), ("time", iso(start)), ("toTime", iso(end))])
        if body is None:
            raise NoIntensityData(f"{self.name}: no emissions data for {location!r} between "
                                  f"{iso(start)} and {iso(end)} (HTTP 204)")
        rows = self.read.array(body, "$")
        times, values, durations = [], [], []
        sources: set[str] = set()
        for i, raw in enumerate(rows):
            where = f"$[{i}]"
            row = self.read.obj(raw, where)
            sources.add(str(row.get("location", "")))
            times.append(self.read.time(self.read.field(row, "time", where), f"{where}.time"))
            values.append(self._rating(row.get("rating"), f"{where}.rating"))
            durations.append(self._duration(row.get("duration"), f"{where}.duration"))
        series = self._build(times, values, durations, estimated=False, what=location)
        return series.with_(meta={**series.meta, "sdk_locations": sorted(sources - {""})})

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        location = self.location(region)
        body = self.http.get("/emissions/forecasts/current", params=[("location", location)])
        forecasts = self.read.array(body, "$")
        if not forecasts:
            raise NoIntensityData(f"{self.name}: no forecast for {location!r}")
        first = self.read.obj(forecasts[0], "$[0]")
        points = self.read.array(self.read.field(first, "forecastData", "$[0]"),
                                 "$[0].forecastData")
        times, values, durations = [], [], []
        for i, raw in enumerate(points):
            where = f"$[0].forecastData[{i}]"
            point = self.read.obj(raw, where)
            times.append(self.read.time(self.read.field(point, "timestamp", where),
                                        f"{where}.timestamp"))
            values.append(self._rating(point.get("value"), f"{where}.value"))
            durations.append(self._duration(point.get("duration"), f"{where}.duration"))
        if not times:
            raise self.read.fail("$[0].forecastData", "no data points")
        series = self._build(times, values, durations, estimated=True, what=location)
        generated = first.get("generatedAt")
        issued = self.read.time(generated, "$[0].generatedAt") if generated else None
        if issued is None or issued < _YEAR_ONE:  # a source that did not say when
            issued = self.clock()
        return series.with_(issued_at=issued)

    def _rating(self, value: Any, where: str) -> float | None:
        number = self.read.number(value, where)
        return None if number is None or number < 0 else number

    def _duration(self, value: Any, where: str) -> float:
        """Seconds; a missing duration is zero (the SDK's default), i.e. no time covered."""
        return 0.0 if value is None else self.read.minutes(value, where) * 60

    def _build(self, times: list[float], values: list[float | None],
               durations: list[float], *, estimated: bool, what: str) -> IntensitySeries:
        if times and not any(durations):
            raise NoIntensityData(
                f"{self.name}: every point for {what!r} has zero duration, so covers no time "
                "(the SDK itself drops such points and refuses to average them)")
        return IntensitySeries.from_points(times, values, durations=durations,
                                           estimated=[estimated] * len(times),
                                           signal=self.signal, source=self.name)
