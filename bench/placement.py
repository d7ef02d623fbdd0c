"""Benchmark: cache-aware placement on several hosts (tests/hosts.py: network namespaces when
run as root, else loopback addresses), with and without ``dask_cache.locality``.

Each repeat, on fresh entries, in one cluster (a scheduler host and ``--workers`` worker hosts,
each with its own node tier, sharing Redis and a moto bucket on the bridge):

* **cached graph**: ``--inputs`` inputs of ``--mb`` MB cached unevenly (``--share`` of them on
  the first worker host's node tier, the rest spread over the others; memory tiers emptied),
  then a graph loading and measuring every input: the share of cached-input bytes read from
  the local node tier, the bytes read across hosts (Redis + bucket), and the wall time, with
  the plugins enabled and with them removed;
* **nothing cached**: the same graph on inputs never cached: wall time with and without.

The order of "with" and "without" alternates between repeats. Medians of ``--repeats`` runs
(after one warm-up repeat that is not counted). Last line: one JSON object.

    .venv/bin/python bench/placement.py [--repeats 5] [--workers 2] [--inputs 24] [--mb 1]

``measure_placement(...)`` is the same, importable (bench/scale.py uses it).
"""

from __future__ import annotations

from harness import MB, arguments, emit, median

# isort: split
import itertools
import time
from typing import Any

from dask_cache.locality import disable_locality, enable_locality
from tests import placement_scenario as scenario
from tests.hosts import Hosts


def _uneven(hosts: Hosts, client: Any, seeds: list[int], share: float) -> list:
    """``share`` of the seeds on the first worker host, the rest round-robin on the others."""
    first, *others = hosts.worker_hosts
    many = round(len(seeds) * share) if others else len(seeds)
    placed = [(hosts.workers_on(client, first), seeds[:many])]
    for index, host in enumerate(others):
        placed.append((hosts.workers_on(client, host), seeds[many + index::len(others)]))
    return placed


def _cached_run(hosts: Hosts, client: Any, store: Any, seeds: list[int], nbytes: int,
                share: float, placed: bool) -> dict[str, float]:
    scenario.seed_unevenly(client, store, _uneven(hosts, client, seeds, share), nbytes,
                           wait=placed)
    read, seconds, plan = scenario.run_consumer(client, store, seeds, nbytes)
    assert len(plan.loads) == len(seeds), plan.summary()
    served = read.get("node", 0) + read.get("redis", 0) + read.get("object", 0)
    return {"node_share": read.get("node", 0) / served if served else 0.0,
            "across_bytes": read.get("redis", 0) + read.get("object", 0),
            "seconds": seconds}


def _empty_run(client: Any, store: Any, seeds: list[int], nbytes: int) -> float:
    _, seconds, plan = scenario.run_consumer(client, store, seeds, nbytes)
    assert not plan.loads, plan.summary()
    return seconds


def _block(seeds: Any, inputs: int) -> list[int]:
    """The next ``inputs`` seeds never used before (fresh entries)."""
    start = next(seeds)
    return list(range(start, start + inputs))


def measure_placement(*, repeats: int = 5, workers: int = 2, inputs: int = 24,
                      nbytes: int = MB, share: float = 0.75, threads: int = 2,
                      mode: str | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); return its figures."""
    seeds = itertools.count(1_000_000 + (time.time_ns() // 1000) % 1_000_000 * 100, inputs)
    runs: dict[str, list[Any]] = {name: [] for name in (
        "with", "without", "empty_with", "empty_without")}
    with Hosts(workers=workers, threads=threads, mode=mode) as hosts:
        client = hosts.client()
        store = hosts.store_config().build()
        try:
            for repeat in range(repeats + 1):
                order = (True, False) if repeat % 2 == 0 else (False, True)
                for placed in order:
                    if placed:
                        enable_locality(client)
                    else:
                        disable_locality(client)
                    label = "with" if placed else "without"
                    cached = _cached_run(hosts, client, store, _block(seeds, inputs), nbytes,
                                         share, placed)
                    empty = _empty_run(client, store, _block(seeds, inputs), nbytes)
                    if repeat > 0:  # the first repeat warms the cluster up
                        runs[label].append(cached)
                        runs[f"empty_{label}"].append(empty)
        finally:
            store.close()
        mode_used, reason = hosts.mode, hosts.fallback_reason

    def middle(label: str, figure: str) -> float:
        return median(run[figure] for run in runs[label])

    wall_with, wall_without = middle("with", "seconds"), middle("without", "seconds")
    empty_with, empty_without = median(runs["empty_with"]), median(runs["empty_without"])
    return {
        "mode": mode_used, "fallback_reason": reason, "repeats": repeats, "workers": workers,
        "threads": threads, "inputs": inputs, "input_mb": round(nbytes / MB, 3),
        "share_on_first_host": share,
        "node_share_with": round(middle("with", "node_share"), 3),
        "node_share_without": round(middle("without", "node_share"), 3),
        "across_mb_with": round(middle("with", "across_bytes") / MB, 2),
        "across_mb_without": round(middle("without", "across_bytes") / MB, 2),
        "cached_seconds_with": round(wall_with, 3),
        "cached_seconds_without": round(wall_without, 3),
        "cached_time_ratio": round(wall_with / wall_without, 3),
        "empty_seconds_with": round(empty_with, 3),
        "empty_seconds_without": round(empty_without, 3),
        "empty_time_ratio": round(empty_with / empty_without, 3),
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (default 2)")
    parser.add_argument("--inputs", type=int, default=24, help="cached inputs (default 24)")
    parser.add_argument("--mb", type=float, default=1.0, help="MB per input (default 1)")
    parser.add_argument("--share", type=float, default=0.75,
                        help="share of the inputs on the first worker host (default 0.75)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--mode", choices=("netns", "loopback"), default=None,
                        help="force the harness's mode (default: netns when possible)")
    options = parser.parse_args()
    figures = measure_placement(repeats=options.repeats, workers=options.workers,
                                inputs=options.inputs, nbytes=int(options.mb * MB),
                                share=options.share, threads=options.threads,
                                mode=options.mode)
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    emit(figures)


if __name__ == "__main__":
    main()
