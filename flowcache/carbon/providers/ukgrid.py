"""UK Carbon Intensity API (National Energy System Operator): half-hourly, national or regional.

No key. Endpoints (timestamps spelled ``2022-01-01T00:00Z``; at most 14 days per request):

* national ``/intensity/{from}/{to}`` -> ``{"data": [{"from", "to", "intensity": {"forecast",
  "actual", "index"}}]}``; ``actual`` is null for periods not yet measured;
* regional ``/regional/intensity/{from}/{to}/regionid/{id}`` -> ``{"data": {"regionid",
  "shortname", "data": [{"from", "to", "intensity": {"forecast", "index"}, ...}]}}`` (some
  deployments wrap that object in a one-element list); regions only have ``forecast``;
* forecasts ``/intensity/{from}/fw48h`` and ``/regional/intensity/{from}/fw48h/regionid/{id}``.

History uses ``actual`` where present and otherwise the ``forecast`` value, flagged estimated;
forecasts use ``forecast``. A region with a ``ukgrid`` id in the map is asked for regionally;
Great Britain itself (zone ``GB``) nationally.
"""

from __future__ import annotations

from typing import Any

from flowcache.carbon.providers.http import HttpProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso
from flowcache.errors import RegionNotFound

DAY = 86400.0
NATIONAL = {"gb", "uk", "national", "great-britain"}


class UKCarbonIntensity(HttpProvider):
    name = "ukgrid"
    signal = "average"
    base_url = "https://api.carbonintensity.org.uk"
    region_field = "ukgrid"

    def __init__(self, *, max_range_days: float = 14.0, **http: Any) -> None:
        super().__init__(**http)
        self.max_range = max_range_days * DAY
        self.read = Reader(self.name)

    def region_id(self, region: Region) -> int | None:
        """The regional id, or None for the national series."""
        if region.ukgrid is not None:
            return int(region.ukgrid)
        if region.key.lower() in NATIONAL or region.electricitymaps == "GB":
            return None
        raise RegionNotFound(self.name, f"{region.key!r} is not in Great Britain (no ukgrid id "
                             "in the region map); use 'GB' or a region id 1-17")

    def _path(self, region_id: int | None, start: float, tail: str) -> str:
        t = iso(start, seconds=False)
        if region_id is None:
            return f"/intensity/{t}/{tail}"
        return f"/regional/intensity/{t}/{tail}/regionid/{region_id}"

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        rid = self.region_id(region)
        merged: IntensitySeries | None = None
        chunk = start
        while chunk < end:
            chunk_end = min(end, chunk + self.max_range)
            body = self.http.get(self._path(rid, chunk, iso(chunk_end, seconds=False)))
            part = self._series(body, rid, forecast=False)
            merged = part if merged is None else merged.combine(part)
            chunk = chunk_end
        assert merged is not None
        return merged

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        rid = self.region_id(region)
        body = self.http.get(self._path(rid, start, "fw48h"))
        return self._series(body, rid, forecast=True).with_(issued_at=self.clock())

    def _points(self, body: Any, rid: int | None) -> tuple[list[Any], str]:
        root = self.read.obj(body, "$")
        data = self.read.field(root, "data", "$")
        if rid is None:
            return self.read.array(data, "$.data"), "$.data"
        if isinstance(data, list):  # [{"regionid": ..., "data": [...]}]
            if len(data) != 1:
                raise self.read.fail("$.data", f"expected one region, got {len(data)}")
            data = data[0]
            block = self.read.obj(data, "$.data[0]")
            return self.read.array(self.read.field(block, "data", "$.data[0]"),
                                   "$.data[0].data"), "$.data[0].data"
        block = self.read.obj(data, "$.data")
        return self.read.array(self.read.field(block, "data", "$.data"), "$.data.data"), \
            "$.data.data"

    def _series(self, body: Any, rid: int | None, *, forecast: bool) -> IntensitySeries:
        points, path = self._points(body, rid)
        times, ends, values, flags = [], [], [], []
        for i, raw in enumerate(points):
            where = f"{path}[{i}]"
            point = self.read.obj(raw, where)
            start = self.read.time(self.read.field(point, "from", where), f"{where}.from")
            stop = self.read.time(self.read.field(point, "to", where), f"{where}.to")
            intensity = self.read.obj(self.read.field(point, "intensity", where),
                                      f"{where}.intensity")
            predicted = self.read.number(intensity.get("forecast"), f"{where}.intensity.forecast")
            actual = None if forecast else self.read.number(intensity.get("actual"),
                                                            f"{where}.intensity.actual")
            times.append(start)
            ends.append(stop)
            values.append(actual if actual is not None else predicted)
            flags.append(actual is None)
        if not times:
            raise self.read.fail(path, "no data points")
        durations = [max(1.0, b - a) for a, b in zip(times, ends, strict=True)]
        return IntensitySeries.from_points(times, values, estimated=flags, durations=durations,
                                           signal="average", source=self.name,
                                           meta={"region_id": rid})
