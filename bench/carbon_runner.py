"""Benchmark: 200 carbon-aware tasks with staggered deadlines through the CarbonAwareTaskRunner.

Grid time is compressed (``--speed`` grid seconds per wall second, default 10 minutes per
second) and starts on 2022-06-01 18:00 UTC so the shipped Electricity Maps data serves as the
forecast and the history. Each task runs 30 minutes (planned), draws 100 W, and must finish by a
deadline 2 to 12 hours after its submission (``max_delay`` staggered from 1.5 to 11.5 h:
deadlines relative to the submission, since grid time moves on while 200 tasks are submitted);
capacity is ``--capacity`` tasks per region per hour.

A second variant (``--hang-tasks``, default 20) runs carbon-aware tasks against a provider
that never answers, next to as many plain tasks: the flow's extra wall time over the same plain
tasks alone is reported, with the per-flow decision budget (``--budget``, default
FLOWCACHE_CARBON_BUDGET's 5 s) that bounds it, and when the plain tasks started.

Measured in one run: whether all tasks completed, how many missed their deadline (actual end in
grid time after the deadline), how the planner spread them over hours, and the runner's own
overhead per submission: the time ``submit()`` takes through the carbon-aware runner minus the
time the same submissions take through a plain ThreadPoolTaskRunner (baseline in the same run),
and the runner's internal time (planning, forecasts, bookkeeping). Last line: one JSON object.

    .venv/bin/python bench/carbon_runner.py [--tasks 200] [--speed 14400] [--capacity 30]
                                            [--hang-tasks 20] [--budget 5]
                                            [--risk-aware true|false|0.05]
"""

from __future__ import annotations

from harness import arguments, emit, median

# isort: split
import statistics
import tempfile
import threading
import time
from collections import Counter

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flowcache.carbon.clocks import CompressedClock
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ProviderUnavailable
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


class NeverAnswers:
    """A carbon API that hangs (until its flow ends)."""

    name = "hanging"
    signal = "average"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def forecast(self, region, start, end):
        self.calls += 1
        self.release.wait()
        raise ProviderUnavailable(self.name, "released at the end of the benchmark")

    history = forecast


def hanging_variant(count: int, budget: float, store: TieredStore, repeats: int = 3) -> dict:
    """Plain tasks alone, then the same plain tasks after ``count`` carbon-aware ones whose
    provider never answers, alternately ``repeats`` times: the flows' extra wall time, and
    when the plain tasks started after the flow's body began (medians)."""
    walls: dict[str, list[float]] = {"alone": [], "hanging": []}
    starts: dict[str, list[float]] = {"alone": [], "hanging": []}
    calls = []
    for repeat in range(repeats):
        for label in ("alone", "hanging"):
            provider = NeverAnswers()
            runner = ThreadPoolTaskRunner(max_workers=8) if label == "alone" else \
                CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=8), home="DE",
                                      provider=provider, store=store, decision_budget=budget,
                                      placeholders=False)
            carbon_tasks = [] if label == "alone" else [
                carbon(duration="30m", power=100.0, max_delay=8 * HOUR)(
                    task(work, name=f"hang{repeat}-{i}")) for i in range(count)]
            body: list[float] = []
            started: list[float] = []

            def plain(i: int, started=started) -> int:
                started.append(time.perf_counter())
                return i

            plain_tasks = [task(plain, name=f"plain-{label}{repeat}-{i}") for i in range(count)]

            @flow(name=f"bench-carbon-hang-{label}", task_runner=runner)
            def mixed(carbon_tasks=carbon_tasks, plain_tasks=plain_tasks, body=body) -> int:
                body.append(time.perf_counter())
                futures = [t.submit(i) for i, t in enumerate(carbon_tasks)]
                futures += [t.submit(i) for i, t in enumerate(plain_tasks)]
                return sum(f.result() for f in futures)

            began = time.perf_counter()
            try:
                mixed()
            finally:
                provider.release.set()
            walls[label].append(time.perf_counter() - began)
            starts[label].append(median([t - body[0] for t in started]))
            if label == "hanging":
                calls.append(provider.calls)
    wall = {label: median(values) for label, values in walls.items()}
    return {"hang_tasks": count, "hang_budget_s": budget, "hang_repeats": repeats,
            "hang_provider_calls_max": max(calls),
            "hang_flow_wall_s_plain_only": round(wall["alone"], 2),
            "hang_flow_wall_s_with_hanging_provider": round(wall["hanging"], 2),
            "hang_extra_wall_s": round(wall["hanging"] - wall["alone"], 2),
            "hang_plain_start_s_median_plain_only": round(median(starts["alone"]), 3),
            "hang_plain_start_s_median_with_hanging": round(median(starts["hanging"]), 3)}


