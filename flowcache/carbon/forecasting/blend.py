"""Blend: the ensemble's members, and their equal-weight average (the previous default method).

Why a blend: in the evaluation (docs/carbon-eval.md) every single method built from a region's
own past (daily profiles, analogs, linear autoregression, even a small neural network) captured
about the same share of the perfect-foresight saving, but their errors differ, and the deferral
decision (the argmin over the next hours) is sensitive to noise, so averaging them helps more
than refining any one. The parts:

1. **profile**: recency-weighted mean of the same slot over the last ``profile_days`` days
   (weights halve every ``half_life`` days), plus the current anomaly (last value minus its
   profile value) decaying by ``decay`` per hour;
2. **analogs** (twice, with two look-back lengths): the past days whose last hours looked most like
   the last hours now (same time of day, within ``analog_days``); the forecast is the last value
   plus the mean of their continuations;
3. **ridge**: one linear model per horizon on the last ``ridge_days`` days, predicting the change
   from the last value from seasonal lags (1, 2 and 7 days), both profiles, the anomaly and the
   last step; refitted once per day of origins, on samples whose targets precede that day.

All parts use only ``values[:origin]`` (tested). The blend was the default method until the
ensemble (:mod:`.ensemble`), which reuses these parts, replaced it; its own
hyperparameters were set by hand on January-June 2022 (``bench/carbon_eval.py --tune`` searches
the ensemble's). This module also holds the ensemble's extra parts: a day-type profile
(weekdays and weekends kept apart) and the ridge's optional lagged-change features.
"""

from __future__ import annotations

import numpy as np

from flowcache.carbon.forecasting.seasonal import ffill, same_slot_lag, seasonal_mean


def profile_forecast(v: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
                     days: int = 14, half_life: float = 4.0, decay: float = 0.95) -> np.ndarray:
    base = seasonal_mean(v, origins, horizon, period, days=days, half_life=half_life)
    prev = seasonal_mean(v, origins - 1, 1, period, days=days, half_life=half_life)[:, 0]
    last = v[np.clip(origins - 1, 0, None)]
    anomaly = np.where(origins >= 2, last - prev, 0.0)
    per_slot = decay ** (24.0 / period)
    return base + anomaly[:, None] * per_slot ** (np.arange(horizon) + 1)[None, :]


