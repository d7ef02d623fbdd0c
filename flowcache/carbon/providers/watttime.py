"""WattTime API v3: marginal operating emissions rate (MOER), 5-minute points, lbs/MWh.

Flow: ``GET /login`` with HTTP basic auth -> ``{"token": ...}`` (valid about 30 minutes; a 401
on a data call logs in again once). Then, with ``Authorization: Bearer <token>``:

* ``/v3/historical?region=&start=&end=&signal_type=co2_moer`` (chunked, ``max_range_days``);
* ``/v3/forecast?region=&signal_type=co2_moer&horizon_hours=`` (up to 72 h);
* ``/v3/region-from-loc?latitude=&longitude=&signal_type=`` -> ``{"region": ...}``, used when
  the region map has coordinates but no WattTime code (answers are remembered).

Data bodies are ``{"data": [{"point_time", "value"}], "meta": {"units", "data_point_period_seconds",
"generated_at", ...}}``. Values in ``lbs_co2_per_mwh`` are converted: 1 lb/MWh = 0.45359237 g/kWh.
"""

from __future__ import annotations

import threading
from typing import Any

from flowcache.carbon.providers.http import HttpProvider
from flowcache.carbon.providers.payload import Reader
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso
from flowcache.errors import MalformedResponse, ProviderAuthError

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
UNITS = {"lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH, "g_co2_per_kwh": 1.0,
         "kg_co2_per_mwh": 1.0}
SIGNALS = {"co2_moer": "marginal", "co2_aoer": "average"}
DAY = 86400.0


class WattTime(HttpProvider):
    name = "watttime"
    base_url = "https://api.watttime.org"
    region_field = "watttime"
    auth_hint = ("pass WattTime(username=..., password=...) (the CLI reads WATTTIME_USERNAME "
                 "and WATTTIME_PASSWORD)")

    def __init__(self, username: str | None = None, password: str | None = None, *,
                 signal_type: str = "co2_moer", horizon_hours: int = 72,
                 max_range_days: float = 30.0, token_ttl: float = 25 * 60, **http: Any) -> None:
        super().__init__(**http)
        if signal_type not in SIGNALS:
            raise ValueError(f"signal_type must be one of {sorted(SIGNALS)}")
        self.username = username
        self.password = password
        self.signal_type = signal_type
        self.signal = SIGNALS[signal_type]  # type: ignore[assignment]
        self.horizon_hours = horizon_hours
        self.max_range = max_range_days * DAY
        self.token_ttl = token_ttl
        self.read = Reader(self.name)
        self._token: tuple[str, float] | None = None
        self._located: dict[tuple[float, float], str] = {}
        self._lock = threading.Lock()

    def cache_identity(self) -> str:
        return f"{super().cache_identity()}:{self.signal_type}"

    # -- auth ----------------------------------------------------------------------
    def _login(self) -> str:
        if not (self.username and self.password):
            raise ProviderAuthError(self.name, f"no credentials: {self.auth_hint}")
        body = self.http.get("/login", auth=(self.username, self.password))
        token = self.read.field(self.read.obj(body, "$"), "token", "$")
        if not isinstance(token, str) or not token:
            raise self.read.fail("$.token", "expected a non-empty string")
        return token

    def _bearer(self, fresh: bool = False) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            if fresh or self._token is None or now >= self._token[1]:
                self._token = (self._login(), now + self.token_ttl)
            return {"Authorization": f"Bearer {self._token[0]}"}

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            return self.http.get(path, params=params, headers=self._bearer())
        except ProviderAuthError:  # the token expired early: log in once more
            return self.http.get(path, params=params, headers=self._bearer(fresh=True))

    # -- regions ----------------------------------------------------------------------
    def region_code(self, region: Region) -> str:
        if region.watttime:
            return region.watttime
        if not region.has_coordinates:
            return self.code(region)
        point = (float(region.lat), float(region.lon))  # type: ignore[arg-type]
        if point not in self._located:
            body = self._get("/v3/region-from-loc", {"latitude": point[0], "longitude": point[1],
                                                     "signal_type": self.signal_type})
            code = self.read.field(self.read.obj(body, "$"), "region", "$")
            if not isinstance(code, str):
                raise self.read.fail("$.region", "expected a string")
            self._located[point] = code
        return self._located[point]

    # -- data ----------------------------------------------------------------------
    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        code = self.region_code(region)
        merged: IntensitySeries | None = None
        chunk = start
        while chunk < end:
            chunk_end = min(end, chunk + self.max_range)
            body = self._get("/v3/historical", {"region": code, "start": iso(chunk),
                                                "end": iso(chunk_end),
                                                "signal_type": self.signal_type})
            part = self._series(body)
            merged = part if merged is None else merged.combine(part)
            chunk = chunk_end
        assert merged is not None
        return merged

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        hours = max(1, min(self.horizon_hours, int((end - self.clock()) // 3600) + 1))
        body = self._get("/v3/forecast", {"region": self.region_code(region),
                                          "signal_type": self.signal_type,
                                          "horizon_hours": hours})
        series = self._series(body)
        generated = self.read.obj(self.read.field(body, "meta", "$"), "$.meta").get("generated_at")
        issued = self.read.time(generated, "$.meta.generated_at") if generated else self.clock()
        return series.with_(issued_at=issued, estimated=series.estimated | True)

    def _series(self, body: Any) -> IntensitySeries:
        root = self.read.obj(body, "$")
        meta = self.read.obj(self.read.field(root, "meta", "$"), "$.meta")
        units = meta.get("units", "lbs_co2_per_mwh")
        if units not in UNITS:
            raise MalformedResponse(self.name, f"unsupported units {units!r}; expected one of "
                                    f"{sorted(UNITS)} (signal_type {self.signal_type!r})")
        factor = UNITS[units]
        period = self.read.number(meta.get("data_point_period_seconds"),
                                  "$.meta.data_point_period_seconds") or 300.0
        points = self.read.array(self.read.field(root, "data", "$"), "$.data")
        times, values = [], []
        for i, raw in enumerate(points):
            where = f"$.data[{i}]"
            point = self.read.obj(raw, where)
            times.append(self.read.time(self.read.field(point, "point_time", where),
                                        f"{where}.point_time"))
            value = self.read.number(point.get("value"), f"{where}.value")
            values.append(None if value is None else value * factor)
        if not times:
            raise self.read.fail("$.data", "no data points")
        return IntensitySeries.from_points(times, values, resolution=period,
                                           durations=[period] * len(times),
                                           signal=self.signal, source=self.name,
                                           meta={"units": units, "signal_type": self.signal_type})
