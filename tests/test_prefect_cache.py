"""The cache() task option on a real Prefect API, with real Redis and object stores."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from prefect import flow, task

from flowcache.errors import UnhashableInput
from flowcache.keys.canonical import PROVENANCE
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from flowcache.units import format_size
from flows import pipeline as example
from prefect_cache import cache, cache_hooks
from tests.prefect_helpers import stats_artifact, table_rows, task_state_names

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def tiers(tmp_path, redis_url):
    return MemoryTier(), RedisTier.from_url(redis_url, max_item_bytes=None), \
        ObjectTier(str(tmp_path / "durable"))


@pytest.fixture
def store(tiers, make_store, default_store_of):
    return default_store_of(make_store(*tiers))


@pytest.fixture
def samples(tmp_path):
    example.EXECUTIONS.clear()
    return example.make_samples(tmp_path / "samples", count=4, words=2000)


def run_pipeline(data_dir: Path):
    example.EXECUTIONS.clear()
    state = example.pipeline(data_dir, return_state=True)
    assert state.is_completed(), state
    return state.result(), dict(example.EXECUTIONS), state.state_details.flow_run_id


def names_in(tier, store) -> set[str]:
    return {n for n in tier.scan(f"{store.namespace}/") if "/_runs/" not in n}


# -- the example flow -------------------------------------------------------------------------
def test_second_run_is_all_hits_and_runs_no_task_body(store, samples):
    first, executed, _ = run_pipeline(samples[0].parent)
    assert executed == {"load": 4, "normalize": 4, "features": 4, "merge": 1}
    second, executed, flow_run_id = run_pipeline(samples[0].parent)
    assert executed == {}
    assert second == first
    states = task_state_names(flow_run_id, expected=5)
    assert states == {"features": ["Cached"] * 4, "merge": ["Cached"]}


def test_editing_one_input_recomputes_exactly_its_branch(store, samples):
    first, _, _ = run_pipeline(samples[0].parent)
    samples[2].write_text(samples[2].read_text() + " omega omega")
    second, executed, _ = run_pipeline(samples[0].parent)
    assert executed == {"load": 1, "normalize": 1, "features": 1, "merge": 1}
    assert second["words"] == first["words"] + 2
    third, executed, _ = run_pipeline(samples[0].parent)
    assert executed == {}
    assert third == second


def test_intermediates_are_purged_from_every_tier_and_kept_entries_stay(store, tiers, samples):
    memory, redis_tier, durable = tiers
    _, _, flow_run_id = run_pipeline(samples[0].parent)
    headers = [h for _, h in store.headers()]
    kinds = sorted(h.lifetime["kind"] for h in headers)
    assert kinds == ["keep"] * 5  # features x4 + merge; the 8 flow-scoped ones are gone
    assert {h.meta["task"] for h in headers} == {"features", "merge"}
    durable_names = names_in(durable, store)
    assert names_in(redis_tier, store) == durable_names
    assert names_in(memory, store) == durable_names
    assert list(durable.scan(f"{store.namespace}/_runs/")) == []  # markers and heartbeats too
    artifact = stats_artifact(flow_run_id)
    assert artifact.key == "flowcache-stats-flowcache-example-pipeline"
    rows = {row["task"]: row for row in table_rows(artifact)}
    assert rows["TOTAL"]["misses"] == 13
    assert rows["load"]["misses"] == 4
    assert rows["features"]["written"] == format_size(
        sum(h.size for h in headers if h.meta["task"] == "features"))
    assert "8 intermediates purged" in artifact.description


def test_the_stats_of_a_warm_run_count_hits_and_time_saved(store, samples):
    run_pipeline(samples[0].parent)
    _, _, flow_run_id = run_pipeline(samples[0].parent)
    artifact = stats_artifact(flow_run_id)
    total = {row["task"]: row for row in table_rows(artifact)}["TOTAL"]
    assert total["hits"] == 5
    assert total["misses"] == 0
    # each features miss took >= 3 x WORK_SECONDS (its two steps and itself)
    saved = float(total["task time saved (summed)"].removesuffix(" s"))
    assert saved >= 4 * 3 * example.WORK_SECONDS * 0.9
    assert "summed over tasks" in artifact.description


def test_intermediates_are_purged_after_a_failure(store, tiers):
    @cache(lifetime="flow")
    @task
    def step(i: int) -> bytes:
        return os.urandom(100) + bytes([i])

    @flow(**cache_hooks())
    def failing() -> None:
        for i in range(3):
            step(i)
        raise RuntimeError("the flow fails after writing intermediates")

    state = failing(return_state=True)
    assert state.is_failed()
    for tier in tiers:
        assert names_in(tier, store) == set()


# -- write confirmation -----------------------------------------------------------------------
def test_a_bucket_that_rejects_writes_fails_the_task_run_then_a_retry_completes(
        s3, make_store, default_store_of):
    bucket = s3.new_bucket()
    memory = MemoryTier()
    durable = ObjectTier(f"s3://{bucket}/cache", storage_options=s3.options(proxied=True))
    store = default_store_of(make_store(memory, durable))
    attempts = []

    @cache(keep=True)
    @task
    def produce(n: int) -> bytes:
        attempts.append(n)
        return b"result" * n

    @flow
    def without_retries() -> bytes:
        return produce(3)

    s3.proxy.reject_writes = True
    state = without_retries(return_state=True)
    assert state.is_failed()
    assert attempts == [3]
    assert task_state_names(state.state_details.flow_run_id, expected=1) == {
        "produce": ["Failed"]}
    assert len(memory) == 0  # never Completed with a missing output, nothing half-cached
    s3.proxy.reject_writes = False
    assert list(durable.scan()) == []

    retrying = produce.with_options(retries=1, retry_delay_seconds=0)

    @flow
    def with_retry() -> bytes:
        return retrying(4)

    s3.proxy.reject_next = 1  # the bucket refuses one more write, then recovers
    state = with_retry(return_state=True)
    assert state.is_completed(), state
    assert state.result() == b"result" * 4
    assert attempts == [3, 4, 4]  # failed once, then the retry wrote durably and completed
    assert task_state_names(state.state_details.flow_run_id, expected=1) == {
        "produce": ["Completed"]}
    (name,) = list(store.scan())
    assert make_store(durable).get(store.key_of(name)) == b"result" * 4


# -- keys -------------------------------------------------------------------------------------
def test_an_unhashable_input_names_the_parameter_and_the_fix(store):
    @cache(keep=True)
    @task
    def uses_lock(n: int, lock: object) -> int:
        return n

    @flow
    def with_lock() -> int:
        return uses_lock(1, threading.Lock())

    with pytest.raises(UnhashableInput) as info:
        with_lock()
    message = str(info.value)
    assert "'lock'" in message
    assert "uses_lock" in message
    assert "exclude=['lock']" in message

    excluded = cache(exclude=["lock"])(task(uses_lock.fn.__wrapped__))

    @flow
    def excluding() -> int:
        return excluded(2, threading.Lock())

    assert excluding() == 2


def test_large_upstream_results_are_chain_hashed(store):
    calls = []

    @cache(keep=True)
    @task
    def produce() -> bytes:
        return b"x" * (1 << 17)

    @cache(keep=True)
    @task
    def consume(data: bytes) -> int:
        calls.append(1)
        return len(data)

    @flow
    def chained() -> int:
        return consume(produce())

    @flow
    def literal() -> int:
        return consume(b"x" * (1 << 17))

    assert chained() == 1 << 17
    assert chained() == 1 << 17
    assert len(calls) == 1  # the chained key is stable across runs
    assert literal() == 1 << 17
    assert len(calls) == 2  # equal bytes from elsewhere are keyed by content, not the chain
    value = b"y" * (1 << 17)
    PROVENANCE.remember(value, "e" * 64)
    assert PROVENANCE.lookup(value) == "e" * 64


def test_refresh_recomputes_and_overwrites(store):
    counter = []

    @task
    def noisy(n: int) -> int:
        counter.append(n)
        return len(counter)

    cached = cache(keep=True)(noisy)
    refreshing = cache(keep=True, refresh=True)(noisy)

    @flow
    def run(t) -> int:
        return t(5)

    assert run(cached) == 1
    assert run(cached) == 1
    assert run(refreshing) == 2
    assert run(cached) == 2  # the refreshed value replaced the old one


def test_remote_input_files_are_keyed_by_version(tiers, make_store, default_store_of, s3, gcs):
    options = {"s3": s3.options(), "gs": gcs.options()}
    # the store's storage options are what input files are fingerprinted with
    default_store_of(make_store(*tiers, storage_options=options))
    runs = []

    @cache(keep=True, files=["url"])
    @task
    def size_of(url: str) -> int:
        runs.append(url)
        import fsspec

        protocol = url.split("://")[0]
        endpoint = s3 if protocol == "s3" else gcs
        with fsspec.open(url, "rb", **endpoint.options()) as handle:
            return len(handle.read())

    for endpoint in (s3, gcs):
        bucket = endpoint.new_bucket()
        url = f"{endpoint.protocol}://{bucket}/input.csv"
        fs = endpoint.filesystem()
        fs.pipe(url, b"a,b\n1,2\n")

        @flow
        def measure(u: str) -> int:
            return size_of(u)

        assert measure(url) == 8
        assert measure(url) == 8
        fs.pipe(url, b"a,b\n1,2\n3,4\n")
        assert measure(url) == 12
        assert runs.count(url) == 2


def test_async_tasks_are_cached(store):
    calls = []

    @cache(keep=True)
    @task
    async def fetch(n: int) -> dict:
        calls.append(n)
        return {"n": n}

    @flow
    async def run() -> list:
        return [await fetch(1), await fetch(1), await fetch(2)]

    import asyncio

    assert asyncio.run(run()) == [{"n": 1}, {"n": 1}, {"n": 2}]
    assert calls == [1, 2]


def test_ttl_entries_expire_in_every_tier(store, tiers):
    @cache(lifetime="1h")
    @task
    def short(n: int) -> int:
        return n

    @flow
    def run() -> int:
        return short(3)

    assert run() == 3
    ((name, header),) = list(store.headers())
    assert header.lifetime["kind"] == "ttl"
    assert 3590 < header.expires_at - header.created <= 3600
    assert 3590 < tiers[1].ttl(name) <= 3600
