"""Electricity Maps API v3: average (grid-mix) carbon intensity by zone or coordinates.

Endpoints used, all ``GET`` with the token in the ``auth-token`` header:

* ``/v3/carbon-intensity/history?zone=DE`` -> ``{"zone", "history": [point...]}`` (last 24 h);
* ``/v3/carbon-intensity/past-range?zone=DE&start=...&end=...`` -> ``{"zone", "data": [...]}``
  (at most ``max_range_days`` per request, so longer ranges are fetched in chunks);
* ``/v3/carbon-intensity/forecast?zone=DE`` -> ``{"zone", "forecast": [point...]}``.

A point is ``{"datetime", "carbonIntensity", "isEstimated", "emissionFactorType", ...}``;
``carbonIntensity`` may be null (a gap in the series, not an error). A region without a zone in
the map but with coordinates is asked for by ``lat``/``lon``.
"""

from __future__ import annotations

from typing import Any, Literal

from flowcache.carbon.providers.http import HttpProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso

DAY = 86400.0


class ElectricityMaps(HttpProvider):
    name = "electricitymaps"
    signal = "average"
    base_url = "https://api.electricitymap.org"
    auth_hint = ("pass the Electricity Maps API token as ElectricityMaps(token=...) "
                 "(the CLI reads ELECTRICITYMAPS_TOKEN)")

    def __init__(self, token: str | None = None, *,
                 emission_factor: Literal["lifecycle", "direct"] = "lifecycle",
                 max_range_days: float = 10.0, **http: Any) -> None:
        headers = {"auth-token": token} if token else {}
        super().__init__(headers=headers, **http)
        self.emission_factor = emission_factor
        self.max_range = max_range_days * DAY
        self.read = Reader(self.name)

    def cache_identity(self) -> str:
        return f"{super().cache_identity()}:{self.emission_factor}"

    def _where(self, region: Region) -> dict[str, Any]:
        if region.electricitymaps:
            return {"zone": region.electricitymaps}
        if region.has_coordinates:
            return {"lat": region.lat, "lon": region.lon}
        return {"zone": self.code(region)}

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        where = self._where(region)
        factor = {"emissionFactorType": self.emission_factor}
        now = self.clock()
        if start >= now - DAY + 3600:  # inside the rolling 24 h window /history serves
            body = self.http.get("/v3/carbon-intensity/history", params={**where, **factor})
            return self._series(body, "history")
        parts: list[IntensitySeries] = []
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(end, chunk_start + self.max_range)
            body = self.http.get("/v3/carbon-intensity/past-range", params={
                **where, **factor, "start": iso(chunk_start), "end": iso(chunk_end)})
            series = self._series(body, "data", allow_empty=True)
            if len(series):
                parts.append(series)
            chunk_start = chunk_end
        if not parts:
            return self._empty(start)
        merged = parts[0]
        for part in parts[1:]:
            merged = merged.combine(part)
        return merged

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        body = self.http.get("/v3/carbon-intensity/forecast", params=self._where(region))
        series = self._series(body, "forecast")
        updated = self.read.obj(body, "$").get("updatedAt")
        issued = self.read.time(updated, "$.updatedAt") if updated else self.clock()
        return series.with_(issued_at=issued)

    def _series(self, body: Any, key: str, *, allow_empty: bool = False) -> IntensitySeries:
        root = self.read.obj(body, "$")
        points = self.read.array(self.read.field(root, key, "$"), f"$.{key}")
        times, values, flags = [], [], []
        for i, raw in enumerate(points):
            where = f"$.{key}[{i}]"
            point = self.read.obj(raw, where)
            times.append(self.read.time(self.read.field(point, "datetime", where),
                                        f"{where}.datetime"))
            values.append(self.read.number(point.get("carbonIntensity"),
                                           f"{where}.carbonIntensity"))
            flags.append(self.read.boolean(point.get("isEstimated"), f"{where}.isEstimated"))
        if not times:
            if allow_empty:
                return self._empty(0.0)
            raise self.read.fail(f"$.{key}", "no data points")
        return IntensitySeries.from_points(times, values, estimated=flags, signal="average",
                                           source=self.name,
                                           meta={"emission_factor": self.emission_factor})

    def _empty(self, start: float) -> IntensitySeries:
        return IntensitySeries(start, 3600.0, [], signal="average", source=self.name)
