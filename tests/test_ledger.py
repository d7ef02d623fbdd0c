"""The ledger: what it records from the store, the memory tier and Redis, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from flowcache.accounts.backends import CLOCK_SKEW
from flowcache.accounts.billing import Event, open_residencies, residencies
from flowcache.accounts.ledger import Ledger, RedisBackend, SQLiteBackend, ledger_of
from flowcache.config import StoreConfig
from flowcache.identity import Identity, new_key
from flowcache.lifetimes import TTL, FlowScoped
from flowcache.processes import this_process
from flowcache.purge import RunTracker, clear, sweep
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier, entry_name
from tests.conftest import FakeClock


def key(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path / "ledger.sqlite3")
    url = request.getfixturevalue("redis_url")
    return RedisBackend(redis.Redis.from_url(url), prefix="ledgertest:")


@pytest.fixture
def ledger(backend, clock):
    ledger = Ledger(backend, clock=clock)
    yield ledger
    ledger.close()


@pytest.fixture
def store(make_store, redis_url, tmp_path, ledger):
    store = make_store(MemoryTier(max_bytes=10_000), RedisTier.from_url(redis_url),
                       ObjectTier(str(tmp_path / "durable")))
    ledger.attach(store)
    return store


def kinds(events, *wanted):
    return [(e.kind, e.tier, e.reason) for e in events if e.kind in wanted]


def test_writes_hits_misses_and_deletes_are_recorded_in_order(store, ledger, clock):
    store.put(key(1), b"x" * 1000, meta={"compute_seconds": 2.5, "run": "r1", "flow": "f",
                                          "task": "t"})
    frame_size = os.path.getsize(store.durable._path(store.name_for(key(1))))
    clock.advance(10)
    assert store.get(key(1)) == b"x" * 1000
    assert store.get(key(2), None) is None
    clock.advance(5)
    store.delete(key(1), reason="cleared")
    events = ledger.events("alice")
    assert kinds(events, "write") == [("write", "object", ""), ("write", "memory", ""),
                                      ("write", "redis", "")]
    write = events[0]
    assert (write.nbytes, write.run, write.flow, write.task) == (frame_size, "r1", "f", "t")
    (hit,) = [e for e in events if e.kind == "hit"]
    assert (hit.tier, hit.seconds, hit.ts) == ("memory", 2.5, clock.now - 5)
    assert [e.name for e in events if e.kind == "miss"] == [key(2)]
    # every copy's end comes from the store, with the caller's reason (tiers report only
    # what they drop by themselves: evictions, expiries)
    assert sorted(kinds(events, "remove")) == [("remove", "memory", "cleared"),
                                               ("remove", "object", "cleared"),
                                               ("remove", "redis", "cleared")]
    spans = {(r.tier, r.start, r.end) for r in residencies(events)}
    assert spans == {(tier, clock.now - 15, clock.now) for tier in ("object", "memory", "redis")}
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_memory_evictions_end_the_memory_copy_only(store, ledger, clock):
    for i in range(4):
        store.put(key(i), bytes(4000))  # frames of ~4.1 kB in a 10 kB memory tier
        clock.advance(1)
    evictions = [e for e in ledger.events("alice") if e.reason == "evicted"]
    assert [(e.tier, e.name, e.proc) for e in evictions] == [
        ("memory", store.name_for(key(0)), this_process()),
        ("memory", store.name_for(key(1)), this_process())]
    held = {(r.tier, r.name) for r in open_residencies(ledger.events("alice"))}
    assert ("object", store.name_for(key(0))) in held
    assert ("memory", store.name_for(key(0))) not in held


def test_purge_clear_and_expiry_end_residencies_with_their_reason(store, ledger, clock):
    tracker = RunTracker(store)
    tracker.record("run-1", key(1))
    store.put(key(1), b"a", lifetime=FlowScoped("run-1"))
    store.put(key(2), b"b", meta={"flow": "keepers"})
    store.put(key(3), b"c", lifetime=TTL(0.001))
    time.sleep(0.01)  # the TTL above is wall-clock (not a timing assertion: it just expires)
    tracker.purge("run-1")
    sweep(store, stale_after=3600)
    clear(store, flow="keepers")
    reasons = {(e.name.rsplit("/", 1)[-1], e.tier): e.reason for e in ledger.events("alice")
               if e.kind == "remove" and e.tier != "memory"}
    assert reasons == {(key(1), "object"): "purged", (key(1), "redis"): "purged",
                       (key(3), "object"): "expired",  # Redis expired its own copy already
                       (key(2), "object"): "cleared", (key(2), "redis"): "cleared"}
    events = ledger.events("alice")
    assert [(r.tier, r.name) for r in open_residencies(events)] == [
        ("redis", store.name_for(key(3)))]  # no event ended it: its expiry does
    assert open_residencies(events, now=time.time()) == []


def test_a_redis_copy_never_outlives_its_ttl(make_store, redis_url, tmp_path):
    clock = FakeClock(time.time())
    ledger = Ledger(SQLiteBackend(tmp_path / "l.db"), clock=clock)
    store = make_store(RedisTier.from_url(redis_url), ObjectTier(str(tmp_path / "d")))
    ledger.attach(store)
    store.put(key(1), b"t" * 100, lifetime=TTL(60))
    clock.advance(3600)  # nobody reports the expiry
    (redis_copy,) = [r for r in residencies(ledger.events("alice")) if r.tier == "redis"]
    assert redis_copy.end is None
    assert redis_copy.seconds_within(0, clock.now) == pytest.approx(60, abs=1)


def test_reconcile_ends_copies_that_vanished_and_only_those(store, ledger, clock, redis_url):
    for i in range(3):
        store.put(key(i), bytes(10))
    clock.advance(100)
    admin = redis.Redis.from_url(redis_url)
    admin.delete("flowcache:{" + store.name_for(key(1)) + "}")  # evicted, silently
    os.unlink(store.durable._path(store.name_for(key(2))))  # removed outside flowcache
    ended = ledger.reconcile(store)
    assert sorted((r.tier, r.name) for r in ended) == [
        ("object", store.name_for(key(2))), ("redis", store.name_for(key(1)))]
    by_copy = {(r.tier, r.name): r for r in residencies(ledger.events("alice"))}
    assert by_copy["redis", store.name_for(key(1))].end == clock.now
    assert by_copy["redis", store.name_for(key(1))].reason == "vanished"
    assert by_copy["redis", store.name_for(key(0))].end is None
    assert ledger.reconcile(store) == []


def test_a_reconciliation_never_ends_a_copy_made_after_it_looked(ledger, clock):
    ledger.wrote("alice", "redis", "alice/00/a", 10)
    clock.advance(10)
    ledger.removed("alice", "redis", "alice/00/a", "vanished", before=clock.now - 20)
    (copy,) = residencies(ledger.events("alice"))
    assert copy.end is None  # the removal was about an older copy than this one


def test_memory_copies_of_dead_processes_are_ended(store, ledger, clock):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    proc = f"{this_process().rpartition(':')[0]}:{int(dead.stdout)}"
    ledger.wrote("alice", "memory", store.name_for(key(5)), 100, proc=proc)
    ledger.wrote("alice", "memory", store.name_for(key(6)), 100, proc="elsewhere:1")
    ended = ledger.reconcile(store)
    assert [(r.name, r.proc) for r in ended] == [(store.name_for(key(5)), proc)]


def test_this_processes_memory_copies_end_at_exit(make_store, tmp_path, clock):
    ledger = Ledger(SQLiteBackend(tmp_path / "l.db"), clock=clock)
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "d")))
    listener = ledger.attach(store)
    store.put(key(1), b"m")
    listener.process_exit()
    (memory,) = [r for r in residencies(ledger.events("alice")) if r.tier == "memory"]
    assert memory.reason == "process-exit"


def test_events_wait_in_the_queue_while_the_backend_is_down(own_redis, clock):
    ledger = Ledger(RedisBackend(RedisTier.from_url(own_redis.url).client), clock=clock,
                    backoff_cap=0.0)
    ledger.missed("alice", "k1")
    assert ledger.flush()
    own_redis.kill()
    ledger.missed("alice", "k2")
    ledger.missed("alice", "k3")
    assert not ledger.flush()  # refused: still queued, nothing raised
    own_redis.start()
    assert ledger.flush()
    # the test server keeps nothing across a restart, so k1 went with it: k2 and k3 were
    # delivered after it came back
    assert [e.name for e in ledger.events("alice")] == ["k2", "k3"]
    assert ledger.dropped == 0


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path, clock):
    class Refusing:
        def append(self, events):
            raise ConnectionError("down")

    ledger = Ledger(Refusing(), clock=clock, max_pending=3)
    for i in range(5):
        ledger.missed("alice", f"k{i}")
    assert ledger.dropped == 2
    assert [e.name for e in ledger._pending] == ["k2", "k3", "k4"]


def test_users_and_events_round_trip_every_field(backend, clock):
    ledger = Ledger(backend, clock=clock)
    full = Event(clock.now, "write", "bob", "redis", "bob/00/x", 12, run="r", flow="f",
                 task="t", expires=clock.now + 5, proc="h:1")
    ledger.record(full, Event(clock.now + 1, "remove", "bob", "redis", "bob/00/x",
                              reason="evicted", before=clock.now))
    ledger.missed("carol", "k")
    assert ledger.users() == ["bob", "carol"]
    written, removed = ledger.events("bob")
    assert {k: v for k, v in written.fields().items()} == full.fields()
    assert (removed.reason, removed.before) == ("evicted", clock.now)


def test_entry_names_from_redis_keys():
    assert entry_name("flowcache:{alice/ab/abc}") == "alice/ab/abc"
    assert entry_name("flowcache:{alice/ab/abc}:3") == "alice/ab/abc"
    assert entry_name("flowcache:lock:{alice/ab/abc}") is None
    assert entry_name("flowcache:index:{alice}") is None
    assert entry_name("other:{alice/ab/abc}") is None


def test_a_configured_store_records_into_the_ledger_it_names(tmp_path, redis_url):
    base = {"FLOWCACHE_USER": "dora", "FLOWCACHE_SIGNING_KEY": new_key().hex()}
    local = StoreConfig.from_env({**base, "FLOWCACHE_STORE": f"memory+{tmp_path}/d",
                                  "FLOWCACHE_LEDGER": f"{tmp_path}/l.db"}).build()
    local.put(key(1), b"x")
    assert isinstance(ledger_of(local).backend, SQLiteBackend)
    assert len(ledger_of(local).events("dora")) == 2
    shared = StoreConfig.from_env({**base, "FLOWCACHE_STORE": f"{redis_url}+{tmp_path}/d"}
                                  ).build()
    shared.put(key(2), b"y")
    assert isinstance(ledger_of(shared).backend, RedisBackend)
    ledger_of(shared).flush()
    assert redis.Redis.from_url(redis_url).xlen("flowcache:ledger:{dora}") == 2
    off = StoreConfig.from_env({**base, "FLOWCACHE_STORE": f"{tmp_path}/d",
                                "FLOWCACHE_LEDGER": "off"}).build()
    assert ledger_of(off) is None
    shared.close()
    local.close()


def test_identity_of_a_listener_is_its_stores_user(make_store, tmp_path, clock):
    ledger = Ledger(SQLiteBackend(tmp_path / "l.db"), clock=clock)
    bob = make_store(ObjectTier(str(tmp_path / "d")), who=Identity("bob", new_key()))
    ledger.attach(bob)
    bob.put(key(1), b"b")
    assert [e.user for e in ledger.events("bob")] == ["bob"]
    assert ledger.events("alice") == []


def test_the_ledger_watch_command_ends_residencies_redis_evicts(own_redis, tmp_path):
    import signal

    from tests.prefect_helpers import eventually

    ledger_path = tmp_path / "ledger.sqlite3"
    env = {**os.environ, "FLOWCACHE_STORE": f"{own_redis.url}+{tmp_path / 'd'}",
           "FLOWCACHE_USER": "operator", "FLOWCACHE_LEDGER": str(ledger_path)}
    watch = subprocess.Popen([sys.executable, "-m", "flowcache.cli", "ledger", "watch",
                              "--configure"], env=env, stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        lines = [watch.stdout.readline(), watch.stdout.readline()]
        assert "notify-keyspace-events" in lines[0]
        assert lines[1].startswith("watching")  # subscribed: evictions from here on are seen
        admin = redis.Redis.from_url(own_redis.url)
        name = f"alice/00/{key(1)}"
        admin.set("flowcache:{" + name + "}", b"x" * 1000)
        admin.config_set("maxmemory-policy", "allkeys-lru")
        admin.config_set("maxmemory", 1)
        admin.ping()  # Redis evicts every key before running this
        admin.config_set("maxmemory", 0)
        assert admin.dbsize() == 0
        reader = Ledger(SQLiteBackend(ledger_path))
        removed = eventually(lambda: [e for e in reader.events("alice") if e.kind == "remove"],
                             120)
        assert [(e.tier, e.name, e.reason) for e in removed] == [("redis", name, "evicted")]
    finally:
        watch.send_signal(signal.SIGINT)
        output, _ = watch.communicate(timeout=120)
    assert watch.returncode == 0
    assert "recorded 1 removals" in output


def test_the_ledger_reconcile_command(redis_url, tmp_path):
    from typer.testing import CliRunner

    from flowcache.cli import app

    env = {"FLOWCACHE_STORE": f"{redis_url}+{tmp_path / 'd'}", "FLOWCACHE_USER": "erin",
           "FLOWCACHE_SIGNING_KEY": new_key().hex(),
           "FLOWCACHE_LEDGER": str(tmp_path / "ledger.sqlite3")}
    store = StoreConfig.from_env(env).build()
    store.put(key(1), b"e")
    ledger_of(store).flush()
    redis.Redis.from_url(redis_url).flushall()  # Redis lost it; nobody was watching
    result = CliRunner().invoke(app, ["ledger", "reconcile"], env=env)
    assert result.exit_code == 0, result.output
    assert "ended 1 residencies" in result.output
    gc = CliRunner().invoke(app, ["gc"], env=env)
    assert "ledger:" not in gc.output  # nothing left to reconcile
    store.close()


def test_node_tier_evictions_end_the_owners_copy(make_store, tmp_path, clock):
    from flowcache.tiers.node import NodeTier

    ledger = Ledger(SQLiteBackend(tmp_path / "l.db"), clock=clock)
    store = make_store(NodeTier(tmp_path / "node", max_bytes=10_000),
                       ObjectTier(str(tmp_path / "d")))
    ledger.attach(store)
    for i in range(4):
        store.put(key(i), bytes(4000))
        clock.advance(1)
    store.delete(key(3), reason="purged")
    removals = [(e.tier, e.name, e.reason, e.proc) for e in ledger.events("alice")
                if e.kind == "remove" and e.tier == "node"]
    assert removals[:2] == [("node", store.name_for(key(0)), "evicted", ""),
                            ("node", store.name_for(key(1)), "evicted", "")]
    assert removals[-1] == ("node", store.name_for(key(3)), "purged", "")


def test_events_redis_refuses_for_good_are_dropped_not_retried(tenant_redis, clock):
    _, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    ledger = Ledger(RedisBackend(redis.Redis.from_url(alice_url)), clock=clock)
    ledger.missed("alice", "mine")
    ledger.missed("bob", "not alice's to write")  # NOPERM: bob's stream
    assert ledger.flush()
    ledger.missed("alice", "later")
    assert ledger.flush()
    assert admin.xlen("flowcache:ledger:{alice}") == 2
    assert not admin.exists("flowcache:ledger:{bob}")


def test_reading_since_a_time_skips_older_history(backend, clock):
    """A flow run's report reads only its stretch of the ledger (the backend may return more,
    never less)."""
    ledger = Ledger(backend, clock=clock)
    ledger.record(Event(clock.now - 7200, "write", "dora", "object", "dora/00/old", 5),
                  Event(clock.now, "write", "dora", "object", "dora/00/new", 7, run="r1"))
    assert [e.name for e in ledger.events("dora")] == ["dora/00/old", "dora/00/new"]
    if isinstance(backend, SQLiteBackend):  # by the events' own times
        assert [e.name for e in ledger.events("dora", since=clock.now - 60)] == ["dora/00/new"]
    else:  # by the stream's IDs (the server's clock), less a margin for writers' skew
        now = time.time()
        assert len(ledger.events("dora", since=now - 60)) == 2
        assert len(ledger.events("dora", since=now + CLOCK_SKEW - 60)) == 2
        assert ledger.events("dora", since=now + CLOCK_SKEW + 60) == []


def test_a_refused_sqlite_batch_leaves_nothing_behind(tmp_path):
    """A batch goes in whole or not at all: the ledger retries a refused batch whole, so
    events left behind by a half-written one would be billed twice."""
    backend = SQLiteBackend(tmp_path / "l.db")
    good = Event(1.0, "write", "alice", "node", "alice/ab/" + "a" * 64, 10)
    bad = Event(2.0, "write", "alice", "node", "alice/ab/" + "b" * 64, object())  # unbindable
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever sqlite3 raises for it
        backend.append([good, bad])
    assert list(backend.events("alice")) == []
    backend.append([good])
    assert [event.name for event in backend.events("alice")] == [good.name]
