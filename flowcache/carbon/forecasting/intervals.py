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
from collections.abc import Sequence
from typing import Any

import numpy as np

from flowcache.carbon.forecasting.seasonal import Forecaster, predict
from flowcache.carbon.series import IntensitySeries

#: quantile levels kept: the 90 % interval's bounds (0.05, 0.95) and enough around them to
#: read a chance from
LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
#: the interval shown and used by the risk-aware planner
COVERAGE = 0.9
#: days of recent errors an interval is calibrated on, and the half-life (days) of their
#: weights: chosen by ``bench/carbon_eval.py --tune`` on January-June only
CALIBRATION_DAYS = 56
HALF_LIFE_DAYS: float | None = 14.0
#: fewer errors than this at a horizon and the interval there is unknown
MIN_SAMPLES = 24


def conformal_offsets(residuals: np.ndarray, levels: Sequence[float] = LEVELS,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Per-column quantiles of ``residuals`` (rows: past forecasts, oldest first; columns:
    horizons; NaN where unknown) as a ``(levels, columns)`` array, NaN where a column has too
    few samples.

    The split-conformal quantile, weighted for drift (Barber et al., "Conformal prediction
    beyond exchangeability", 2023): errors weigh ``weights`` (default: all 1), and the new
    error a point mass of the largest weight, so for an upper level ``q`` the offset is the
    smallest error whose cumulative weight reaches ``q`` of the total plus that mass (unweighted:
    the ``ceil((n + 1) q)``-th smallest of ``n``); a lower level is the mirror image."""
    r = np.asarray(residuals, dtype=np.float64)
    w = np.ones(r.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.full((len(levels), r.shape[1]), np.nan)
    enough = np.count_nonzero(~np.isnan(r), axis=0) >= MIN_SAMPLES
    if not enough.any():
        return out
    for sign in (1.0, -1.0):  # upper levels on the errors, lower ones on their negation
        values = sign * r[:, enough]
        order = np.argsort(values, axis=0, kind="stable")  # NaNs last
        ordered = np.take_along_axis(values, order, axis=0)
        mass = np.where(np.isnan(ordered), 0.0, w[order])
        cumulative = np.cumsum(mass, axis=0)
        total = cumulative[-1] + w.max()
        for row, q in enumerate(levels):
            if (q >= 0.5) != (sign > 0):
                continue
            level = q if sign > 0 else 1.0 - q
            reached = cumulative >= level * total
            index = np.where(reached.any(axis=0), np.argmax(reached, axis=0),
                             np.count_nonzero(mass > 0, axis=0) - 1)
            out[row, enough] = sign * np.take_along_axis(ordered, index[None, :], axis=0)[0]
    return out


def calibrate(forecaster: Forecaster, values: np.ndarray, known: int, horizon: int,
              period: int, *, start: float | None = None, days: float = CALIBRATION_DAYS,
              half_life: float | None = HALF_LIFE_DAYS, first: int = 0) -> np.ndarray | None:
    """Offsets (``levels x horizon``) for a forecast made after ``values[:known]``: the
    method's errors when run at each slot of the last ``days`` days, every forecast using only
    the data before its origin (``first``: the earliest origin the method may use), recent
    ones weighing more (``half_life`` days; None: all alike)."""
    lo = max(first, known - int(days * period) - horizon)
    if known - lo < MIN_SAMPLES:
        return None
    origins = np.arange(lo, known)
    with np.errstate(all="ignore"):
        made = predict(forecaster, values[:known], origins, horizon, period, start=start)
    index = origins[:, None] + np.arange(horizon)[None, :]
    truth = np.where(index < known, values[np.minimum(index, known - 1)], np.nan)
    offsets = window_offsets(truth - np.asarray(made, dtype=np.float64), origins, known,
                             days * period, half_life * period if half_life else None)
    return None if np.isnan(offsets).all() else offsets


def window_offsets(errors: np.ndarray, origins: np.ndarray, now: int, window: float,
                   half_life: float | None) -> np.ndarray:
    """The offsets at slot ``now`` from the errors of forecasts made at ``origins`` (rows):
    only outcomes known by ``now`` count, the last ``window`` slots of them at every horizon,
    weighted by age (``half_life`` slots). Shared by the live forecast and the evaluation."""
    horizon = errors.shape[1]
    errors = errors.copy()
    errors[origins[:, None] + np.arange(horizon)[None, :] >= now] = np.nan
    for column in range(horizon):  # the same span of outcomes at every horizon
        errors[origins + column < now - window, column] = np.nan
    weights = None if half_life is None else 0.5 ** ((now - origins) / half_life)
    return conformal_offsets(errors, weights=weights)


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
                 level: float = 0.95) -> float | None:
    """How far (g/kWh) above its forecast the mean intensity of ``[start, end)`` comes out
    with probability ``1 - level`` (0.95: the top of the 90 % interval); None when unknown."""
    offsets = _window_offsets(series, start, end)
    if offsets is None:
        return None
    levels = series.meta["interval"]["levels"]
    return float(np.interp(level, levels, offsets))


def chance_worse(series: IntensitySeries, start: float, end: float,
                 margin: float) -> float | None:
    """The chance that ``[start, end)`` comes out more than ``margin`` g/kWh above its
    forecast (e.g. ``margin`` = the expected saving: the chance that waiting was worse), read
    off the calibrated error quantiles; clamped to the outermost levels kept."""
    offsets = _window_offsets(series, start, end)
    if offsets is None:
        return None
    return chance_above(offsets, margin, series.meta["interval"]["levels"])


def chance_above(offsets: np.ndarray, margin: float, levels: Sequence[float] = LEVELS
                 ) -> float:
    """The chance that an error exceeds ``margin``, given its quantiles ``offsets`` at
    ``levels`` (linear between them; clamped to the outermost levels); NaN if unknown."""
    if np.isnan(offsets).any():
        return float("nan")
    order = np.argsort(offsets, kind="stable")
    below = float(np.interp(margin, np.asarray(offsets)[order], np.asarray(levels)[order],
                            left=levels[0], right=levels[-1]))
    return 1.0 - below
