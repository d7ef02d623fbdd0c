"""Lifetimes: run tracking, purge from every tier, gc sweeps, and the clear/gc commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from flowcache.cli import app
from flowcache.lifetimes import KEEP, TTL, FlowScoped
from flowcache.purge import RunTracker, clear, sweep
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier


@pytest.fixture
def tiers(tmp_path, redis_url):
    return MemoryTier(), RedisTier.from_url(redis_url), ObjectTier(str(tmp_path / "durable"))


@pytest.fixture
def store(tiers, make_store):
    return make_store(*tiers)


def key(i: int) -> str:
    return f"{i:064x}"


def put_flow_entry(store, tracker, run_id: str, i: int, **meta):
    tracker.record(run_id, key(i))
    store.put(key(i), os.urandom(64), lifetime=FlowScoped(run_id), meta=meta)


def names(tier, store) -> set[str]:
    return {n for n in tier.scan(f"{store.namespace}/") if "/_runs/" not in n}


def test_purge_removes_a_runs_entries_from_every_tier_and_nothing_else(store, tiers):
    tracker = RunTracker(store)
    for i in range(3):
        put_flow_entry(store, tracker, "run-a", i)
    put_flow_entry(store, tracker, "run-b", 10)
    store.put(key(20), b"kept", lifetime=KEEP)
    report = tracker.purge("run-a")
    assert report.entries == 3
    assert report.bytes == 3 * 64  # payload bytes
    for tier in tiers:
        assert names(tier, store) == {store.name_for(key(10)), store.name_for(key(20))}
    assert list(tiers[2].scan(f"{store.namespace}/_runs/run-a/")) == []
    assert [n for n, _ in store.headers()] == sorted(
        [store.name_for(key(10)), store.name_for(key(20))])


def test_entries_written_by_another_process_of_the_run_are_purged(store, make_store, tiers):
    other_process = make_store(tiers[2])  # a worker elsewhere, sharing only the durable tier
    put_flow_entry(other_process, RunTracker(other_process), "run-a", 1)
    report = RunTracker(store).purge("run-a")
    assert report.entries == 1
    assert names(tiers[2], store) == set()


def test_gc_purges_runs_whose_processes_are_gone(store, tiers, tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    tracker = RunTracker(store)
    put_flow_entry(store, tracker, "alive", 1)
    put_flow_entry(store, tracker, "dead", 2)
    tracker.leave("dead")
    import json

    from flowcache.frames import Frame

    proc_names = list(tiers[2].scan(f"{store.namespace}/_runs/dead/_proc-"))
    (proc_name,) = proc_names
    record = json.loads(tiers[2].get(proc_name).join())
    record["pid"] = dead_pid  # the process that ran it has exited
    tiers[2].put(proc_name, Frame((json.dumps(record).encode(),)))
    report = sweep(store)
    assert report.runs == 1
    assert report.names == [key(2)]
    assert names(tiers[2], store) == {store.name_for(key(1))}


def test_gc_purges_runs_without_a_recent_heartbeat_elsewhere(store, tiers):
    now = [1000.0]
    tracker = RunTracker(store, clock=lambda: now[0])
    put_flow_entry(store, tracker, "remote", 3)
    tracker.leave("remote")
    tracker._host = "another-host"  # seen from another host, the pid cannot be checked
    assert sweep(store, tracker=tracker, stale_after=600).runs == 0
    now[0] += 601
    assert sweep(store, tracker=tracker, stale_after=600).runs == 1
    assert names(tiers[2], store) == set()


def test_gc_removes_expired_entries_and_orphaned_hot_copies(store, tiers):
    from flowcache.frames import encode

    _, hot, durable = tiers
    past = time.time() - 100
    store.put_frame(key(1), encode(b"old", key=key(1), identity=store.identity,
                                   lifetime=TTL(10), now=past))
    store.put(key(2), b"fresh", lifetime=TTL(3600))
    store.put(key(3), b"orphan")
    durable.delete(store.name_for(key(3)))  # the durable object went away behind our back
    report = sweep(store)
    assert key(1) in report.names
    assert report.hot_copies >= 1
    assert not hot.exists(store.name_for(key(3)))
    assert names(durable, store) == {store.name_for(key(2))}


def test_clear_by_flow_by_age_and_all(store, tiers):
    store.put(key(1), b"a", meta={"flow": "etl"})
    store.put(key(2), b"b", meta={"flow": "train"})
    old = clear(store, flow="etl")
    assert old.names == [key(1)]
    assert clear(store, older_than=3600).entries == 0
    assert clear(store, older_than=0, now=time.time() + 1).names == [key(2)]
    store.put(key(3), b"c")
    assert clear(store).entries == 1
    for tier in tiers:
        assert names(tier, store) == set()


def test_cli_clear_and_gc(tmp_path, redis_url):
    runner = CliRunner()
    env = {"FLOWCACHE_STORE": f"memory+{redis_url}+{tmp_path}/durable",
           "FLOWCACHE_USER": "carol", "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks")}
    from flowcache.config import StoreConfig

    store = StoreConfig.from_env(env).build()
    store.put(key(1), b"x", meta={"flow": "etl"})
    store.put(key(2), b"y", meta={"flow": "other"})
    result = runner.invoke(app, ["ls"], env=env)
    assert result.exit_code == 0, result.output
    assert "2 entries" in result.output
    result = runner.invoke(app, ["clear"], env=env)
    assert result.exit_code == 2
    assert "--all" in result.output
    result = runner.invoke(app, ["clear", "--flow", "etl"], env=env)
    assert result.exit_code == 0, result.output
    assert "cleared 1 entries" in result.output
    result = runner.invoke(app, ["gc"], env=env)
    assert result.exit_code == 0, result.output
    assert "collected 0 entries" in result.output
    assert [n for n, _ in store.headers()] == [store.name_for(key(2))]
