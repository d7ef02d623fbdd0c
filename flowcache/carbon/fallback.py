"""Fallback: serve last known data or a static profile when a provider fails, and say so.

A flow must not fail because a carbon API is down (DESIGN: degrade, don't fail).
:class:`FallbackProvider` remembers each region's last good answer (in memory, and in a
:class:`ResponseCache` when given, so other processes see it too). When the inner provider fails
it logs a warning and answers with, in order:

1. the last known data, if it covers the interval asked for;
2. otherwise the hour-of-day profile of the last known data, laid over the interval;
3. otherwise the configured :class:`StaticProfile` for the region (or the default one).

Every such series has ``fallback`` set to the reason, so the planner and the runner can report
that a decision was made on stand-in data. With nothing to fall back on, the original error is
raised.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowcache.carbon.cache import ResponseCache
from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import TimeLike, iso, to_epoch
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
)

log = logging.getLogger("flowcache.carbon.fallback")
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class StaticProfile:
    """A typical day: 24 hourly values (UTC hour of day) in gCO2eq/kWh."""

    hourly: tuple[float, ...]
    signal: Signal = "average"
    source: str = "static-profile"

    def __post_init__(self) -> None:
        values = tuple(float(x) for x in self.hourly)
        if len(values) != 24 or not all(np.isfinite(values)):
            raise ValueError("a static profile needs 24 finite hourly values (UTC hours 0-23)")
        object.__setattr__(self, "hourly", values)

    @classmethod
    def constant(cls, value: float, **kw: Any) -> StaticProfile:
        return cls(tuple([float(value)] * 24), **kw)

    @classmethod
    def from_series(cls, series: IntensitySeries, **kw: Any) -> StaticProfile:
        """The mean of each UTC hour of day over the series (gaps ignored)."""
        hourly = series.resample(HOUR) if series.resolution < HOUR else series
        hours = ((hourly.times % DAY) // HOUR).astype(int)
        ok = ~np.isnan(hourly.values)
        if not ok.any():
            raise ValueError("the series has no data to make a profile from")
        sums = np.bincount(hours[ok], hourly.values[ok], minlength=24)
        counts = np.bincount(hours[ok], minlength=24)
        overall = float(hourly.values[ok].mean())
        profile = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
        return cls(tuple(profile), signal=kw.pop("signal", series.signal), **kw)

    def series(self, region: str, start: float, end: float, *,
               resolution: float = HOUR) -> IntensitySeries:
        first = np.floor(start / resolution) * resolution
        n = max(1, int(np.ceil((end - first) / resolution)))
        times = first + np.arange(n) * resolution
        values = np.asarray(self.hourly)[((times % DAY) // HOUR).astype(int)]
        return IntensitySeries(first, resolution, values, np.ones(n, bool), signal=self.signal,
                               source=self.source, region=region)


class StaticProvider:
    """A provider that always answers with static profiles (offline demos, last resort)."""

    name = "static"

    def __init__(self, profiles: Mapping[str, StaticProfile] | None = None,
                 default: StaticProfile | None = None) -> None:
        self.profiles = dict(profiles or {})
        self.default = default or StaticProfile.constant(400.0)
        self.signal: Signal = self.default.signal

    def _profile(self, region: str) -> StaticProfile:
        return self.profiles.get(region, self.default)

    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._profile(region).series(region, to_epoch(start), to_epoch(end))

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        series = self._profile(region).series(region, to_epoch(start), to_epoch(end))
        return series.with_(kind="forecast", issued_at=to_epoch(start))


class FallbackProvider:
    """Wraps a provider: on failure, serve last known data or a static profile (see module)."""

    def __init__(self, inner: IntensityProvider, *,
                 profiles: Mapping[str, StaticProfile] | None = None,
                 default_profile: StaticProfile | None = None,
                 cache: ResponseCache | None = None, remember_for: float = 7 * DAY,
                 fall_back_on: Sequence[type[ProviderError]] = (
                     ProviderUnavailable, MalformedResponse, ProviderAuthError),
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.profiles = dict(profiles or {})
        self.default_profile = default_profile
        self.cache = cache
        self.remember_for = remember_for
        self.fall_back_on = tuple(fall_back_on)
        self.clock = clock
        self._last: dict[tuple[str, str], IntensitySeries] = {}
        self.fallbacks = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def signal(self) -> Signal:
        return self.inner.signal

    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._call("history", region, to_epoch(start), to_epoch(end))

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._call("forecast", region, to_epoch(start), to_epoch(end))

    def _key(self, method: str, region: str) -> str:
        return json.dumps(["last-known", self.inner.name, method, region])

    def _call(self, method: str, region: str, start: float, end: float) -> IntensitySeries:
        try:
            series = getattr(self.inner, method)(region, start, end)
        except self.fall_back_on as exc:
            return self._fallback(method, region, start, end, exc)
        if len(series) and not series.fallback:
            self._last[(method, region)] = series
            if self.cache is not None:
                self.cache.put(self._key(method, region), series.to_bytes(), self.remember_for)
        return series

    def last_known(self, method: str, region: str) -> IntensitySeries | None:
        found = self._last.get((method, region))
        if found is None and self.cache is not None:
            data = self.cache.get(self._key(method, region))
            if data is not None:
                try:
                    found = IntensitySeries.from_bytes(data)
                except MalformedResponse:
                    found = None
        if found is None and method == "forecast":
            return self.last_known("history", region)
        return found

    def _fallback(self, method: str, region: str, start: float, end: float,
                  exc: ProviderError) -> IntensitySeries:
        last = self.last_known(method, region)
        kind = "forecast" if method == "forecast" else "history"
        if last is not None and last.covers(start, end):
            series = last.slice(start, end)
            reason = f"{exc.provider} failed ({type(exc).__name__}); last known data"
        elif last is not None and np.isfinite(last.values).any():
            profile = StaticProfile.from_series(last, source=f"{last.source}:profile")
            series = profile.series(region, start, end)
            reason = (f"{exc.provider} failed ({type(exc).__name__}); hour-of-day profile of the "
                      f"last known data ({iso(last.start)}..{iso(last.end)})")
        else:
            profile = self.profiles.get(region, self.default_profile)
            if profile is None:
                raise exc
            series = profile.series(region, start, end)
            reason = f"{exc.provider} failed ({type(exc).__name__}); static profile"
        self.fallbacks += 1
        log.warning("carbon %s for %s: %s (%s); using the fallback", method, region, exc, reason)
        return series.with_(region=region, kind=kind, fallback=reason,
                            issued_at=start if kind == "forecast" else None)
