"""The carbon-aware runner on a real Prefect API when carbon data misbehaves: a provider that
hangs, history that is too short, a carbon() task the runner never sees. The flow always runs,
plain tasks are never held up, and the user is told what happened."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flowcache.carbon.series import IntensitySeries
from flowcache.errors import ForecastNotSupported
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner
from tests.carbon.fakes import Hanging
from tests.known_provider import HOUR, T0

pytestmark = pytest.mark.usefixtures("prefect_api")
DEADLINE = 120.0  # generous: the machine may be loaded


@pytest.fixture
def store(tmp_path, make_store):
    return make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))


@carbon(max_delay="6h", duration="1h", power=1000)
@task
def heavy(n: int) -> int:
    return n * 10


def test_plain_tasks_run_while_the_provider_hangs(store):
    provider = Hanging()
    seen: dict[str, int] = {}

    @task
    def plain() -> str:
        assert provider.entered.wait(DEADLINE)  # a carbon decision is waiting on the provider
        seen["in_flight"] = provider.in_flight
        provider.release.set()  # only now may the provider answer (it fails)
        return "ran"

    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=2), home="home",
                                   provider=provider, store=store, decision_budget=DEADLINE)

    @flow(task_runner=runner)
    def pipeline() -> tuple[list[int], str]:
        carbon_aware = [heavy.submit(i) for i in range(3)]
        other = plain.submit()  # submitted after them, on the same thread
        return [f.result() for f in carbon_aware], other.result()

    try:
        assert pipeline() == ([0, 10, 20], "ran")
    finally:
        provider.release.set()
    assert seen["in_flight"] == 1  # the plain task ran while the decision hung
    assert provider.calls == 1  # one breaker per provider and flow
    records = runner._children[-1].records
    assert [r.decision.planned for r in records] == [False] * 3
    assert "timed out" in records[0].decision.reason
    assert "not asked again" in records[1].decision.reason


def test_a_provider_that_never_answers_costs_one_budget(store, caplog):
    provider = Hanging()
    runner = CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=2), home="home",
                                   provider=provider, store=store, decision_budget=1.0)

    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return [f.result() for f in [heavy.submit(i) for i in range(5)]]

    try:
        with caplog.at_level(logging.INFO):
            assert pipeline() == [0, 10, 20, 30, 40]
    finally:
        provider.release.set()
    active = runner._children[-1]
    assert provider.calls == 1
    assert all("no answer within" in r.decision.reason or "not asked again" in r.decision.reason
               for r in active.records)
    assert len(active.decision_seconds) == 5
    assert any("emissions unknown" in m for m in caplog.messages)
    assert not any("0.0 g" in m for m in caplog.messages)


@pytest.mark.parametrize("hours", [1, 24, 7 * 24])
def test_a_flow_with_a_short_history_provider_runs(store, hours):
    class Short:
        name = "short"
        signal = "average"
        series = IntensitySeries(T0 - hours * HOUR, HOUR, np.full(hours, 300.0), source="short")

        def forecast(self, region, start, end):
            raise ForecastNotSupported(self.name, "history only")

        def history(self, region, start, end):
            return self.series.slice(max(start, self.series.start), min(end, self.series.end))

    from flowcache.carbon.clocks import ManualClock

    runner = CarbonAwareTaskRunner(home="home", provider=Short(), store=store,
                                   clock=ManualClock(T0))

    @flow(task_runner=runner)
    def pipeline() -> int:
        return heavy.submit(4).result()

    assert pipeline() == 40
    decision = runner._children[-1].records[0].decision
    assert decision.source.endswith("+mean7") or not decision.planned


def test_a_carbon_task_the_runner_never_decides_for_warns_once(caplog):
    @flow(task_runner=ThreadPoolTaskRunner())
    def plain_runner() -> list[int]:
        return [heavy.submit(i).result() for i in range(3)]

    @flow(task_runner=CarbonAwareTaskRunner(home="home", provider="static"))
    def called_directly() -> list[int]:
        return [heavy(i) for i in range(3)]

    with caplog.at_level(logging.WARNING, logger="prefect_cache.carbon"):
        assert plain_runner() == [0, 10, 20]
        assert called_directly() == [0, 10, 20]
    warnings = [r.getMessage() for r in caplog.records if "carbon():" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per situation, not per task run
    assert "ran under ThreadPoolTaskRunner" in warnings[0]
    assert "CarbonAwareTaskRunner" in warnings[0]
    assert "called directly" in warnings[1]
    assert "heavy.submit" in warnings[1]


def test_a_compressed_clock_starts_with_the_flow_run_not_the_script():
    """Prefect may take half a minute to start its API: that must not be hours of grid time
    gone before the first plan."""
    from flowcache.carbon.clocks import CompressedClock

    clock = CompressedClock(T0, speed=3600.0)
    runner = CarbonAwareTaskRunner(home="home", provider="static", clock=clock)
    before = [clock.now() for _ in range(1000)]
    assert set(before) == {T0}  # stands still until a run begins
    with runner.duplicate() as active:
        assert active.clock.now() >= T0
        assert clock.started
    assert clock.now() >= T0
