"""Ensemble: flowcache's default forecasting method, several simple forecasters combined by how
well each has recently *decided*, not how well it has fitted.

Why: in the evaluation (docs/carbon-eval.md) every single method built from a zone's own past
captures about the same share of the perfect-foresight saving, their errors differ, and the
deferral decision (the argmin over the next hours) is sensitive to noise, so averaging diverse
forecasters helps more than refining one. The members (all from :mod:`.blend` or
:mod:`.seasonal`):

* ``profile``: recency-weighted 14-day daily profile plus a decaying current anomaly;
* ``analog12h`` / ``analog24h``: continuations of the past days that looked most like now;
* ``ridge``: per-horizon ridge regression on seasonal lags, refitted daily;
* ``ridge_lags``: the same with the last five one-step changes added (momentum);
* ``daytype``: the profile, with weekdays and weekends averaged apart (needs the calendar:
  left out when the caller gives no ``start``);
* ``mean7``: Caribou's 7-day hour-of-day mean.

Weighting ``"recent"`` scores each member on the deferral decisions it would have made over the
last ``window_days`` (a 1-slot job allowed ``score_delay`` slots, as in the evaluation), using
only decisions whose outcome was known before the origin, and weights members by
``softmax(eta x share of the oracle's saving captured)``; ``"equal"`` averages them.

Before any member sees the history, glitches are clipped (``spike_mads``, see
:func:`~.seasonal.clip_spikes`): one bad hour from a provider should not become tomorrow's
forecast. It changes 1.3 % of the shipped CA-QC hours and under 0.4 % elsewhere.

Defaults are what ``bench/carbon_eval.py --tune`` chose on January-June 2022 (capture at an
8 h delay, mean of 8 zones and of the plan-once and re-plan protocols): the first five members
(``ridge_lags`` and ``mean7`` did not help), the ridge on 56 days, recent weighting over 28 days
with eta 20, and clipping at 6 robust deviations (5 and 6 tied; a second stage of the
tune). Many configurations are within a point of it (the grid's spread is mostly noise);
the weighting helps most where members disagree most (CA-QC). A live forecast therefore wants
about 93 days of history (:attr:`history_days`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowcache.carbon.forecasting.blend import (
    analog_forecast,
    daytype_profile,
    profile_forecast,
    ridge_forecast,
)
from flowcache.carbon.forecasting.seasonal import clip_spikes, ffill, seasonal_mean

ALL_MEMBERS = ("profile", "analog12h", "analog24h", "ridge", "ridge_lags", "daytype", "mean7")
#: chosen by ``bench/carbon_eval.py --tune`` on January-June 2022 (with the defaults below)
DEFAULT_MEMBERS = ("profile", "analog12h", "analog24h", "ridge", "daytype")
DAY = 86400.0


def member_forecast(name: str, v: np.ndarray, origins: np.ndarray, horizon: int, period: int,
                    *, start: float | None, ridge_days: int) -> np.ndarray | None:
    """One member's forecast matrix (``None`` when it cannot run, e.g. no calendar)."""
    if name == "profile":
        return profile_forecast(v, origins, horizon, period)
    if name.startswith("analog"):
        hours = int(name[len("analog"):-1])
        return analog_forecast(v, origins, horizon, period, hours=hours,
                               k=20 if hours <= 12 else 10)
    if name == "ridge":
        return ridge_forecast(v, origins, horizon, period, days=ridge_days)
    if name == "ridge_lags":
        return ridge_forecast(v, origins, horizon, period, days=ridge_days, lags=6)
    if name == "daytype":
        if start is None:
            return None
        return daytype_profile(v, origins, horizon, period, start=start)
    if name == "mean7":
        return seasonal_mean(v, origins, horizon, period, days=7)
    raise ValueError(f"unknown ensemble member {name!r}; choose from {ALL_MEMBERS}")


def decision_scores(v: np.ndarray, scored: np.ndarray, parts: Sequence[np.ndarray],
                    origins: np.ndarray, delay: int, window: int, min_count: int
                    ) -> np.ndarray | None:
    """Each member's recent share of the oracle's saving, for each origin: (origins, members).

    ``scored`` are sorted origins with member forecasts ``parts`` (rows aligned). The decision at
    ``s`` is known by ``origin`` only if its whole window has been observed, ``s + delay <
    origin``; decisions from the ``window`` slots before that count. Rows with fewer than
    ``min_count`` such decisions, or no possible saving, are NaN."""
    n = scored.size
    if n == 0:
        return None
    truth = v[np.clip(scored[:, None] + np.arange(delay + 1)[None, :], 0, v.size - 1)]
    ok_rows = scored + delay < v.size
    now = truth[:, 0]
    best = np.where(ok_rows, now - truth.min(1), 0.0)
    gains = [np.where(ok_rows, now - truth[np.arange(n), p[:, : delay + 1].argmin(1)], 0.0)
             for p in parts]
    cum = np.concatenate([np.zeros((1, len(parts))), np.cumsum(np.stack(gains, 1), 0)])
    cum_best = np.concatenate([[0.0], np.cumsum(best)])
    hi = np.searchsorted(scored, origins - delay, side="left")          # s <= origin - delay - 1
    lo = np.searchsorted(scored, origins - delay - window, side="left")
    possible = cum_best[hi] - cum_best[lo]
    score = (cum[hi] - cum[lo]) / np.where(possible > 0, possible, 1.0)[:, None]
    bad = (hi - lo < min_count) | ~(possible > 0)
    score[bad] = np.nan
    return score


