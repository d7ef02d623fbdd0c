"""The GSF Carbon Aware SDK WebAPI's request/response contract, replayed in-process.

Ported from the SDK's own source (GitHub ``Green-Software-Foundation/carbon-aware-sdk`` at
e6de58da, 2025-05-13), not from its documentation, which lags it:

* ``CarbonAwareController``: ``GET /emissions/bylocations`` answers 204 when no row is left;
  ``GET /emissions/forecasts/current`` takes ``location`` (required), ``dataStartAt``,
  ``dataEndAt`` and ``windowSize`` (all optional);
* ``ForecastHandler.ProcessAndValidateForecast``: the bounds default to the forecast's first
  point and last point's end, then ``EmissionsForecast.Validate`` refuses (400,
  ``errors.dataStartAt``/``errors.dataEndAt``) a start before the first point or an end after
  the last point's end; then ``IntervalHelper.FilterByDuration`` keeps points with
  ``time + duration > start and time <= end`` (untrimmed);
* ``EmissionsHandler.GetEmissionsDataAsync``: ``time`` defaults to now, ``toTime`` to
  ``time``; ``toTime`` without ``time`` is a 400; rows through ``FilterByDuration`` too;
* ``WattTimeDataSource``: every row's ``location`` is WattTime's region (``Meta.Region``), not
  the location asked for; a single point with no frequency has duration zero;
  ``ElectricityMapsDataSource``: rows carry the location asked for, a missing value is -1;
* ``LocationSource``: an unknown name is ``ArgumentException("Unknown Location: '..' not
  found")`` -> 400 (WattTime and Electricity Maps sources); no forecast source configured is
  ``ArgumentException("ForecastDataSource is not configured")`` -> 400;
* ``HttpResponseExceptionFilter``: errors are problem details: ``title`` the exception's type
  name, ``status``, ``detail`` its message, ``errors`` from its ``Data``.

Durations go out as a TimeSpan (``"00:05:00"``) in history rows and as whole minutes in
forecast points, as the SDK's DTOs write them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from flowcache.carbon.timestamps import iso, to_epoch

Point = tuple[float, float | None, float]  # start (epoch), rating (None: no value), seconds


def timespan(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}.{text}" if days else text


def offset_time(epoch: float) -> str:
    return iso(epoch).replace("Z", "+00:00")


def problem(status: int, title: str, detail: str, errors: Mapping[str, list[str]] | None = None
            ) -> httpx.Response:
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = dict(errors)
    return httpx.Response(status, json=body)


def filter_by_duration(points: Sequence[Point], start: float, end: float) -> list[Point]:
    """``IntervalHelper.FilterByDuration``: overlapping ``(start, end]``, untrimmed."""
    return [p for p in points if p[0] + p[2] > start and p[0] <= end]


@dataclass
class SDKReplay:
    """One SDK deployment: its data source, locations, history and current forecasts."""

    source: str = "watttime"  # watttime | electricitymaps | json
    #: location name -> the data source's region (WattTime's balancing authority)
    regions: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[Point]] = field(default_factory=dict)
    #: location -> (generatedAt, points)
    forecasts: dict[str, tuple[float, list[Point]]] = field(default_factory=dict)
    now: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            if request.url.path == "/emissions/bylocations":
                return self._bylocations(request.url.params)
            if request.url.path == "/emissions/forecasts/current":
                return self._forecast(request.url.params)
        except ArgumentError as exc:
            return problem(400, "ArgumentException", exc.detail, exc.errors)
        return httpx.Response(404)

    # -- the controller's actions --------------------------------------------------------
    def _bylocations(self, params: httpx.QueryParams) -> httpx.Response:
        locations = [x for x in params.get_list("location") if x]
        if not locations:
            raise ArgumentError("Invalid parameters",
                                {"MultipleLocations": ["MultipleLocations is required"]})
        if "toTime" in params and "time" not in params:
            raise ArgumentError("Invalid parameters",
                                {"Start": ["Start must be defined if End is defined"]})
        start = to_epoch(params["time"]) if "time" in params else self.now
        end = to_epoch(params["toTime"]) if "toTime" in params else start
        if "toTime" in params and start >= end:
            raise ArgumentError("Invalid parameters", {"Start": ["Start must be before End"]})
        rows = []
        for location in locations:
            label = self._locate(location)
            for t, rating, seconds in filter_by_duration(self.history.get(location, []),
                                                         start, end):
                rows.append({"location": label, "time": offset_time(t),
                             "rating": self._rating(rating), "duration": timespan(seconds)})
        return httpx.Response(200, json=rows) if rows else httpx.Response(204)

    def _forecast(self, params: httpx.QueryParams) -> httpx.Response:
        locations = [x for x in params.get_list("location") if x]
        if not locations:
            raise ArgumentError("Invalid parameters",
                                {"MultipleLocations": ["MultipleLocations is required"]})
        if self.source == "json":
            raise ArgumentError("ForecastDataSource is not configured")
        out = []
        for location in locations:
            label = self._locate(location)
            generated, points = self.forecasts[location]
            first, last = points[0], points[-1]
            start = to_epoch(params["dataStartAt"]) if "dataStartAt" in params else first[0]
            end = to_epoch(params["dataEndAt"]) if "dataEndAt" in params else last[0] + last[2]
            validate(points, start, end)
            kept = filter_by_duration(points, start, end)
            if params.get("windowSize"):
                raise NotImplementedError("the replay has no rolling averages (never asked)")
            data = [{"location": label, "timestamp": offset_time(t),
                     "duration": int(seconds // 60), "value": rating} for t, rating, seconds
                    in kept]
            best = min((d["value"] for d in data), default=None)
            out.append({"generatedAt": offset_time(generated),
                        "requestedAt": offset_time(self.now), "location": location,
                        "dataStartAt": offset_time(start),
                        "dataEndAt": offset_time(end if "dataEndAt" in params else last[0]),
                        "windowSize": 0,
                        "optimalDataPoints": [d for d in data if d["value"] == best],
                        "forecastData": data})
        return httpx.Response(200, json=out)

    # -- data sources ------------------------------------------------------------------
    def _locate(self, location: str) -> str:
        """The row label: WattTime's region, or the name (case-insensitive lookup)."""
        known = {name.lower(): name for name in self.regions}
        if self.source in ("watttime", "electricitymaps") and location.lower() not in known:
            raise ArgumentError(f"Unknown Location: '{location}' not found")
        if self.source == "watttime":
            return self.regions[known[location.lower()]]
        return location

    def _rating(self, rating: float | None) -> float:
        return -1.0 if rating is None else rating  # Electricity Maps: Value ?? -1


