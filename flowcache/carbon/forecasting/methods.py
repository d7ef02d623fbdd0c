"""Forecasts: the provider's when it has one, otherwise one made from history by a method.

Methods by name (:func:`method`):

* ``ensemble`` (the default): profiles (one per day type), analog days and ridge regressions,
  weighted by how well each recently chose when to run (:mod:`.ensemble`); it captures more of
  the perfect-foresight saving than either baseline in the evaluation (docs/carbon-eval.md);
* ``blend``: the previous default, an equal-weight average of four of those members
  (:mod:`.blend`);
* ``mean7`` and ``holtwinters``: Caribou's two baselines (:mod:`.seasonal`, :mod:`.holtwinters`).

History finer than an hour is averaged to hours first: the daily shape is what the methods model,
and hourly models stay small. Forecast series have ``issued_at`` set to the instant they were
made for and all slots flagged estimated.
"""

from __future__ import annotations

import numpy as np

from flowcache.carbon.forecasting.blend import Blend
from flowcache.carbon.forecasting.ensemble import Ensemble
from flowcache.carbon.forecasting.holtwinters import HoltWinters
from flowcache.carbon.forecasting.intervals import CALIBRATION_DAYS, MIN_SAMPLES, attach, calibrate
from flowcache.carbon.forecasting.seasonal import DAY, HOUR, Forecaster, HourOfDayMean, predict
from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, iso, to_epoch
from flowcache.errors import ConfigError, ForecastNotSupported, NoIntensityData

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
        return HoltWinters()
    if key == "blend":
        return Blend()
    if key in ("ensemble", "default"):
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

    The default method is the ensemble (:mod:`.ensemble`): in the evaluation on a year of
    real data it captures the largest share of the perfect-foresight saving of the
    methods tried, and beats both of Caribou's baselines in most zones."""
    t0 = to_epoch(start)
    chosen = method(using)
    if chosen.sees_future:
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
    have_days = float(np.count_nonzero(~np.isnan(past.values))) / period
    forecaster, values, why = _first_that_works(chosen, grid, origin, lead, n_out, period,
                                                past.start, have_days)
    meta = {"method": forecaster.name, "history_days": round(have_days, 2)}
    if why:
        meta["fallback"] = why
    made = IntensitySeries(past.start + origin * step, step, values, np.ones(values.size, bool),
                           signal=history.signal, source=f"{history.source}+{forecaster.name}",
                           region=history.region, kind="forecast", issued_at=t0,
                           fallback=history.fallback, meta=meta)
    first = int(float(getattr(forecaster, "min_history_days", 1.0)) * period)
    offsets = calibrate(forecaster, grid, len(past), lead + n_out, period, start=past.start,
                        first=first)
    if offsets is None:
        return attach(made, None, f"under {MIN_SAMPLES} past forecasts of {forecaster.name} "
                                  f"to calibrate on")
    return attach(made, offsets[:, lead:lead + n_out],
                  f"{forecaster.name}'s errors over the last {CALIBRATION_DAYS} days")


def _first_that_works(chosen: Forecaster, grid: np.ndarray, origin: int, lead: int,
                      n_out: int, period: int, start: float, have_days: float
                      ) -> tuple[Forecaster, np.ndarray, str]:
    """The chosen method's forecast, or, when the history is too short for it or it fails,
    the hour-of-day mean's (which degrades to the last value with under a day of history):
    a forecast is always made from what there is, and says which method made it and why."""
    why = ""
    for forecaster in (chosen, HourOfDayMean(7)):
        needed = float(getattr(forecaster, "min_history_days", 0.0))
        if have_days < needed:
            why = (f"{forecaster.name} needs {needed:g} days of history, "
                   f"{have_days:.2g} available")
            continue
        try:
            with np.errstate(all="ignore"):
                block = predict(forecaster, grid, np.array([origin]), lead + n_out, period,
                                start=start)[0]
            values = np.asarray(block[lead:] if lead else block, dtype=np.float64)[:n_out]
            if values.size and not np.isfinite(values).any():
                raise ValueError("no finite value")
        except Exception as exc:  # a method must never fail a forecast: the next one makes it
            why = f"{forecaster.name} failed ({type(exc).__name__}: {exc})"
            continue
        return forecaster, values, why if forecaster is not chosen else ""
    raise NoIntensityData(f"no forecast could be made from {have_days:.2g} days of history "
                          f"({why})")


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