class Ensemble:
    """flowcache's default method: members weighted by their recent deferral decisions."""

    name = "ensemble"
    #: with less history a live forecast falls back to the hour-of-day mean
    min_history_days = 28.0
    sees_future = False
    uses_calendar = True

    def __init__(self, *, members: Sequence[str] = DEFAULT_MEMBERS, ridge_days: int = 56,
                 weighting: str = "recent", window_days: int = 28, eta: float = 20.0,
                 score_delay: int = 8, spike_mads: float | None = 6.0) -> None:
        unknown = set(members) - set(ALL_MEMBERS)
        if unknown or not members:
            raise ValueError(f"ensemble members must be some of {ALL_MEMBERS}, got {members}")
        if weighting not in ("equal", "recent"):
            raise ValueError(f"weighting must be 'equal' or 'recent', got {weighting!r}")
        if spike_mads is not None and not spike_mads > 0:
            raise ValueError(f"spike_mads must be positive or None, got {spike_mads!r}")
        self.members = tuple(members)
        self.ridge_days = ridge_days
        self.weighting = weighting
        self.window_days = window_days
        self.eta = eta
        self.score_delay = score_delay
        self.spike_mads = spike_mads

    @property
    def history_days(self) -> float:
        """Days of history a live forecast should be given: the ridge's fitting window plus a
        week of features, plus the scoring window."""
        return float(self.ridge_days + 8 + (self.window_days + 1
                                            if self.weighting == "recent" else 0))

    def scored_origins(self, origins: np.ndarray, period: int) -> np.ndarray:
        """The origins the members must also forecast so ``origins`` can be weighted."""
        if self.weighting == "equal":
            return np.unique(origins)
        back = self.window_days * period + self.score_delay + 1
        if origins.size and origins.max() - origins.min() <= 4 * back:
            lo = max(0, int(origins.min()) - back)
            return np.arange(lo, int(origins.max()) + 1)
        extra = (origins[:, None] - np.arange(back + 1)[None, :]).ravel()
        return np.unique(np.r_[origins, extra[extra >= 0]])

    def clean(self, values: np.ndarray, period: int) -> np.ndarray:
        """The history the members see: gaps forward-filled, glitches clipped
        (:func:`~flowcache.carbon.forecasting.seasonal.clip_spikes`, unless ``spike_mads`` is None).
        :meth:`parts` and :meth:`combine` expect values cleaned by this."""
        v = ffill(values)
        return v if self.spike_mads is None else clip_spikes(v, period, mads=self.spike_mads)

    def parts(self, values: np.ndarray, origins: np.ndarray, horizon: int, period: int, *,
              start: float | None = None) -> dict[str, np.ndarray]:
        """Each runnable member's (origins x horizon) forecast."""
        v = ffill(values)
        origins = np.asarray(origins, dtype=np.int64)
        out = {}
        for name in self.members:
            f = member_forecast(name, v, origins, horizon, period, start=start,
                                ridge_days=self.ridge_days)
            if f is not None:
                out[name] = f
        return out

    def combine(self, values: np.ndarray, scored: np.ndarray, parts: dict[str, np.ndarray],
                origins: np.ndarray, period: int) -> np.ndarray:
        """Weight the members' forecasts (made at ``scored``) into forecasts at ``origins``."""
        v = ffill(values)
        rows = np.searchsorted(scored, origins)
        stack = np.stack([p[rows] for p in parts.values()])             # (members, n, horizon)
        if self.weighting == "equal" or len(parts) == 1:
            return stack.mean(0)
        score = decision_scores(v, scored, list(parts.values()), origins, self.score_delay,
                                self.window_days * period, min_count=period)
        if score is None:
            return stack.mean(0)
        top = np.nanmax(np.where(np.isnan(score), -np.inf, score), 1, keepdims=True)
        weights = np.exp(self.eta * (score - top))
        weights = np.where(np.isnan(weights), 1.0, weights)
        weights /= weights.sum(1, keepdims=True)
        return np.einsum("nm,mnk->nk", weights, stack)

    def predict_block(self, values: np.ndarray, origins: np.ndarray, horizon: int,
                      period: int, *, start: float | None = None) -> np.ndarray:
        origins = np.asarray(origins, dtype=np.int64)
        scored = self.scored_origins(origins, period)
        width = max(horizon, self.score_delay + 1)
        v = self.clean(values, period)
        parts = self.parts(v, scored, width, period, start=start)
        return self.combine(v, scored, parts, origins, period)[:, :horizon]
