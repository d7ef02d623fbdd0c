"""IntensitySeries: grid carbon intensity on a regular UTC grid, and time-weighted sums over it.

Every provider returns this one type, so the forecasters, the planner and the emissions code never
care where the numbers came from. A series is a step function: slot ``i`` covers
``[start + i*resolution, start + (i+1)*resolution)`` with one value in gCO2eq/kWh. Providers put
their points on such a grid (:meth:`IntensitySeries.from_points`); a slot nobody reported is NaN,
a *gap*, and any window touching a gap has no mean (NaN) rather than a made-up one.

Window sums are exact for any start, end and duration, including partial slots: they interpolate
the running integral of the step function, which is what the GSF Carbon Aware SDK's time-weighted
window means are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

from flowcache.carbon.timestamps import iso
from flowcache.errors import MalformedResponse, NoIntensityData

Signal = Literal["average", "marginal"]
Kind = Literal["history", "forecast"]
SIGNALS = ("average", "marginal")


@dataclass(frozen=True, eq=False)
class IntensitySeries:
    """Intensity of one region on a regular grid (see the module docstring for the semantics).

    ``fallback`` is None for live data and otherwise says why this is stand-in data (the provider
    failed and a last-known or static profile was used); ``issued_at`` is, for a forecast, the
    instant after which no observed data went into it.
    """

    start: float
    resolution: float
    values: np.ndarray
    estimated: np.ndarray | None = None
    signal: Signal = "average"
    source: str = "unknown"
    region: str = ""
    kind: Kind = "history"
    issued_at: float | None = None
    fallback: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if self.resolution <= 0:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        estimated = (np.zeros(values.shape, bool) if self.estimated is None
                     else np.asarray(self.estimated, dtype=bool).reshape(-1))
        if estimated.shape != values.shape:
            raise ValueError("estimated flags and values differ in length")
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {self.signal!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "estimated", estimated)
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "resolution", float(self.resolution))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_points(cls, times: Sequence[float] | np.ndarray, values: Sequence[float | None] |
                    np.ndarray, *, estimated: Sequence[bool] | np.ndarray | None = None,
                    durations: Sequence[float] | np.ndarray | None = None,
                    resolution: float | None = None, **attrs: Any) -> IntensitySeries:
        """Put timestamped points (each the start of its interval) on a regular grid.

        A point covers ``durations[i]`` seconds (default: up to the next point, but never more
        than the usual spacing, so a missing point becomes a gap instead of being bridged).
        ``None`` values become gaps. The grid step is ``resolution`` or the smallest duration.

        Each slot is the **time-weighted** mean of the points that cover it: points off the
        grid or overlapping one another (a rolling window, a 14:05 reading on an hourly grid)
        share the slots they overlap instead of one silently replacing another. A point of
        zero duration covers no time and is left out; if that leaves nothing, there is no data.
        Identical timestamps: the first one wins.
        """
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        v = np.array([np.nan if x is None else x for x in values], dtype=np.float64) \
            if not isinstance(values, np.ndarray) else values.astype(np.float64).reshape(-1)
        if t.shape != v.shape:
            raise ValueError("times and values differ in length")
        if t.size == 0:
            raise NoIntensityData("no data points to build a series from")
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        est = (np.zeros(t.shape, bool) if estimated is None
               else np.asarray(estimated, bool).reshape(-1)[order])
        keep = np.r_[True, np.diff(t) > 0]
        if durations is None:
            t, v, est = t[keep], v[keep], est[keep]
            gaps = np.diff(t)
            if gaps.size:  # the most common spacing (ties: the smallest)
                spacings, counts = np.unique(np.round(gaps, 3), return_counts=True)
                usual = float(spacings[np.argmax(counts)])
            else:
                usual = float(resolution or 3600.0)
            dur = np.minimum(np.r_[gaps, usual], usual)
        else:
            dur = np.asarray(durations, dtype=np.float64).reshape(-1)
            if dur.shape != order.shape:
                raise ValueError("durations and values differ in length")
            if (dur < 0).any() or not np.isfinite(dur).all():
                raise ValueError("point durations must be finite and not negative")
            dur = dur[order]
            keep &= dur > 0  # zero duration: no time covered
            t, v, est, dur = t[keep], v[keep], est[keep], dur[keep]
            if not t.size:
                raise NoIntensityData("every data point has zero duration: they cover no time")
        step = float(resolution or np.min(dur))
        if step <= 0:
            raise ValueError("point durations must be positive")
        return cls(t[0], step, *_time_weighted(t - t[0], dur, v, est, step), **attrs)

    # -- shape ----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def end(self) -> float:
        return self.start + len(self) * self.resolution

    @property
    def times(self) -> np.ndarray:
        """Slot start times, epoch seconds (float64)."""
        return self.start + np.arange(len(self)) * self.resolution

    @property
    def datetimes(self) -> np.ndarray:
        return (self.times * 1000).astype("datetime64[ms]")

    @property
    def gaps(self) -> int:
        return int(np.isnan(self.values).sum())

    def __repr__(self) -> str:
        extra = f" fallback={self.fallback!r}" if self.fallback else ""
        return (f"<IntensitySeries {self.region or '?'} {self.kind} {self.signal} "
                f"{iso(self.start)}..{iso(self.end)} step={self.resolution:g}s n={len(self)} "
                f"source={self.source}{extra}>")

    def with_(self, **changes: Any) -> IntensitySeries:
        return replace(self, **changes)

    def index_of(self, t: float) -> int:
        """Index of the slot containing ``t`` (may be out of range)."""
        return int(np.floor((t - self.start) / self.resolution))

    def slice(self, start: float, end: float) -> IntensitySeries:
        """The slots overlapping ``[start, end)`` (whole slots; may be empty)."""
        lo = max(0, self.index_of(start))
        hi = min(len(self), int(np.ceil((end - self.start) / self.resolution)))
        hi = max(hi, lo)
        return replace(self, start=self.start + lo * self.resolution,
                       values=self.values[lo:hi], estimated=self.estimated[lo:hi])

    def until(self, t: float) -> IntensitySeries:
        """Only the slots that had fully elapsed by ``t``: what was observable at ``t``."""
        hi = int(np.floor((t - self.start) / self.resolution + 1e-9))
        hi = min(len(self), max(0, hi))
        return replace(self, values=self.values[:hi], estimated=self.estimated[:hi])

    def covers(self, start: float, end: float) -> bool:
        return self.start <= start + 1e-6 and end <= self.end + 1e-6 and end >= start

    # -- time-weighted sums -----------------------------------------------------------------------
    @cached_property
    def _running(self) -> tuple[np.ndarray, np.ndarray]:
        filled = np.where(np.isnan(self.values), 0.0, self.values)
        integral = np.r_[0.0, np.cumsum(filled * self.resolution)]
        missing = np.r_[0, np.cumsum(np.isnan(self.values))]
        return integral, missing

    def integral(self, start: np.ndarray | float, end: np.ndarray | float) -> np.ndarray:
        """Integral of intensity over ``[start, end)`` in (gCO2eq/kWh)*s, vectorised.

        NaN where the interval leaves the series or touches a gap.
        """
        a = np.asarray(start, dtype=np.float64)
        b = np.asarray(end, dtype=np.float64)
        integral, missing = self._running
        edges = self.start + np.arange(len(integral)) * self.resolution
        total = np.interp(b, edges, integral) - np.interp(a, edges, integral)
        lo = np.clip(np.floor((a - self.start) / self.resolution + 1e-9), 0, len(self))
        hi = np.clip(np.ceil((b - self.start) / self.resolution - 1e-9), 0, len(self))
        holes = missing[hi.astype(np.int64)] - missing[lo.astype(np.int64)]
        outside = (a < self.start - 1e-6) | (b > self.end + 1e-6) | (b < a)
        return np.where(outside | (holes > 0), np.nan, total)

    def mean(self, start: np.ndarray | float, end: np.ndarray | float) -> np.ndarray:
        """Time-weighted mean intensity over ``[start, end)`` (NaN if not fully covered)."""
        a = np.asarray(start, dtype=np.float64)
        b = np.asarray(end, dtype=np.float64)
        width = b - a
        with np.errstate(invalid="ignore", divide="ignore"):
            result = np.where(width > 0, self.integral(a, b) / np.where(width > 0, width, 1),
                              self.value_at(a))
        return result

    def value_at(self, t: np.ndarray | float) -> np.ndarray:
        idx = np.floor((np.asarray(t, dtype=np.float64) - self.start) / self.resolution)
        ok = (idx >= 0) & (idx < len(self))
        return np.where(ok, self.values[np.clip(idx, 0, max(0, len(self) - 1)).astype(np.int64)]
                        if len(self) else np.nan, np.nan)

    def require(self, start: float, end: float) -> None:
        if not self.covers(start, end):
            raise NoIntensityData(
                f"{self.region or 'series'} covers {iso(self.start)}..{iso(self.end)}, not "
                f"{iso(start)}..{iso(end)}; fetch a longer history or forecast"
            )

    # -- reshaping ----------------------------------------------------------------------
    def resample(self, resolution: float) -> IntensitySeries:
        """Time-weighted means on a coarser grid, or the same steps on a finer one."""
        if resolution == self.resolution:
            return self
        n = int(np.ceil(len(self) * self.resolution / resolution))
        starts = self.start + np.arange(n) * resolution
        ends = np.minimum(starts + resolution, self.end)
        values = self.mean(starts, ends)
        idx = np.clip(((starts - self.start) // self.resolution).astype(np.int64), 0,
                      max(0, len(self) - 1))
        return replace(self, resolution=float(resolution), values=values,
                       estimated=self.estimated[idx] if len(self) else np.zeros(0, bool))

    def fill_gaps(self, max_gap: float | None = None) -> IntensitySeries:
        """Linear interpolation across interior gaps up to ``max_gap`` seconds long."""
        v = self.values.copy()
        nan = np.isnan(v)
        if not nan.any() or nan.all():
            return self
        idx = np.arange(v.size)
        filled = np.interp(idx, idx[~nan], v[~nan])
        if max_gap is not None:
            run_id = np.cumsum(~nan)
            run_len = np.bincount(run_id[nan], minlength=run_id.max() + 1)
            too_long = np.zeros(v.size, bool)
            too_long[nan] = run_len[run_id[nan]] * self.resolution > max_gap
            filled[too_long] = np.nan
        interior = (idx > idx[~nan][0]) & (idx < idx[~nan][-1])
        v[nan & interior] = filled[nan & interior]
        return replace(self, values=v, estimated=self.estimated | (nan & ~np.isnan(v)))

    def combine(self, other: IntensitySeries) -> IntensitySeries:
        """This series, extended and gap-filled by ``other`` (same resolution after resampling)."""
        other = other.resample(self.resolution)
        start = min(self.start, other.start)
        end = max(self.end, other.end)
        n = round((end - start) / self.resolution)
        values = np.full(n, np.nan)
        flags = np.zeros(n, bool)
        for series in (other, self):  # self last: its data wins
            off = round((series.start - start) / self.resolution)
            part = series.values
            ok = ~np.isnan(part)
            values[off:off + part.size][ok] = part[ok]
            flags[off:off + part.size][ok] = series.estimated[ok]
        return replace(self, start=start, values=values, estimated=flags)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start, "resolution": self.resolution,
            "values": [None if np.isnan(x) else round(float(x), 6) for x in self.values],
            "estimated": [int(x) for x in self.estimated], "signal": self.signal,
            "source": self.source, "region": self.region, "kind": self.kind,
            "issued_at": self.issued_at, "fallback": self.fallback, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensitySeries:
        try:
            values = np.array([np.nan if x is None else float(x) for x in data["values"]])
            return cls(float(data["start"]), float(data["resolution"]), values,
                       np.asarray(data.get("estimated") or np.zeros(values.size), bool),
                       signal=data.get("signal", "average"), source=data.get("source", "unknown"),
                       region=data.get("region", ""), kind=data.get("kind", "history"),
                       issued_at=data.get("issued_at"), fallback=data.get("fallback"),
                       meta=dict(data.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse("series", f"not a serialised IntensitySeries: {exc}") from exc

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> IntensitySeries:
        try:
            return cls.from_dict(json.loads(data))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedResponse("series", f"not JSON: {exc}") from exc


def _time_weighted(offsets: np.ndarray, durations: np.ndarray, values: np.ndarray,
                   estimated: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Slots of ``step`` from offset 0: the mean of the points over each slot, weighted by how
    much of the slot each covers (NaN where no valued point does); a slot is estimated if any
    point in it is."""
    eps = 1e-9
    first = np.floor(offsets / step + eps).astype(np.int64)
    last = np.ceil((offsets + durations) / step - eps).astype(np.int64)  # exclusive
    n = int(last.max())
    total, weight = np.zeros(n), np.zeros(n)
    flags = np.zeros(n, bool)
    valued = ~np.isnan(values)
    for k in range(int((last - first).max())):  # a few passes: a point spans few slots
        sel = (last - first > k) & valued
        slot = first[sel] + k
        lo = np.maximum(offsets[sel], slot * step)
        hi = np.minimum(offsets[sel] + durations[sel], (slot + 1) * step)
        share = np.clip(hi - lo, 0.0, None)
        np.add.at(total, slot, share * values[sel])
        np.add.at(weight, slot, share)
        np.logical_or.at(flags, slot, estimated[sel] & (share > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
    return grid, flags
