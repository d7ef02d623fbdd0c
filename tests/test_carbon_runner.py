"""The carbon-aware task runner on a real Prefect API, with a provider of known intensities."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flowcache.carbon.clocks import ManualClock
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner
from tests.known_provider import HOME, HOUR, NORTH, T0, KnownProvider
from tests.prefect_helpers import artifacts, eventually, table_rows

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def store(tmp_path, make_store):
    return make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))


def run_in_thread(fn):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # surfaced by the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def held(runner: CarbonAwareTaskRunner) -> int:
    active = runner._children[-1] if runner._children else None
    return active.dispatcher.pending if active is not None else 0


def test_a_task_with_a_greener_window_later_is_released_then_and_dependants_follow(
        clock, store):
    events: list[tuple[str, float]] = []
    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=1), home="home",
                                   provider=KnownProvider({"home": HOME}), clock=clock,
                                   store=store)

    @carbon(max_delay="6h", duration="1h", power=1000)
    @task
    def heavy(n: int) -> int:
        events.append(("heavy", clock.now()))
        clock.advance(HOUR)  # the task "runs" for an hour of grid time
        return n * 10

    @task
    def after(value: int) -> int:
        events.append(("after", clock.now()))
        return value + 1

    @task
    def unrelated() -> str:
        events.append(("unrelated", clock.now()))
        return "ran at once"

    @flow(task_runner=runner)
    def pipeline() -> tuple[int, str]:
        big = heavy.submit(4)
        dependant = after.submit(big)
        other = unrelated.submit()  # one worker only: it runs because no worker is held
        return dependant.result(), other.result()

    thread, box = run_in_thread(pipeline)
    assert eventually(lambda: held(runner) == 1 and ("unrelated", T0) in events, 60)
    assert [name for name, _ in events] == ["unrelated"]  # heavy waits; nothing blocks
    clock.set(T0 + 2 * HOUR)
    time.sleep(0.3)  # not yet its time: must still be held (a check, not a timing assert)
    assert [name for name, _ in events] == ["unrelated"]
    clock.set(T0 + 3 * HOUR)
    thread.join(60)
    assert box.get("value") == (41, "ran at once"), box
    assert events == [("unrelated", T0), ("heavy", T0 + 3 * HOUR), ("after", T0 + 4 * HOUR)]
    (record,) = runner._children[-1].records
    assert record.decision.action == "defer"
    assert record.actual_start == T0 + 3 * HOUR
    assert record.realised_g == pytest.approx(100.0)  # 1 kWh at 100 g/kWh
    assert record.now_home_g == pytest.approx(400.0)


def test_the_report_artifacts_match_an_independent_computation(clock, store):
    runner = CarbonAwareTaskRunner(home="home", regions={"north": ThreadPoolTaskRunner()},
                                   provider=KnownProvider({"home": HOME, "north": NORTH}),
                                   clock=clock, store=store)
    ran_in: list[str] = []

    @carbon(max_delay="1h", duration="1h", power=2000, regions=["north"], mode="relocate")
    @task
    def moved() -> None:
        ran_in.append(threading.current_thread().name)
        clock.advance(HOUR)

    @flow(task_runner=runner)
    def one() -> None:
        moved.submit().result()

    state = one(return_state=True)
    assert state.is_completed()
    (rows_artifact,) = eventually(lambda: artifacts(state.state_details.flow_run_id,
                                                    "carbon-decisions"))
    (row,) = table_rows(rows_artifact)
    energy = 2.0  # kWh: 2 kW for one hour
    assert row["region"] == "north"
    assert row["action"] == "relocate"
    assert row["realised g"] == pytest.approx(energy * 300.0)
    assert row["run now at home g"] == pytest.approx(energy * 400.0)
    assert row["saved g"] == pytest.approx(energy * 100.0)
    assert row["saved %"] == pytest.approx(25.0)
    (report,) = eventually(lambda: artifacts(state.state_details.flow_run_id, "carbon-report"))
    assert "saved 200.0 g (25.0 %)" in report.data
    assert "data:image/png;base64," in report.data

    from flowcache.carbon.report import load_records

    (stored,) = load_records(store, str(state.state_details.flow_run_id))
    assert stored.realised_g == pytest.approx(600.0)


def test_a_failing_provider_runs_now_at_home_with_the_reason_logged(clock, store, caplog):
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME},
                                                                       failing=True),
                                   clock=clock, store=store)
    times = []

    @carbon(max_delay="6h", duration="1h", power=500)
    @task
    def work() -> int:
        times.append(clock.now())
        return 1

    @flow(task_runner=runner)
    def run() -> int:
        return work.submit().result()

    caplog.set_level("INFO")
    assert run() == 1
    assert times == [T0]
    (record,) = runner._children[-1].records
    assert record.decision.fallback
    assert "intensity API is down" in record.decision.reason
    assert any("run now in home" in r.getMessage() and "down" in r.getMessage()
               for r in caplog.records)


def test_advise_mode_plans_and_records_but_runs_now(clock, store):
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=store)
    times = []

    @carbon(max_delay="6h", duration="1h", power=1000, mode="advise")
    @task
    def work() -> None:
        times.append(clock.now())

    @flow(task_runner=runner)
    def run() -> None:
        work.submit().wait()

    run()
    (record,) = runner._children[-1].records
    assert times == [T0]
    assert record.decision.start == T0 + 3 * HOUR  # what it would have done
    assert not record.followed


def test_cancelling_the_flow_cancels_held_tasks(clock, store):
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=store)
    ran = []

    @carbon(max_delay="6h", duration="1h", power=1000)
    @task
    def later() -> None:
        ran.append(1)

    @flow(task_runner=runner)
    def run() -> str:
        future = later.submit()
        future.wait()
        return future.state.type.value

    thread, box = run_in_thread(lambda: run())
    assert eventually(lambda: held(runner) == 1, 60)
    runner.cancel_all()  # what Prefect's flow engine calls on cancellation
    thread.join(60)
    assert box.get("value") == "CANCELLED", box
    assert ran == []


def test_capacity_spreads_deferred_work_over_the_green_hours(clock, store):
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=store, capacity=1, placeholders=False)

    @carbon(max_delay="6h", duration="1h", power=1000)
    @task
    def job(i: int) -> int:
        return i

    decided = []

    @flow(task_runner=runner)
    def many() -> None:
        futures = [job.submit(i) for i in range(3)]
        decided.extend(f.planned_start for f in futures if hasattr(f, "planned_start"))

    thread, _ = run_in_thread(many)
    assert eventually(lambda: held(runner) >= 2, 60)
    clock.set(T0 + 10 * HOUR)
    thread.join(60)
    starts = sorted(r.decision.start for r in runner._children[-1].records)
    # one job per green hour; the third finds every other hour equally dirty and starts now
    assert starts == [T0, T0 + 3 * HOUR, T0 + 4 * HOUR]


def test_a_held_task_shows_as_scheduled_in_the_api_until_released(clock, store):
    from prefect.client.orchestration import get_client

    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=store)

    @carbon(max_delay="6h", duration="1h", power=1000)
    @task
    def later() -> int:
        return 1

    @flow(task_runner=runner)
    def run() -> int:
        return later.submit().result()

    thread, box = run_in_thread(run)
    assert eventually(lambda: held(runner) == 1, 60)
    active = runner._children[-1]

    def placeholder():
        from tests.prefect_helpers import task_runs

        runs = [r for r in task_runs(active._flow_run_id) if r.name.endswith("(deferred)")]
        return runs[0] if runs else None

    shown = eventually(placeholder)
    assert shown.state.type.value == "SCHEDULED"
    assert shown.state.state_details.scheduled_time.timestamp() == T0 + 3 * HOUR
    clock.set(T0 + 3 * HOUR)
    thread.join(60)
    assert box.get("value") == 1
    with get_client(sync_client=True) as client:
        released = eventually(lambda: (r := client.read_task_run(shown.id)).state.name
                              == "Released" and r)
    assert "runs as task run" in released.state.message


@pytest.fixture(scope="module")
def two_clusters():
    from distributed import LocalCluster

    home = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                        dashboard_address=":0")
    north = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                         dashboard_address=":0")
    yield home, north
    north.close()
    home.close()


def test_a_task_with_two_regions_runs_on_the_greener_regions_cluster(clock, store,
                                                                      two_clusters):
    from prefect_dask import DaskTaskRunner

    home_cluster, north_cluster = two_clusters
    runner = CarbonAwareTaskRunner(DaskTaskRunner(address=home_cluster.scheduler_address),
                                   home="home",
                                   regions={"north": DaskTaskRunner(
                                       address=north_cluster.scheduler_address)},
                                   provider=KnownProvider({"home": HOME, "north": NORTH}),
                                   clock=clock, store=store)

    @carbon(duration="1h", power=1000, regions=["north"], mode="relocate")
    @task
    def where() -> str:
        from distributed import get_worker

        return get_worker().scheduler.address

    @task
    def stays() -> str:
        from distributed import get_worker

        return get_worker().scheduler.address

    @flow(task_runner=runner)
    def run() -> tuple[str, str]:
        return where.submit().result(), stays.submit().result()

    moved, stayed = run()
    assert moved == north_cluster.scheduler_address  # 300 g/kWh beats 400 at home now
    assert stayed == home_cluster.scheduler_address  # not carbon-aware: untouched


def test_greenest_start_inside_a_nightly_window_and_a_scheduled_deployment_run():
    import datetime as dt

    from prefect.client.orchestration import get_client

    from prefect_cache.deployments import greenest_start, schedule_greenest_run

    provider = KnownProvider({"home": HOME})
    day = dt.date(2024, 3, 1)
    start = greenest_start("01:00-06:00", duration="1h", region="home", provider=provider,
                           day=day, now=T0)
    assert start.timestamp() == T0 + 3 * HOUR
    late = greenest_start("04:30-07:00", duration="1h", region="home", provider=provider,
                          day=day, now=T0)
    assert late.timestamp() == T0 + 4.5 * HOUR  # 30 min of green left beats none
    with pytest.raises(Exception, match="does not fit"):
        greenest_start("01:00-01:30", duration="1h", region="home", provider=provider, day=day,
                       now=T0)

    @flow(name="flowcache-nightly")
    def nightly() -> None:
        return None

    nightly.to_deployment(name="nightly").apply()
    run = schedule_greenest_run("flowcache-nightly/nightly", window="01:00-06:00",
                                duration="1h", region="home", provider=provider, day=day,
                                now=T0)
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run.id)
    assert stored.state.type.value == "SCHEDULED"
    assert stored.expected_start_time.timestamp() == T0 + 3 * HOUR


def test_the_report_command_prints_a_runs_decisions(clock, tmp_path):
    from typer.testing import CliRunner

    from flowcache.cli import app
    from flowcache.config import StoreConfig

    env = {"FLOWCACHE_STORE": f"memory+{tmp_path}/store", "FLOWCACHE_USER": "fay",
           "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks")}
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=StoreConfig.from_env(env).build())

    @carbon(duration="1h", power=1000, max_delay="2h")
    @task
    def quick() -> None:
        clock.advance(HOUR)

    @flow(task_runner=runner)
    def run() -> None:
        quick.submit().wait()

    thread, _ = run_in_thread(lambda: run(return_state=True))
    assert eventually(lambda: held(runner) == 0 and runner._children
                      and runner._children[-1].advisor.placements, 60)
    clock.set(T0 + 5 * HOUR)
    thread.join(60)
    flow_run_id = runner._children[-1]._flow_run_id
    result = CliRunner().invoke(app, ["carbon", "report", str(flow_run_id)], env=env)
    assert result.exit_code == 0, result.output
    assert "quick" in result.output
    assert "run now at home" in result.output or "saved" in result.output
    missing = CliRunner().invoke(app, ["carbon", "report", "no-such-run"], env=env)
    assert missing.exit_code == 1


def test_two_hundred_tasks_with_staggered_deadlines_all_complete_in_time_and_spread(clock,
                                                                                    store):
    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=4), home="home",
                                   provider=KnownProvider({"home": HOME}), clock=clock,
                                   store=store, capacity=40, placeholders=False)
    deadlines = {i: T0 + (2 + i % 10) * HOUR for i in range(200)}

    def marked(i):
        return carbon(duration="30m", power=100, deadline=deadlines[i])(task(_ident,
                                                                             name=f"job{i}"))

    tasks = [marked(i) for i in range(200)]

    @flow(task_runner=runner)
    def many() -> int:
        return sum(f.result() for f in [t.submit(i) for i, t in enumerate(tasks)])

    thread, box = run_in_thread(many)
    assert eventually(lambda: runner._children
                      and len(runner._children[-1].advisor.placements) == 200, 120)
    assert eventually(lambda: runner._children[-1].deciding == 0, 120)  # all acted on
    runs = runner._children[-1].advisor.placements
    for step in range(1, 25):  # half an hour at a time; wait until all that is due started
        now = T0 + step * HOUR / 2
        clock.set(now)
        assert eventually(lambda now=now: all(r.actual_start is not None for r in runs
                                              if r.decision.start <= now), 60)
    thread.join(120)
    assert box.get("value") == sum(range(200)), box
    for run in runs:
        index = int(run.label.split("(")[0][3:])
        assert run.actual_start == run.decision.start  # released exactly when planned
        assert run.decision.start + 1800 <= deadlines[index]  # and so done by its deadline
    per_slot: dict[float, int] = {}
    deferred = [run for run in runs if run.decision.start > T0]
    # capacity left the rest no window better than now: they ran now instead of later
    assert any("not expected to beat running now" in run.decision.reason for run in runs)
    for run in deferred:
        for start, _end in run.decision.intervals:
            slot = T0 + ((start - T0) // HOUR) * HOUR
            per_slot[slot] = per_slot.get(slot, 0) + 1
    assert max(per_slot.values()) <= 40 * 2  # a 30 min job may touch two hourly slots
    green = [r for r in runs if r.decision.start in (T0 + 3 * HOUR, T0 + 3.5 * HOUR,
                                                     T0 + 4 * HOUR, T0 + 4.5 * HOUR)]
    assert 40 <= len(green) < 200  # the green hours filled up to capacity, then the rest spread


def _ident(i: int) -> int:
    return i


def test_duration_is_learned_from_past_runs_in_the_api(clock, store):
    runner = CarbonAwareTaskRunner(home="home", provider=KnownProvider({"home": HOME}),
                                   clock=clock, store=store, placeholders=False)

    @carbon(power=1000, mode="advise")
    @task(name="learns-its-duration")
    def measured() -> None:
        time.sleep(0.3)  # real work the API measures (total_run_time)

    @flow(task_runner=runner)
    def run() -> None:
        measured.submit().wait()

    run()
    first = runner._children[-1].records[0].decision
    assert "assumed 1 h" in first.note
    assert eventually(lambda: _completed_runs("learns-its-duration") >= 1)
    run()
    learned = runner._children[-1].records[0].decision
    assert "learned from past runs" in learned.note
    assert 0.25 <= learned.end - learned.start <= 5.0


def _completed_runs(name: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_=name)), limit=50)
    return sum(1 for r in runs if r.state and r.state.is_completed() and r.total_run_time)


def test_the_example_batch_runs_and_advises(store, default_store_of):
    from flows import carbon_batch

    default_store_of(store)  # a fresh cache: cached results would not need planning

    batch = carbon_batch.build_flow(act=False, fast=True, models=2)
    assert batch(samples=20)["models"] == 2
    records = batch.task_runner._children[-1].records
    assert len(records) == 2
    assert all(r.decision.planned and not r.decision.fallback for r in records)


def test_each_run_ends_with_the_weeks_impact_line_and_artifact(clock, tmp_path, make_store,
                                                              caplog):
    from flowcache.accounts.ledger import Ledger, SQLiteBackend

    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    ledger = Ledger(SQLiteBackend(tmp_path / "ledger.sqlite3"))
    ledger.attach(store)

    @carbon(max_delay="1h", duration="1h", power=2000, regions=["north"], mode="relocate")
    @task
    def moved() -> None:
        clock.advance(HOUR)

    @flow(task_runner=CarbonAwareTaskRunner(
        home="home", regions={"north": ThreadPoolTaskRunner()}, clock=clock, store=store,
        provider=KnownProvider({"home": HOME, "north": NORTH})))
    def one() -> None:
        moved.submit().result()

    with caplog.at_level("INFO"):
        one()
        clock.set(T0)
        state = one(return_state=True)
    lines = [m for m in caplog.messages if m.startswith("carbon impact")]
    assert lines[-1] == ("carbon impact, past 7 days: 2 of your runs shifted 2 tasks and "
                         "saved 400.0 g CO2eq against running them at once at home")
    (artifact,) = eventually(lambda: artifacts(state.state_details.flow_run_id,
                                               "carbon-impact"))
    (row,) = table_rows(artifact)
    assert row["runs"] == 2
    assert row["saved_vs_now_g"] == pytest.approx(400.0)
    assert artifact.description == lines[-1]
    ledger.close()