class ArgumentError(Exception):
    """The SDK's ``ArgumentException`` with its ``Data`` (-> 400 problem details)."""

    def __init__(self, detail: str, errors: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.errors = detail, errors


def validate(points: Sequence[Point], start: float, end: float) -> None:
    """``EmissionsForecast.Validate``."""
    low, high = points[0][0], points[-1][0] + points[-1][2]
    errors: dict[str, list[str]] = {}
    if start >= end:
        errors.setdefault("dataStartAt", []).append("dataStartAt must be earlier than dataEndAt")
    span = f"'{offset_time(low)}' through '{offset_time(high)}'"
    if start < low or start > high:
        errors.setdefault("dataStartAt", []).append(
            f"dataStartAt must be within time range of the forecasted data, {span}")
    if end < low or end > high:
        errors.setdefault("dataEndAt", []).append(
            f"dataEndAt must be within time range of the forecasted data, {span}")
    if errors:
        raise ArgumentError("Invalid EmissionsForecast", errors)


def sdk_test_forecast(start: str = "2022-01-01T00:00:00Z") -> list[Point]:
    """``TestData.GetForecast``: four 5-minute points, 10, 20, 30, 40."""
    t0 = to_epoch(start)
    return [(t0 + 300 * i, 10.0 * (i + 1), 300.0) for i in range(4)]