def analog_forecast(v: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
                    days: int = 28, hours: int = 12, k: int = 20, decay: float = 0.1
                    ) -> np.ndarray:
    look = max(1, hours * period // 24)
    lags = np.arange(1, look + 1)
    weights = np.exp(-decay * (lags - 1) * 24.0 / period)
    last = v[np.clip(origins - 1, 0, None)]
    now = v[np.clip(origins[:, None] - lags[None, :], 0, None)] - last[:, None]
    candidates = origins[:, None] - period * np.arange(1, days + 1)[None, :]  # (n, days)
    valid = candidates - look >= 0
    safe = np.clip(candidates, look, None)
    past = v[safe[:, :, None] - lags[None, None, :]] - v[safe - 1][:, :, None]
    dist = ((past - now[:, None, :]) ** 2 * weights).sum(-1)
    dist = np.where(valid, dist, np.inf)
    out = np.repeat(last[:, None], horizon, 1).astype(np.float64)
    steps = np.arange(horizon)
    for m in range(1, int(np.ceil(horizon / period)) + 1):  # continuations must be observed
        ks = steps[(steps >= period * (m - 1)) & (steps < period * m)]
        d = dist.copy()
        d[:, : m - 1] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(safe, order, 1)                           # (n, k)
        usable = np.isfinite(np.take_along_axis(d, order, 1))
        cont = v[chosen[:, :, None] + ks[None, None, :]] - v[chosen - 1][:, :, None]
        count = usable.sum(1)
        mean = np.where(usable[:, :, None], cont, 0.0).sum(1) / np.maximum(count, 1)[:, None]
        out[:, ks] = np.where(count[:, None] > 0, last[:, None] + mean, out[:, ks])
    return out


def _features(v: np.ndarray, origins: np.ndarray, horizon: int, period: int,
              lags: int = 0) -> np.ndarray:
    k = np.arange(horizon)
    last = v[np.clip(origins - 1, 0, None)][:, None]
    cols = [seasonal_mean(v, origins, horizon, period, days=7) - last,
            seasonal_mean(v, origins, horizon, period, days=14, half_life=4.0) - last]
    for d in (1, 2, 7):
        idx = origins[:, None] + k[None, :] - same_slot_lag(k, period, d)[None, :]
        cols.append(v[np.clip(idx, 0, None)] - last)
    prev = seasonal_mean(v, origins - 1, 1, period, days=7)[:, 0]
    shape = (origins.size, horizon)
    cols.append(np.broadcast_to((last[:, 0] - prev)[:, None], shape))
    cols.append(np.broadcast_to((last[:, 0] - v[np.clip(origins - 2, 0, None)])[:, None], shape))
    for j in range(2, lags + 1):  # older one-step changes: momentum that has not died out yet
        step = v[np.clip(origins - j, 0, None)] - v[np.clip(origins - j - 1, 0, None)]
        cols.append(np.broadcast_to(step[:, None], shape))
    cols.append(np.ones(shape))
    return np.stack(cols, -1)


def ridge_forecast(v: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
                   days: int = 112, lam: float = 1e-2, min_days: int = 8, lags: int = 0
                   ) -> np.ndarray:
    first = 7 * period + 2 + lags  # the earliest origin with complete features
    out = profile_forecast(v, origins, horizon, period)  # used until there is enough to fit
    day = origins // period
    fit_days = np.unique(day)
    day_start = fit_days * period
    lo_all = max(first, int(day_start.min()) - days * period)
    hi_all = int(day_start.max())
    if hi_all - lo_all < min_days * period:
        return out
    train = np.arange(lo_all, hi_all)
    x_train = _features(v, train, horizon, period, lags)
    y_train = v[np.clip(train[:, None] + np.arange(horizon)[None, :], 0, v.size - 1)] - \
        v[train - 1][:, None]
    x_now = _features(v, origins, horizon, period, lags)
    last = v[np.clip(origins - 1, 0, None)]
    nf = x_train.shape[2]
    where = np.searchsorted(fit_days, day)
    for k in range(horizon):
        xk, yk = x_train[:, k, :], y_train[:, k]
        gram = np.concatenate([np.zeros((1, nf, nf)),
                               np.cumsum(xk[:, :, None] * xk[:, None, :], 0)])
        cross = np.concatenate([np.zeros((1, nf)), np.cumsum(xk * yk[:, None], 0)])
        # samples for day D: origins s in [D*period - days*period, D*period - k) (target seen)
        hi = np.clip(day_start - k - lo_all, 0, train.size)
        lo = np.clip(day_start - days * period - lo_all, 0, train.size)
        enough = hi - lo >= min_days * period
        a = gram[hi] - gram[lo]
        b = cross[hi] - cross[lo]
        scale = lam * np.trace(a, axis1=1, axis2=2) / nf
        a = a + scale[:, None, None] * np.eye(nf)[None] + 1e-9 * np.eye(nf)[None]
        coef = np.linalg.solve(a, b[:, :, None])[:, :, 0]
        fitted = enough[where]
        pred = last + np.einsum("nf,nf->n", x_now[:, k, :], coef[where])
        out[:, k] = np.where(fitted, pred, out[:, k])
    return out


def weekend(start: float, step: float, index: np.ndarray) -> np.ndarray:
    """Whether slot ``index`` of a series starting at epoch ``start`` falls on a Saturday or
    Sunday (UTC; 1970-01-01 was a Thursday)."""
    day = np.floor((start + np.asarray(index) * step) / 86400.0).astype(np.int64)
    return (day + 3) % 7 >= 5


def daytype_profile(v: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
                    start: float, days: int = 42, half_life: float = 4.0, decay: float = 0.95
                    ) -> np.ndarray:
    """Like :func:`profile_forecast`, but each slot averages only past days of its own type
    (weekday or weekend): demand, and so the mix, differs at weekends, and a 14-day profile
    blurs the two around Friday night and Monday morning. Needs the calendar (``start``)."""
    step = 86400.0 / period

    def profile(at: np.ndarray, n: int) -> np.ndarray:
        k = np.arange(n)
        target = at[:, None] + k[None, :]
        base = target - same_slot_lag(k, period)[None, :]
        kind = weekend(start, step, target)
        total = np.zeros(target.shape)
        weight = np.zeros(target.shape)
        for d in range(days):
            idx = base - period * d
            ok = (idx >= 0) & (weekend(start, step, idx) == kind)
            w = 0.5 ** (d / half_life)
            total += np.where(ok, w * v[np.clip(idx, 0, None)], 0.0)
            weight += np.where(ok, w, 0.0)
        plain = seasonal_mean(v, at, n, period, days=14, half_life=half_life)
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), plain)

    base = profile(origins, horizon)
    last = v[np.clip(origins - 1, 0, None)]
    anomaly = np.where(origins >= 2, last - profile(origins - 1, 1)[:, 0], 0.0)
    per_slot = decay ** (24.0 / period)
    return base + anomaly[:, None] * per_slot ** (np.arange(horizon) + 1)[None, :]


class Blend:
    """flowcache's default method: the average of profile, two analog and ridge forecasts."""

    name = "blend"
    min_history_days = 28.0
    sees_future = False

    def __init__(self, *, profile_days: int = 14, half_life: float = 4.0, decay: float = 0.95,
                 analog_days: int = 28, analog_hours: tuple[int, ...] = (12, 24),
                 analog_k: tuple[int, ...] = (20, 10), ridge_days: int = 112,
                 ridge: bool = True) -> None:
        self.profile = {"days": profile_days, "half_life": half_life, "decay": decay}
        self.analogs = [{"days": analog_days, "hours": h, "k": k}
                        for h, k in zip(analog_hours, analog_k, strict=True)]
        self.ridge_days = ridge_days
        self.ridge = ridge

    def parts(self, values: np.ndarray, origins: np.ndarray, horizon: int, period: int
              ) -> dict[str, np.ndarray]:
        v = ffill(values)
        origins = np.asarray(origins, dtype=np.int64)
        parts = {"profile": profile_forecast(v, origins, horizon, period, **self.profile)}
        for spec in self.analogs:
            parts[f"analog{spec['hours']}h"] = analog_forecast(v, origins, horizon, period,
                                                               **spec)
        if self.ridge:
            parts["ridge"] = ridge_forecast(v, origins, horizon, period, days=self.ridge_days)
        return parts

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int) -> np.ndarray:
        parts = self.parts(values, origins, horizon, period)
        return sum(parts.values()) / len(parts)
