"""Per-run cache statistics: what a flow run wrote, hit and missed, and the time hits saved.

Engine glue records each cached call here as it happens; at the end of the run the totals go to
a log line and a report (a Prefect artifact, a Dask summary). "Time saved" by a hit is the
compute time recorded when the entry was written, minus what the hit itself took.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from flowcache.units import format_size


@dataclass
class RunStats:
    run_id: str
    entries_written: int = 0
    bytes_written: int = 0
    hits: int = 0
    misses: int = 0
    seconds_saved: float = 0.0
    seconds_computing: float = 0.0
    by_task: dict[str, dict[str, float]] = field(default_factory=dict)
    #: when this process first recorded the run (wall clock)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record_hit(self, task: str, *, compute_seconds: float, hit_seconds: float) -> None:
        saved = max(0.0, compute_seconds - hit_seconds)
        with self._lock:
            self.hits += 1
            self.seconds_saved += saved
            row = self._row(task)
            row["hits"] += 1
            row["seconds_saved"] += saved

    def record_miss(self, task: str, *, compute_seconds: float, nbytes: int) -> None:
        with self._lock:
            self.misses += 1
            self.entries_written += 1
            self.bytes_written += nbytes
            self.seconds_computing += compute_seconds
            row = self._row(task)
            row["misses"] += 1
            row["bytes_written"] += nbytes

    def _row(self, task: str) -> dict[str, float]:
        return self.by_task.setdefault(task, {"hits": 0, "misses": 0, "bytes_written": 0,
                                              "seconds_saved": 0.0})

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self)

    def summary(self) -> str:
        return (f"flowcache: {self.hits} hits, {self.misses} misses, "
                f"{self.entries_written} entries written ({format_size(self.bytes_written)}), "
                f"{self.seconds_saved:.2f}s saved by hits")


class RunStatsRegistry:
    """Statistics of the runs active in this process, by run id (thread-safe)."""

    def __init__(self) -> None:
        self._runs: dict[str, RunStats] = {}
        self._lock = threading.Lock()

    def for_run(self, run_id: str) -> RunStats:
        with self._lock:
            stats = self._runs.get(run_id)
            if stats is None:
                stats = self._runs[run_id] = RunStats(run_id)
            return stats

    def pop(self, run_id: str) -> RunStats:
        with self._lock:
            return self._runs.pop(run_id, None) or RunStats(run_id)

    def peek(self, run_id: str) -> RunStats | None:
        with self._lock:
            return self._runs.get(run_id)


RUN_STATS = RunStatsRegistry()
