"""Forecasts: the provider's when it has one, otherwise one made from history by a method.

A method is a small object with ``predict_block(values, origins, horizon, period)``: given a regular
array of past intensity (gaps forward-filled), it forecasts ``horizon`` slots starting at each
origin using only ``values[:origin]``. One code path serves both uses: a live forecast (one
origin) and the evaluation, which asks for every hour of a year at once (:func:`predict` calls
it, passing the calendar, the epoch of ``values[0]``, to methods with ``uses_calendar``).
Methods:

* ``mean7``: Caribou's first baseline, the mean of the same hour over the last 7 days;
* ``holtwinters``: Caribou's second baseline, additive Holt-Winters with a daily season fitted on
  the last 7 days (:mod:`flowcache.carbon.holtwinters`);
* ``ensemble``: flowcache's method and the default: profiles (one per day type), analog days and
  ridge regressions, weighted by how well each recently chose when to run
  (:mod:`flowcache.carbon.ensemble`); it captures more of the perfect-foresight saving than
  either baseline in the evaluation (docs/carbon-eval.md);
* ``blend``: the previous default, an equal-weight average of four of those members
  (:mod:`flowcache.carbon.blend`);
* ``oracle``: perfect foresight. **Evaluation only**: it reads the future, and says so
  (``sees_future = True``); nothing outside :mod:`flowcache.carbon.replay` should use it.

History finer than an hour is averaged to hours first: the daily shape is what the methods model,
and hourly models stay small. Forecast series have ``issued_at`` set to the instant they were
made for and all slots flagged estimated.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import numpy as np

from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, iso, to_epoch
from flowcache.errors import ConfigError, ForecastNotSupported, NoIntensityData

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


METHODS = "ensemble (the default), blend, mean7 or holtwinters"


def method(name: str | Forecaster) -> Forecaster:
    """A forecasting method by name (``ensemble``/``default``, ``blend``, ``mean7``,
    ``holtwinters``) or as given."""
    if not isinstance(name, str):
        return name
    key = name.lower().replace("-", "").replace("_", "")
    if key in ("mean7", "hourofday", "caribou"):
        return HourOfDayMean(7)
    if key in ("holtwinters", "hw"):
        from flowcache.carbon.holtwinters import HoltWinters
        return HoltWinters()
    if key == "blend":
        from flowcache.carbon.blend import Blend
        return Blend()
    if key in ("ensemble", "default"):
        from flowcache.carbon.ensemble import Ensemble
        return Ensemble()
    if key == "oracle":
        raise ConfigError("the oracle sees the future: it exists for evaluation only "
                          f"(flowcache.carbon.replay); choose {METHODS}")
    raise ConfigError(f"unknown forecasting method {name!r}; use {METHODS}")


def history_days_for(using: str | Forecaster, default: float = 28.0) -> float:
    """Days of history a method wants for a live forecast (its ``history_days``, else 28)."""
    return float(getattr(method(using), "history_days", default))


def forecast_from_history(history: IntensitySeries, start: TimeLike, horizon: float,
                          using: str | Forecaster = "default") -> IntensitySeries:
    """Forecast ``[start, start + horizon)`` from the part of ``history`` observable at start.

    The default method is the ensemble (:mod:`flowcache.carbon.ensemble`): in the evaluation on
    a year of real data it captures the largest share of the perfect-foresight saving of the
    methods tried, and beats both of Caribou's baselines in most zones."""
    t0 = to_epoch(start)
    forecaster = method(using)
    if forecaster.sees_future:
        raise ConfigError("forecast_from_history never uses a method that sees the future")
    past = history.until(t0)
    if not len(past) or np.isnan(past.values).all():
        raise NoIntensityData(f"no history of {history.region or 'the region'} before "
                              f"{iso(t0)} to forecast from")
    step = past.resolution
    if step < HOUR and DAY % HOUR == 0:
        past = past.resample(HOUR)
        past = past.until(t0)
        step = HOUR
    if DAY % step:
        raise ConfigError(f"cannot forecast a series with a {step:g}s step: it must divide a day")
    period = int(DAY // step)
    origin = len(past) + max(0, int(np.floor((t0 - past.end) / step)))  # provider lag
    n_out = int(np.ceil((t0 + horizon - (past.start + origin * step)) / step))
    lead = origin - len(past)
    grid = np.r_[past.values, np.full(lead + n_out, np.nan)]
    block = predict(forecaster, grid, np.array([origin]), lead + n_out, period,
                    start=past.start)[0]
    values = block[lead:] if lead else block
    values = values[:n_out]
    return IntensitySeries(past.start + origin * step, step, values, np.ones(values.size, bool),
                           signal=history.signal, source=f"{history.source}+{forecaster.name}",
                           region=history.region, kind="forecast", issued_at=t0,
                           fallback=history.fallback, meta={"method": forecaster.name})


def forecast_for(provider: IntensityProvider, region: str, start: TimeLike, horizon: float, *,
                 using: str | Forecaster = "default", history_days: float | None = None
                 ) -> IntensitySeries:
    """The provider's forecast for ``[start, start + horizon)``, completed from history.

    A provider without forecasts (files, the SDK JSON, Electricity Maps plans without forecast
    access) raises :class:`ForecastNotSupported`; then the forecast is made from the last
    ``history_days`` of history (default: what the method wants, 93 days for the ensemble, 28
    for the others) with ``using`` (default: the ensemble). A provider forecast shorter than the
    horizon is extended the same way. Other provider errors propagate: wrap the provider in
    :class:`~flowcache.carbon.fallback.FallbackProvider` to degrade instead.
    """
    t0 = to_epoch(start)
    end = t0 + horizon
    try:
        native = provider.forecast(region, t0, end)
    except ForecastNotSupported:
        native = None
    if native is not None and len(native) and native.covers(t0, end) \
            and not np.isnan(native.mean(t0, end)):
        return native
    if history_days is None:
        history_days = history_days_for(using)
    history = provider.history(region, t0 - history_days * DAY, t0)
    made = forecast_from_history(history.with_(region=region), t0, horizon, using)
    if native is not None and len(native):
        return native.combine(made).with_(issued_at=t0)
    return made