def main() -> None:
    parser = arguments(__doc__, repeats=None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--capacity", type=int, default=30)
    parser.add_argument("--hang-tasks", type=int, default=20)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--risk-aware", default="true",
                        help="true (the default tolerance), false, or a tolerated chance")
    args = parser.parse_args()
    risk = {"true": True, "false": False}.get(args.risk_aware.lower()) \
        if args.risk_aware.lower() in ("true", "false") else float(args.risk_aware)
    deadline_hours = [2 + i % 11 for i in range(args.tasks)]
    plain = [task(work, name=f"plain{i}") for i in range(args.tasks)]

    baseline_submits, baseline_wall = run_flow(ThreadPoolTaskRunner(max_workers=8), plain)

    clock = CompressedClock(ORIGIN, speed=args.speed)
    store = TieredStore([ObjectTier(tempfile.mkdtemp())], identity=Identity("bench", new_key()))
    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=8), home="DE",
                                   provider="files", clock=clock, capacity=args.capacity,
                                   store=store, placeholders=True, risk_aware=risk)
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
        "tasks": args.tasks, "risk_aware": risk, "completed": completed,
        "deadline_misses": misses,
        "deferred": deferred, "capacity_per_hour": args.capacity,
        "max_tasks_starting_in_one_hour": max(per_hour.values()),
        "hours_used": len(per_hour),
        "submit_ms_median_baseline": round(1000 * median(baseline_submits), 3),
        "submit_ms_median_carbon": round(1000 * median(carbon_submits), 3),
        "overhead_ms_median": round(1000 * median(overhead), 3),
        "overhead_ms_mean": round(1000 * statistics.fmean(overhead), 3),
        "runner_internal_ms_median": round(1000 * median(active.submit_seconds), 3),
        "runner_internal_ms_mean": round(1000 * statistics.fmean(active.submit_seconds), 3),
        "decision_ms_median": round(1000 * median(active.decision_seconds), 3),
        "decision_ms_mean": round(1000 * statistics.fmean(active.decision_seconds), 3),
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
    print(f"  decisions (on the runner's decision thread, forecasts included): median "
          f"{figures['decision_ms_median']} ms, mean {figures['decision_ms_mean']} ms")
    print(f"  saving vs running now at home: expected {figures['expected_saving_pct']} %, "
          f"realised {figures['realised_saving_pct']} % (tasks took "
          f"{figures['mean_actual_grid_minutes']} grid minutes on average, planned 30)")
    if args.hang_tasks:
        hang = hanging_variant(args.hang_tasks, args.budget, store)
        figures.update(hang)
        print(f"provider that never answers, {args.hang_tasks} carbon-aware + {args.hang_tasks} "
              f"plain tasks: flow {hang['hang_flow_wall_s_with_hanging_provider']} s vs "
              f"{hang['hang_flow_wall_s_plain_only']} s plain only: +"
              f"{hang['hang_extra_wall_s']} s (budget {args.budget:g} s; provider asked at most "
              f"{hang['hang_provider_calls_max']} time(s) per flow); plain tasks started "
              f"{hang['hang_plain_start_s_median_with_hanging']} s vs "
              f"{hang['hang_plain_start_s_median_plain_only']} s after the flow's body began "
              "(medians)")
    emit(figures)


if __name__ == "__main__":
    main()
