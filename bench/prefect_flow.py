"""Benchmark: flowcache's cache() option against Prefect's native INPUTS cache, in one run.

Two workloads, each run cold once and then warm ``--repeats`` times (median reported):

* a flow of 200 small cached tasks (``.map`` over 200 integers);
* a flow with one task returning 100 MB of bytes.

Variants: Prefect native (``cache_policy=INPUTS``, results persisted to Prefect's local result
storage), flowcache with its embedded default (memory + local directory: warm hits come from
memory), and flowcache with only the local directory (warm hits read and verify the frame from
disk, as a fresh process would). Prefect runs on its temporary API under a throwaway
PREFECT_HOME. Prints a table; the last line is one JSON object.

    .venv/bin/python bench/prefect_flow.py [--repeats 5] [--tasks 200] [--mb 100]
"""

from __future__ import annotations

from harness import arguments, emit, median, timed

# isort: split
import tempfile
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS

from flowcache.identity import Identity, new_key
from flowcache.store import TieredStore
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache import cache


def small_body(i: int) -> int:
    return i * 2


def big_body(mb: int) -> bytes:
    return bytes(range(256)) * (mb * 4096)


def make_flows(store: TieredStore | None, tasks: int, mb: int):
    if store is None:
        small = task(small_body, cache_policy=INPUTS, persist_result=True, name="small")
        big = task(big_body, cache_policy=INPUTS, persist_result=True, name="big")
    else:
        small = cache(keep=True, store=store)(task(small_body, name="small"))
        big = cache(keep=True, store=store)(task(big_body, name="big"))

    @flow(name="bench-small")
    def many() -> float:
        start = time.perf_counter()
        assert sum(f.result() for f in small.map(range(tasks))) == tasks * (tasks - 1)
        return time.perf_counter() - start

    @flow(name="bench-big")
    def one_big() -> float:
        start = time.perf_counter()
        assert len(big(mb)) == mb << 20
        return time.perf_counter() - start

    return many, one_big


def cold_and_warm(fn, repeats: int) -> dict[str, float]:
    """Cold and median-warm times: of the tasks inside the flow, and of the whole flow run.

    The whole run includes Prefect's fixed per-flow costs (API calls, and up to 1 s waiting
    for its heartbeat thread at exit), the same for every variant.
    """
    cold_flow, cold_tasks = timed(fn)
    runs = [timed(fn) for _ in range(repeats)]
    return {"cold_tasks_s": cold_tasks, "cold_flow_s": cold_flow,
            "warm_tasks_s": median(tasks for _, tasks in runs),
            "warm_flow_s": median(flow_s for flow_s, _ in runs)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    identity = Identity("bench", new_key())
    workdir = Path(tempfile.mkdtemp(prefix="flowcache-bench-store-"))
    variants = {
        "prefect_native": None,
        "flowcache_memory_local": TieredStore(
            [MemoryTier(max_bytes=1 << 30), ObjectTier(str(workdir / "a"))], identity=identity),
        "flowcache_local_only": TieredStore([ObjectTier(str(workdir / "b"))], identity=identity),
    }
    results: dict[str, dict[str, float]] = {}
    for name, store in variants.items():
        many, one_big = make_flows(store, args.tasks, args.mb)
        small = cold_and_warm(many, args.repeats)
        big = cold_and_warm(one_big, args.repeats)
        results[name] = {**{f"small_{k}": v for k, v in small.items()},
                         **{f"big_{k}": v for k, v in big.items()}}
    native = results["prefect_native"]
    print(f"{args.tasks} small tasks / one {args.mb} MB task; seconds; warm = median of "
          f"{args.repeats}; 'tasks' = inside the flow, 'flow' = whole flow run")
    print(f"{'variant':<24} {'small cold':>10} {'small warm':>10} {'small warm':>10} "
          f"{'big cold':>9} {'big warm':>9} {'big warm':>9} {'warm hit':>9}")
    print(f"{'':<24} {'flow':>10} {'tasks':>10} {'flow':>10} {'flow':>9} {'task':>9} "
          f"{'flow':>9} {'MB/s':>9}")
    for name, row in results.items():
        print(f"{name:<24} {row['small_cold_flow_s']:10.3f} {row['small_warm_tasks_s']:10.3f} "
              f"{row['small_warm_flow_s']:10.3f} {row['big_cold_flow_s']:9.3f} "
              f"{row['big_warm_tasks_s']:9.4f} {row['big_warm_flow_s']:9.3f} "
              f"{args.mb * 1.048576 / row['big_warm_tasks_s']:9.0f}")
    figures: dict[str, float] = {"tasks": args.tasks, "mb": args.mb, "repeats": args.repeats}
    for name, row in results.items():
        figures.update({f"{name}_{k}": round(v, 4) for k, v in row.items()})
        if name != "prefect_native":
            for scope in ("tasks", "flow"):
                figures[f"{name}_small_warm_{scope}_time_vs_native"] = round(
                    row[f"small_warm_{scope}_s"] / native[f"small_warm_{scope}_s"], 3)
            figures[f"{name}_big_warm_hit_speedup_vs_native"] = round(
                native["big_warm_tasks_s"] / row["big_warm_tasks_s"], 1)
    print()
    for name in ("flowcache_memory_local", "flowcache_local_only"):
        print(f"{name}: {args.tasks}-task warm time / native = "
              f"{figures[f'{name}_small_warm_tasks_time_vs_native']} inside the flow, "
              f"{figures[f'{name}_small_warm_flow_time_vs_native']} whole flow (goal <= 1.0); "
              f"{args.mb} MB warm hit speed-up vs native = "
              f"{figures[f'{name}_big_warm_hit_speedup_vs_native']}x (goal >= 10x)")
    emit(figures)


if __name__ == "__main__":
    main()
