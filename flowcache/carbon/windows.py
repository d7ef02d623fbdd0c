"""Execution windows: where a job of a given length can start, and its mean intensity there.

The GSF Carbon Aware SDK's semantics: the mean intensity of a window is time-weighted over the
slots it overlaps (a 90-minute job starting at 10:30 weighs the 10:00 hour by 30 minutes); a
window must fit inside the data; ties go to the earliest start. The mean is piecewise linear in
the start time, with breaks where the window's start or end crosses a slot boundary, so its
minimum over an interval is attained at one of those breakpoints or at the interval's ends:
:func:`candidate_starts` lists exactly those, which makes the search exact for any duration and
resolution. :class:`WindowTable` answers "best start in [lo, hi]" for thousands of jobs at once
with a sparse table (O(1) per query after an O(n log n) build).
"""

from __future__ import annotations

import numpy as np

from flowcache.carbon.series import IntensitySeries

EPS = 1e-6


def candidate_starts(series: IntensitySeries, duration: float, lo: float, hi: float,
                     extra: tuple[float, ...] = ()) -> np.ndarray:
    """Sorted starts in ``[lo, hi]`` whose window ``[s, s + duration)`` fits in the series and
    that can be optimal: ``lo``, ``hi``, every start or end on a slot boundary, and ``extra``
    points (where a constraint's limit cuts the interval)."""
    lo = max(lo, series.start)
    hi = min(hi, series.end - duration)
    if hi < lo - EPS:
        return np.empty(0)
    edges = series.start + np.arange(len(series) + 1) * series.resolution
    points = np.concatenate([[lo, hi], edges, edges - duration, np.asarray(extra, float)])
    points = points[(points >= lo - EPS) & (points <= hi + EPS)]
    return np.unique(np.round(points, 6))


def cheapest_slots(series: IntensitySeries, duration: float, lo: float, hi: float
                   ) -> tuple[list[tuple[float, float]], float]:
    """For an interruptible job: the cheapest pieces of ``[lo, hi)`` totalling ``duration``.

    Returns (intervals, mean intensity); ties go to earlier slots; the last piece taken may be
    partial (its beginning is used). ``([], nan)`` when the data cannot hold the job.
    """
    lo = max(lo, series.start)
    hi = min(hi, series.end)
    if hi - lo < duration - EPS:
        return [], float("nan")
    first = series.index_of(lo)
    last = int(np.ceil((hi - series.start) / series.resolution - 1e-9))
    idx = np.arange(first, last)
    starts = np.maximum(series.start + idx * series.resolution, lo)
    ends = np.minimum(series.start + (idx + 1) * series.resolution, hi)
    values = series.values[idx]
    order = np.lexsort((starts, np.where(np.isnan(values), np.inf, values)))
    need = duration
    taken: list[tuple[float, float]] = []
    total = 0.0
    for j in order:
        if need <= EPS:
            break
        if np.isnan(values[j]):
            return [], float("nan")
        length = min(ends[j] - starts[j], need)
        taken.append((float(starts[j]), float(starts[j] + length)))
        total += values[j] * length
        need -= length
    if need > EPS:
        return [], float("nan")
    taken.sort()
    merged: list[tuple[float, float]] = []
    for a, b in taken:
        if merged and abs(merged[-1][1] - a) < EPS:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged, total / duration


class WindowTable:
    """Mean intensity of every candidate window of one duration, with range-argmin queries."""

    def __init__(self, series: IntensitySeries, duration: float, lo: float, hi: float) -> None:
        self.series = series
        self.duration = duration
        self.starts = candidate_starts(series, duration, lo, hi)
        means = series.mean(self.starts, self.starts + duration) if self.starts.size else \
            np.empty(0)
        self.means = np.where(np.isnan(means), np.inf, means)
        self._build(self.means)

    def _build(self, score: np.ndarray) -> None:
        self.score = score
        levels = [np.arange(score.size)]
        width = 1
        while 2 * width <= score.size:
            prev = levels[-1]
            left, right = prev[:-width], prev[width:]
            # ties keep the left (earlier) index
            levels.append(np.where(score[right] < score[left], right, left))
            width *= 2
        self.levels = levels

    def block(self, blocked: np.ndarray) -> None:
        """Make blocked candidates unusable (e.g. their slots are at capacity)."""
        self._build(np.where(blocked, np.inf, self.means))

    def best(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each pair, the earliest candidate index with the lowest score in ``[lo, hi]``
        (by start time) and that score; index -1 and inf when none is usable."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        if not self.starts.size:
            return np.full(lo.shape, -1), np.full(lo.shape, np.inf)
        a = np.searchsorted(self.starts, lo - EPS, side="left")
        b = np.searchsorted(self.starts, hi + EPS, side="right") - 1
        empty = b < a
        a_safe = np.where(empty, 0, a)
        b_safe = np.where(empty, 0, b)
        span = b_safe - a_safe + 1
        level = np.floor(np.log2(np.maximum(span, 1))).astype(np.int64)
        result = np.empty(lo.shape, dtype=np.int64)
        for lv in np.unique(level):
            sel = level == lv
            table = self.levels[lv]
            left = table[a_safe[sel]]
            right = table[b_safe[sel] - (1 << lv) + 1]
            result[sel] = np.where(self.score[right] < self.score[left], right, left)
        score = self.score[result]
        result = np.where(empty | ~np.isfinite(score), -1, result)
        return result, np.where(result >= 0, score, np.inf)
