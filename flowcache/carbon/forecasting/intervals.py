"""Prediction intervals: how wrong a zone's forecast has recently been, by horizon.

Split-conformal on the zone's own recent errors: the method that made a forecast is run again
at every hour of the last ``CALIBRATION_DAYS`` days (each forecast from the data before its
own origin, as the live one), its errors against what the grid then did are collected per
horizon, and their empirical quantiles (with the finite-sample correction) become offsets from
the point forecast. No distribution is assumed, and a zone whose forecasts have lately been
poor gets wide intervals. The evaluation (``bench/carbon_eval.py``, docs/carbon-eval.md)
measures the 90 % intervals' coverage on a year of real data.

A forecast carries them in ``meta["interval"]``: the quantile ``levels``, the ``offsets``
(one row per level, one column per forecast slot from ``start`` every ``step`` seconds, so
slicing or resampling the series keeps them aligned) and how they were calibrated. Read them
with :func:`bounds`, :func:`upper_margin` and :func:`chance_worse`; a forecast without them
(a provider's own, or one from too little history) answers ``None``: unknown, never zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flowcache.carbon.forecasting.seasonal import Forecaster, predict
from flowcache.carbon.series import IntensitySeries

#: quantile levels kept: the 90 % interval's bounds (0.05, 0.95) and enough around them to
#: read a chance from
LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
#: the interval shown and used by the risk-aware planner
COVERAGE = 0.9
#: days of recent errors an interval is calibrated on (``bench/carbon_eval.py --tune``,
#: January-June only)
CALIBRATION_DAYS = 28
#: fewer errors than this at a horizon and the interval there is unknown
MIN_SAMPLES = 24


def conformal_offsets(residuals: np.ndarray, levels: tuple[float, ...] = LEVELS
                      ) -> np.ndarray:
    """Per-column quantiles of ``residuals`` (rows: past forecasts, columns: horizons; NaN
    where unknown) as a ``(levels, columns)`` array, NaN where a column has too few samples.

    The split-conformal quantile: for an upper level ``q`` the ``ceil((n + 1) q)``-th smallest
    of ``n`` errors, for a lower level the ``floor((n + 1) q)``-th, so that a new error falls
    inside the two with at least the nominal probability when errors are exchangeable."""
    r = np.asarray(residuals, dtype=np.float64)
    out = np.full((len(levels), r.shape[1]), np.nan)
    ordered = np.sort(r, axis=0)  # NaNs sort last
    counts = np.count_nonzero(~np.isnan(r), axis=0)
    for column, n in enumerate(counts):
        if n < MIN_SAMPLES:
            continue
        for row, q in enumerate(levels):
            rank = math.ceil((n + 1) * q) if q >= 0.5 else math.floor((n + 1) * q)
            out[row, column] = ordered[min(max(rank, 1), n) - 1, column]
    return out


def calibrate(forecaster: Forecaster, values: np.ndarray, known: int, horizon: int,
              period: int, *, start: float | None = None,
              days: float = CALIBRATION_DAYS, first: int = 0) -> np.ndarray | None:
    """Offsets (``levels x horizon``) for a forecast made after ``values[:known]``: the
    method's errors when run at each slot of the last ``days`` days, every forecast using only
    the data before its origin (``first``: the earliest origin the method may use)."""
    lo = max(first, known - int(days * period) - horizon)
    if known - lo < MIN_SAMPLES:
        return None
    origins = np.arange(lo, known)
    with np.errstate(all="ignore"):
        made = predict(forecaster, values[:known], origins, horizon, period, start=start)
    index = origins[:, None] + np.arange(horizon)[None, :]
    truth = np.where(index < known, values[np.minimum(index, known - 1)], np.nan)
    residuals = truth - np.asarray(made, dtype=np.float64)
    # only the last ``days`` of errors per horizon: the same window at every horizon
    window = int(days * period)
    for column in range(horizon):
        residuals[: max(0, origins.size - column - window), column] = np.nan
    offsets = conformal_offsets(residuals)
    return None if np.isnan(offsets).all() else offsets


def attach(series: IntensitySeries, offsets: np.ndarray | None, how: str) -> IntensitySeries:
    """``series`` with its interval (``offsets``: levels x slots of the series) in its meta."""
    if offsets is None:
        return series.with_(meta={**series.meta, "interval": None,
                                  "interval_note": f"no interval: {how}"})
    rounded = [[None if math.isnan(x) else round(float(x), 3) for x in row] for row in offsets]
    return series.with_(meta={**series.meta, "interval": {
        "levels": list(LEVELS), "coverage": COVERAGE, "start": series.start,
        "step": series.resolution, "offsets": rounded, "calibration": how}})


def _offsets_at(series: IntensitySeries, times: np.ndarray) -> np.ndarray | None:
    """``levels x len(times)`` offsets at ``times`` (NaN outside the calibrated slots)."""
    info: dict[str, Any] | None = series.meta.get("interval")
    if not info:
        return None
    offsets = np.array([[np.nan if x is None else x for x in row] for row in info["offsets"]],
                       dtype=np.float64)
    slot = np.floor((np.asarray(times, dtype=np.float64) - info["start"]) / info["step"])
    slot = slot.astype(np.int64)
    inside = (slot >= 0) & (slot < offsets.shape[1])
    out = np.full((offsets.shape[0], slot.size), np.nan)
    out[:, inside] = offsets[:, slot[inside]]
    return out


def _level_row(series: IntensitySeries, level: float) -> int:
    levels = series.meta["interval"]["levels"]
    return min(range(len(levels)), key=lambda i: abs(levels[i] - level))


def bounds(series: IntensitySeries, coverage: float = COVERAGE
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``coverage`` interval's lower and upper values at every slot of ``series`` (NaN
    where unknown), or None if the forecast has no interval."""
    offsets = _offsets_at(series, series.times)
    if offsets is None:
        return None
    tail = (1 - coverage) / 2
    lower = series.values + offsets[_level_row(series, tail)]
    upper = series.values + offsets[_level_row(series, 1 - tail)]
    return lower, upper


def _window_offsets(series: IntensitySeries, start: float, end: float) -> np.ndarray | None:
    """Mean offsets (one per level) over the slots ``[start, end)`` touches."""
    step = series.resolution
    times = np.arange(np.floor(start / step) * step, max(end, start + 1), step)
    offsets = _offsets_at(series, times)
    if offsets is None or np.isnan(offsets).any():
        return None
    return offsets.mean(axis=1)


def upper_margin(series: IntensitySeries, start: float, end: float,
                 coverage: float = COVERAGE) -> float | None:
    """How far (g/kWh) above its forecast the mean intensity of ``[start, end)`` may come out,
    at the top of the ``coverage`` interval; None when unknown."""
    offsets = _window_offsets(series, start, end)
    if offsets is None:
        return None
    return float(offsets[_level_row(series, 1 - (1 - coverage) / 2)])


def chance_worse(series: IntensitySeries, start: float, end: float,
                 margin: float) -> float | None:
    """The chance that ``[start, end)`` comes out more than ``margin`` g/kWh above its
    forecast (e.g. ``margin`` = the expected saving: the chance that waiting was worse), read
    off the calibrated error quantiles; clamped to the outermost levels kept."""
    offsets = _window_offsets(series, start, end)
    if offsets is None:
        return None
    levels = np.asarray(series.meta["interval"]["levels"], dtype=np.float64)
    order = np.argsort(offsets, kind="stable")
    below = float(np.interp(margin, offsets[order], levels[order],
                            left=levels[0], right=levels[-1]))
    return 1.0 - below
