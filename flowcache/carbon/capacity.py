"""Region capacity: how many planned jobs each region may run in each slot of time.

Without a limit, deferred work piles into the single cleanest hour. A job occupies every slot
(default one hour) its run overlaps; a region's limit counts jobs per slot. One ledger is kept
across decisions (the runner's advisor holds one per flow), so jobs submitted later respect
earlier reservations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np


class CapacityLedger:
    """Jobs planned per region and capacity slot, against per-region limits."""

    def __init__(self, limits: int | Mapping[str, int] | None, slot: float = 3600.0) -> None:
        self.default = limits if isinstance(limits, int) else None
        self.limits = dict(limits) if isinstance(limits, Mapping) else {}
        self.slot = float(slot)
        self.counts: dict[str, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))

    def limit(self, region: str) -> int | None:
        return self.limits.get(region, self.default)

    def slots(self, start: float, end: float) -> range:
        first = int(np.floor(start / self.slot + 1e-9))
        last = int(np.ceil(end / self.slot - 1e-9))
        return range(first, max(first + 1, last))

    def fits(self, region: str, intervals: Sequence[tuple[float, float]]) -> bool:
        cap = self.limit(region)
        if cap is None:
            return True
        used = self.counts[region]
        return all(used[s] < cap for a, b in intervals for s in self.slots(a, b))

    def reserve(self, region: str, intervals: Sequence[tuple[float, float]]) -> None:
        for a, b in intervals:
            for s in self.slots(a, b):
                self.counts[region][s] += 1

    def blocked(self, region: str, starts: np.ndarray, duration: float) -> np.ndarray:
        """Which starts would overlap a full slot (vectorised)."""
        starts = np.asarray(starts, dtype=np.float64)
        cap = self.limit(region)
        if cap is None or not self.counts[region]:
            return np.zeros(starts.shape, bool)
        full = np.array(sorted(s for s, c in self.counts[region].items() if c >= cap))
        if not full.size:
            return np.zeros(starts.shape, bool)
        first = np.floor(starts / self.slot + 1e-9)
        last = np.maximum(first, np.ceil((starts + duration) / self.slot - 1e-9) - 1)
        return np.searchsorted(full, last, "right") - np.searchsorted(full, first, "left") > 0
