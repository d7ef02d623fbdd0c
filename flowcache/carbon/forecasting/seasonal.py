"""Forecasting's ground floor: the method protocol, seasonal helpers and the two simple methods.

A method is a small object with ``predict_block(values, origins, horizon, period)``: given a
regular array of past intensity (gaps forward-filled), it forecasts ``horizon`` slots starting at
each origin using only ``values[:origin]``. One code path serves both uses: a live forecast (one
origin) and the evaluation, which asks for every hour of a year at once (:func:`predict` calls
it, passing the calendar, the epoch of ``values[0]``, to methods with ``uses_calendar``).

Here: the helpers every method uses (:func:`ffill`, :func:`clip_spikes`, :func:`seasonal_mean`),
Caribou's first baseline (:class:`HourOfDayMean`, ``mean7``: the mean of the same hour over the
last 7 days) and, for the evaluation only, :class:`PerfectForesight` (``oracle``: it reads the
future, and says so with ``sees_future = True``; nothing outside
:mod:`flowcache.carbon.replay` should use it). The richer methods stand on these:
:mod:`~flowcache.carbon.forecasting.holtwinters` (Caribou's second baseline),
:mod:`~flowcache.carbon.forecasting.blend` and :mod:`~flowcache.carbon.forecasting.ensemble`
(flowcache's default); :mod:`~flowcache.carbon.forecasting.methods` picks one by name and
makes live forecasts.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import numpy as np

HOUR = 3600.0
DAY = 86400.0


@runtime_checkable
class Forecaster(Protocol):
    """Forecast ``horizon`` slots from each origin using only ``values[:origin]``."""

    name: str
    sees_future: bool

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int) -> np.ndarray: ...


def ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fill gaps (the past only, so no forecast ever sees later data); leading gaps take
    the first value."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    if ok.all() or not ok.any():
        return v.copy()
    idx = np.where(ok, np.arange(v.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = v[idx]
    out[: np.argmax(ok)] = v[np.argmax(ok)]
    return out


def clip_spikes(values: np.ndarray, period: int, *, mads: float = 6.0, days: int = 14,
                floor: float = 0.01) -> np.ndarray:
    """Limit each value to ``mads`` robust standard deviations (1.4826 x the median absolute
    deviation, at least ``floor`` x the median) around the median of the ``days`` days before
    it; values with under two days of history before them pass unchanged.

    Why: provider data has glitches (the shipped CA-QC series jumps from 28 to 109 g/kWh for a
    few estimated hours), and every method turns a glitch into a forecast of more glitches: a
    day later the profiles and seasonal lags expect the spike again, and the ensemble's
    decision scores reward whichever member happened to dodge it. The bound of value ``i`` uses
    only values before it, so a forecast from the clipped series still sees only the past. The
    ``floor`` keeps a nearly flat series (zero deviation) from being clamped to its median."""
    v = np.asarray(values, dtype=np.float64)
    window = days * period
    first = 2 * period
    if v.size <= first:
        return v.copy()
    padded = np.r_[np.full(window, np.nan), v[:-1]]
    past = np.lib.stride_tricks.sliding_window_view(padded, window)[first:]  # v[i-window:i]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: left unclipped
        median = np.nanmedian(past, axis=1)
        spread = 1.4826 * np.nanmedian(np.abs(past - median[:, None]), axis=1)
    scale = np.maximum(spread, floor * np.abs(median))
    out = v.copy()
    tail = out[first:]
    bounded = np.clip(tail, median - mads * scale, median + mads * scale)
    out[first:] = np.where(np.isnan(median) | np.isnan(tail), tail, bounded)
    return out


def same_slot_lag(k: np.ndarray, period: int, days: int = 1) -> np.ndarray:
    """For target offset ``k`` from the origin, the smallest multiple of ``days`` periods that
    lands strictly before the origin (``k + 1`` slots back at least)."""
    step = period * days
    return step * ((k + step) // step)


def seasonal_mean(values: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
                  days: int, half_life: float | None = None) -> np.ndarray:
    """Weighted mean of the same slot of the day over the last ``days`` days (past only)."""
    k = np.arange(horizon)
    targets = origins[:, None] + k[None, :] - same_slot_lag(k, period)[None, :]
    total = np.zeros((origins.size, horizon))
    weight = np.zeros((origins.size, horizon))
    for d in range(days):
        idx = targets - period * d
        ok = idx >= 0
        w = 1.0 if half_life is None else 0.5 ** (d / half_life)
        vals = values[np.clip(idx, 0, None)]
        good = ok & ~np.isnan(vals)
        total += np.where(good, w * vals, 0.0)
        weight += np.where(good, w, 0.0)
    last = values[np.clip(origins - 1, 0, None)][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), last)


class HourOfDayMean:
    """Caribou's baseline: each slot is the mean of the same slot on the previous ``days`` days."""

    sees_future = False

    def __init__(self, days: int = 7) -> None:
        self.days = days
        self.name = "mean7" if days == 7 else f"mean{days}"

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int) -> np.ndarray:
        return seasonal_mean(ffill(values), np.asarray(origins), horizon, period, days=self.days)


class PerfectForesight:
    """EVALUATION ONLY: returns the true future values. It reads data after the origin."""

    name = "oracle"
    sees_future = True

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int) -> np.ndarray:
        idx = np.asarray(origins)[:, None] + np.arange(horizon)[None, :]
        out = np.full(idx.shape, np.nan)
        ok = idx < values.size
        out[ok] = values[idx[ok]]
        return out


def predict(forecaster: Forecaster, values: np.ndarray, origins: np.ndarray, horizon: int,
            period: int, *, start: float | None = None) -> np.ndarray:
    """``forecaster.predict_block``, given the calendar (``start``: epoch of ``values[0]``) when
    the method uses it (``uses_calendar``, e.g. to keep weekends apart)."""
    if start is not None and getattr(forecaster, "uses_calendar", False):
        return forecaster.predict_block(values, origins, horizon, period,  # type: ignore[call-arg]
                                        start=start)
    return forecaster.predict_block(values, origins, horizon, period)
