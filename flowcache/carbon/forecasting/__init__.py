"""Forecasting grid carbon intensity: methods (seasonal baselines, Holt-Winters, the ensemble)
and live forecasts from a provider's own forecast or its history."""

from flowcache.carbon.forecasting.methods import (
    METHODS,
    forecast_for,
    forecast_from_history,
    history_days_for,
    method,
)
from flowcache.carbon.forecasting.seasonal import Forecaster, predict

__all__ = ["METHODS", "Forecaster", "forecast_for", "forecast_from_history", "history_days_for",
           "method", "predict"]
