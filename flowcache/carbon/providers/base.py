"""The provider protocol: history and forecast of one region as an :class:`IntensitySeries`.

Like an fsspec filesystem, a provider implements a few primitives (``_history``, ``_forecast``)
on epoch seconds and a resolved :class:`Region`; :class:`BaseProvider` does the rest once: time
parsing, region lookup, argument checks and trimming the answer to the interval asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from flowcache.carbon.regions import Region, RegionMap
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import TimeLike, iso, to_epoch
from flowcache.errors import ConfigError, ForecastNotSupported, RegionNotFound


@runtime_checkable
class IntensityProvider(Protocol):
    """What the planner and forecasters need from a source of grid intensity.

    ``history`` returns observed (or provider-estimated) values over ``[start, end)``;
    ``forecast`` returns predicted values and raises :class:`ForecastNotSupported` when the
    source has none, in which case :func:`flowcache.carbon.forecasting.forecast_for` forecasts from
    the history instead.
    """

    name: str
    signal: Signal

    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries: ...

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries: ...


class BaseProvider:
    """Shared plumbing; subclasses implement ``_history`` and, if they can, ``_forecast``."""

    name = "base"
    signal: Signal = "average"
    #: which field of :class:`Region` names the region for this provider
    region_field = "electricitymaps"

    def __init__(self, *, regions: RegionMap | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.regions = regions if regions is not None else RegionMap.shipped()
        self.clock = clock

    # -- public API -------------------------------------------------------------------------------
    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        a, b = self._interval(start, end)
        series = self._history(self.locate(region), a, b)
        return self._finish(series, region, a, b, "history")

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        a, b = self._interval(start, end)
        series = self._forecast(self.locate(region), a, b)
        return self._finish(series, region, a, b, "forecast")

    def locate(self, region: str) -> Region:
        return self.regions.resolve(region)

    def cache_identity(self) -> str:
        """What distinguishes this provider's answers in a shared cache (never a secret)."""
        return f"{self.name}:{self.signal}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cache_identity()}>"

    # -- primitives ----------------------------------------------------------------------
    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        raise NotImplementedError

    def _forecast(self, region: Region, start: float, end: float) -> IntensitySeries:
        raise ForecastNotSupported(self.name, "this provider has no forecasts; "
                                   "forecast_for() will forecast from its history instead")

    # -- helpers ----------------------------------------------------------------------
    def code(self, region: Region, field: str | None = None) -> str:
        value = region.code_for(field or self.region_field)
        if value is None:
            raise RegionNotFound(self.name, f"region {region.key!r} has no "
                                 f"{field or self.region_field} code in the region map; add one "
                                 "with RegionMap.with_overrides()")
        return str(value)

    @staticmethod
    def _interval(start: TimeLike, end: TimeLike) -> tuple[float, float]:
        a, b = to_epoch(start), to_epoch(end)
        if b <= a:
            raise ConfigError(f"empty interval {iso(a)}..{iso(b)}: end must be after start")
        return a, b

    def _finish(self, series: IntensitySeries, region: str, start: float, end: float,
                kind: str) -> IntensitySeries:
        trimmed = series.slice(start, end) if len(series) else series
        return trimmed.with_(region=region, kind=kind,
                             issued_at=series.issued_at if kind == "forecast" else None)
