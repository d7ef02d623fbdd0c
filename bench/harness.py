"""The benchmarks' shared harness: a quiet environment, timing with medians, the JSON last line.

Import it first in a benchmark (before Prefect, gcsfs or boto3 are): it sets dummy cloud
credentials, turns off gcsfs's gRPC bucket probe (60 s per bucket against an emulator),
gives Prefect a throwaway home with its telemetry off, and puts the repository root on
``sys.path`` so benchmarks start servers with the tests' own ``tests/servers.py`` (redis-server,
moto, the GCS emulator, each on a free loopback port).

The machines are small and shared: every figure is a median of ``--repeats`` runs, compared
with a baseline measured in the same run, and the last line a benchmark prints is one JSON
object (what docs/benchmarks.md records).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowcache-bench-prefect-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def arguments(doc: str | None, repeats: int | None = 5) -> argparse.ArgumentParser:
    """A parser described by the benchmark's docstring, with ``--repeats`` (unless None)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats,
                            help=f"runs per figure; the median is reported (default {repeats})")
    return parser


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, value)`` of one call."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_seconds(fn: Callable[[], object], repeats: int,
                   setup: Callable[[], object] | None = None) -> float:
    """The median time of ``repeats`` calls of ``fn`` (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        times.append(timed(fn)[0])
    return statistics.median(times)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def emit(figures: Mapping[str, Any]) -> None:
    """Print the benchmark's figures as its last line: one JSON object."""
    print(json.dumps(dict(figures)))
