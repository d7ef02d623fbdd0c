"""Benchmark: 200 carbon-aware tasks with staggered deadlines through the CarbonAwareTaskRunner.

Grid time is compressed (``--speed`` grid seconds per wall second, default 10 minutes per
second) and starts on 2022-06-01 18:00 UTC so the shipped Electricity Maps data serves as the
forecast and the history. Each task runs 30 minutes (planned), draws 100 W, and must finish by a
deadline 2 to 12 hours after its submission (``max_delay`` staggered from 1.5 to 11.5 h:
deadlines relative to the submission, since grid time moves on while 200 tasks are submitted);
capacity is ``--capacity`` tasks per region per hour.

Measured in one run: whether all tasks completed, how many missed their deadline (actual end in
grid time after the deadline), how the planner spread them over hours, and the runner's own
overhead per submission: the time ``submit()`` takes through the carbon-aware runner minus the
time the same submissions take through a plain ThreadPoolTaskRunner (baseline in the same run),
and the runner's internal time (planning, forecasts, bookkeeping). Last line: one JSON object.

    .venv/bin/python bench/carbon_runner.py [--tasks 200] [--speed 14400] [--capacity 30]
"""

from __future__ import annotations

from harness import arguments, emit, median

# isort: split
import statistics
import tempfile
import time
from collections import Counter

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flowcache.carbon.clocks import CompressedClock
from flowcache.carbon.timestamps import to_epoch
from flowcache.identity import Identity, new_key
from flowcache.store import TieredStore
from flowcache.tiers.objects import ObjectTier
from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner

ORIGIN = to_epoch("2022-06-01T18:00:00Z")
HOUR = 3600.0


def work(i: int) -> int:
    return i


def run_flow(task_runner, tasks) -> tuple[list[float], float]:
    submit_times: list[float] = []

    @flow(name="bench-carbon-runner", task_runner=task_runner)
    def many() -> int:
        futures = []
        for i, marked in enumerate(tasks):
            start = time.perf_counter()
            futures.append(marked.submit(i))
            submit_times.append(time.perf_counter() - start)
        return sum(f.result() for f in futures)

    started = time.perf_counter()
    assert many() == sum(range(len(tasks)))
    return submit_times, time.perf_counter() - started


def main() -> None:
    parser = arguments(__doc__, repeats=None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--capacity", type=int, default=30)
    args = parser.parse_args()
    deadline_hours = [2 + i % 11 for i in range(args.tasks)]
    plain = [task(work, name=f"plain{i}") for i in range(args.tasks)]

    baseline_submits, baseline_wall = run_flow(ThreadPoolTaskRunner(max_workers=8), plain)

    clock = CompressedClock(ORIGIN, speed=args.speed)
    store = TieredStore([ObjectTier(tempfile.mkdtemp())], identity=Identity("bench", new_key()))
    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=8), home="DE",
                                   provider="files", clock=clock, capacity=args.capacity,
                                   store=store, placeholders=True)
    marked = [carbon(duration="30m", power=100.0,
                     max_delay=hours * HOUR - 1800)(task(work, name=f"job{i}"))
              for i, hours in enumerate(deadline_hours)]
    carbon_submits, carbon_wall = run_flow(runner, marked)
    active = runner._children[-1]
    runs = active.advisor.placements
    completed = sum(r.actual_end is not None for r in runs)
    misses = sum(1 for r, hours in zip(runs, deadline_hours, strict=True)
                 if r.actual_end is None or r.actual_end > r.submitted + hours * HOUR)
    deferred = sum(r.decision.delay > 60 for r in runs)
    per_hour = Counter(int((r.decision.start - ORIGIN) // HOUR) for r in runs
                       if r.decision.planned)
    overhead = [c - b for c, b in zip(sorted(carbon_submits), sorted(baseline_submits),
                                      strict=True)]
    figures = {
        "tasks": args.tasks, "completed": completed, "deadline_misses": misses,
        "deferred": deferred, "capacity_per_hour": args.capacity,
        "max_tasks_starting_in_one_hour": max(per_hour.values()),
        "hours_used": len(per_hour),
        "submit_ms_median_baseline": round(1000 * median(baseline_submits), 3),
        "submit_ms_median_carbon": round(1000 * median(carbon_submits), 3),
        "overhead_ms_median": round(1000 * median(overhead), 3),
        "overhead_ms_mean": round(1000 * statistics.fmean(overhead), 3),
        "runner_internal_ms_median": round(1000 * median(active.submit_seconds), 3),
        "runner_internal_ms_mean": round(1000 * statistics.fmean(active.submit_seconds), 3),
        "flow_wall_s_baseline": round(baseline_wall, 2),
        "flow_wall_s_carbon": round(carbon_wall, 2),
        "grid_hours_simulated": round((clock.now() - ORIGIN) / HOUR, 1),
        "expected_saving_pct": round(
            100 * sum(r.decision.now_home_g - r.decision.expected_g for r in runs)
            / max(1e-9, sum(r.decision.now_home_g for r in runs)), 2),
        "mean_actual_grid_minutes": round(statistics.fmean(
            (r.actual_end - r.actual_start) / 60 for r in runs if r.actual_end), 1),
        "realised_saving_pct": round(
            100 * (1 - sum(r.realised_g or 0 for r in active.records)
                   / max(1e-9, sum(r.now_home_g or 0 for r in active.records))), 2),
    }
    print(f"{args.tasks} carbon-aware tasks, deadlines 2-12 h, capacity {args.capacity}/h")
    print(f"  completed {completed}, deadline misses {misses}, deferred {deferred}, "
          f"spread over {len(per_hour)} hours (max {max(per_hour.values())} starting in one)")
    print(f"  start hour histogram: {dict(sorted(per_hour.items()))}")
    print(f"  submit() median: {figures['submit_ms_median_baseline']} ms plain thread pool, "
          f"{figures['submit_ms_median_carbon']} ms carbon-aware; runner overhead per task "
          f"median {figures['overhead_ms_median']} ms, mean {figures['overhead_ms_mean']} ms "
          f"(goal < 5 ms)")
    print(f"  saving vs running now at home: expected {figures['expected_saving_pct']} %, "
          f"realised {figures['realised_saving_pct']} % (tasks took "
          f"{figures['mean_actual_grid_minutes']} grid minutes on average, planned 30)")
    emit(figures)


if __name__ == "__main__":
    main()
