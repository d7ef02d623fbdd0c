"""cache(hits="table"): warm calls answered before Prefect creates a task run, every hit listed
in one artifact; against the real Prefect API."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flowcache.errors import ConfigError
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache import cache, cache_hooks
from tests.prefect_helpers import (
    artifacts,
    eventually,
    log_matching,
    run_logs,
    table_rows,
    task_runs,
    task_state_names,
)

pytestmark = pytest.mark.usefixtures("prefect_api")
N = 30


@pytest.fixture
def store(tmp_path, make_store, default_store_of):
    return default_store_of(make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable"))))


def make_flow(calls: list[int]):
    @cache(keep=True, hits="table")
    @task
    def square(i: int, offset: int = 0) -> int:
        calls.append(i)
        return i * i + offset

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow(name="table-hits", **cache_hooks())
    def run(n: int) -> tuple[int, int, int, int]:
        mapped = square.map(range(n))
        submitted = square.submit(3)
        called = square(4)
        downstream = total.submit(mapped)  # a task fed the hits' futures
        return downstream.result(), submitted.result(), called, mapped[n - 1].result()

    return run


def test_warm_hits_create_no_task_runs_and_are_listed_in_one_artifact(store):
    calls: list[int] = []
    run = make_flow(calls)
    expected = (sum(i * i for i in range(N)), 9, 16, (N - 1) ** 2)
    cold = run(N, return_state=True)
    assert cold.result() == expected
    assert sorted(calls) == list(range(N))  # 3 and 4 computed once (single-flight)
    cold_id = cold.state_details.flow_run_id
    # the cold run: a task run per mapped miss and the consumer (the two direct calls may be
    # answered early, by entries their mapped twins just wrote)
    assert eventually(lambda: len(task_runs(cold_id)) >= N + 1)

    calls.clear()
    warm = run(N, return_state=True)
    assert warm.result() == expected
    assert calls == []
    warm_id = warm.state_details.flow_run_id
    assert task_state_names(warm_id, expected=1) == {"total": ["Completed"]}
    (artifact,) = eventually(lambda: artifacts(warm_id, "flowcache-hits-table-hits"))
    rows = table_rows(artifact)
    assert len(rows) == N + 2
    assert {row["task"] for row in rows} == {"square"}
    assert sorted(row["arguments"] for row in rows) == sorted(
        [f"i={i}, offset=0" for i in range(N)] + ["i=3, offset=0", "i=4, offset=0"])
    line = log_matching(warm_id, "flowcache:", f"{N + 2} hits, 0 misses",
                        f"{N + 2} hits answered without task runs")
    assert line is not None, "\n".join(r.message for r in run_logs(warm_id))
    assert "flowcache-hits-table-hits" in line.message
    assert len(task_runs(warm_id)) == 1  # still only the uncached consumer


def test_a_map_with_some_misses_runs_only_the_misses(store):
    calls: list[int] = []

    @cache(keep=True, hits="table")
    @task
    def triple(i: int) -> int:
        calls.append(i)
        return 3 * i

    @flow(name="table-hits-partial", **cache_hooks())
    def run(values: list[int]) -> list[int]:
        return [f.result() for f in triple.map(values)]

    assert run([1, 2, 3]) == [3, 6, 9]
    calls.clear()
    state = run([4, 1, 5, 2], return_state=True)
    assert state.result() == [12, 3, 15, 6]
    assert sorted(calls) == [4, 5]
    names = task_state_names(state.state_details.flow_run_id, expected=2)
    assert names == {"triple": ["Completed", "Completed"]}


def test_a_flow_without_the_hooks_is_refused_with_the_fix(store):
    @cache(keep=True, hits="table")
    @task
    def one(i: int) -> int:
        return i

    @flow(name="table-hits-no-hooks")
    def run() -> int:
        return one(1)

    state = run(return_state=True)  # refused on the first call, before any lookup
    assert state.is_failed()
    with pytest.raises(ConfigError, match=r"cache_hooks\(\)"):
        state.result()


def test_an_unknown_hits_mode_names_the_choices():
    with pytest.raises(ConfigError, match="hits='table'"):
        cache(hits="inline")
