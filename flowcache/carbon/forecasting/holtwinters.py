"""Holt-Winters (additive level, trend and daily season): Caribou's second forecasting baseline.

Caribou fits Holt-Winters with a daily season on the last 7 days of hourly data. Here the model is
implemented in numpy (statsmodels is not a dependency). Smoothing parameters are chosen by a grid
search minimising one-step-ahead squared error over the 7-day window; the search runs once per
day of origins (on the window ending at that day's first origin) and its parameters are reused for
the day's other origins, whose states are re-run over their own 7-day window ending at the origin.
That keeps a year of hourly decisions to seconds, and uses no data after any origin.
Initial state: level = mean of the first day, trend = (mean of day 2 - mean of day 1) / period,
season = first day minus its mean.
"""

from __future__ import annotations

import itertools

import numpy as np

from flowcache.carbon.forecasting.seasonal import ffill, seasonal_mean

GRID = np.array(list(itertools.product(
    (0.1, 0.2, 0.35, 0.5, 0.7, 0.9),     # alpha: level
    (0.0, 0.01, 0.05, 0.15),             # beta: trend
    (0.05, 0.1, 0.2, 0.35, 0.5),         # gamma: season
)))


def run(windows: np.ndarray, alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray,
        period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Filter each row of ``windows``; returns level, trend, season (rows x period), SSE."""
    n, length = windows.shape
    level = windows[:, :period].mean(1)
    trend = (windows[:, period:2 * period].mean(1) - level) / period
    season = windows[:, :period] - level[:, None]
    sse = np.zeros(n)
    for i in range(length):
        j = i % period
        y = windows[:, i]
        if i >= period:
            error = y - (level + trend + season[:, j])
            sse += error * error
        new_level = alpha * (y - season[:, j]) + (1 - alpha) * (level + trend)
        trend = beta * (new_level - level) + (1 - beta) * trend
        season[:, j] = gamma * (y - new_level) + (1 - gamma) * season[:, j]
        level = new_level
    return level, trend, season, sse


class HoltWinters:
    """Additive Holt-Winters, daily season, fitted on the last ``days`` days (default 7)."""

    name = "holtwinters"
    min_history_days = 7.0
    sees_future = False

    def __init__(self, days: int = 7, grid: np.ndarray = GRID) -> None:
        if days < 2:
            raise ValueError("Holt-Winters needs at least two days to initialise the season")
        self.days = days
        self.grid = grid

    def fit(self, window: np.ndarray, period: int) -> np.ndarray:
        """Best (alpha, beta, gamma) for each row of ``window`` by one-step SSE."""
        g = len(self.grid)
        rows = np.repeat(window, g, axis=0)
        params = np.tile(self.grid, (window.shape[0], 1))
        *_, sse = run(rows, params[:, 0], params[:, 1], params[:, 2], period)
        best = sse.reshape(window.shape[0], g).argmin(1)
        return self.grid[best]

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int) -> np.ndarray:
        v = ffill(values)
        origins = np.asarray(origins, dtype=np.int64)
        length = self.days * period
        out = np.empty((origins.size, horizon))
        short = origins < length
        if short.any():  # not enough history for the model: fall back to the daily mean
            out[short] = seasonal_mean(v, origins[short], horizon, period, days=self.days)
        ok = ~short
        if not ok.any():
            return out
        orig = origins[ok]
        day = orig // period
        days, first = np.unique(day, return_index=True)
        # fit once per day, on the window ending at that day's first origin
        fit_windows = np.stack([v[o - length:o] for o in orig[first]])
        params = self.fit(fit_windows, period)[np.searchsorted(days, day)]
        windows = np.stack([v[o - length:o] for o in orig])
        level, trend, season, _ = run(windows, params[:, 0], params[:, 1], params[:, 2], period)
        k = np.arange(horizon)
        seasonal = np.take_along_axis(season, ((length + k) % period)[None, :].repeat(
            orig.size, 0), axis=1)
        out[ok] = level[:, None] + trend[:, None] * (k + 1)[None, :] + seasonal
        return out
