"""The store under faults: crafted frames, long headers, missing buckets, double counting,
leftovers of interrupted writes, and backends that refuse, hang or run out of connections."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time

import pytest

from flowcache.errors import CorruptEntry, DurableWriteError
from flowcache.lifetimes import FlowScoped
from flowcache.listeners import StoreListener
from flowcache.purge import RunTracker, clear, sweep, tracker_for
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.spec import TierSpec

KEY = "7e" * 32


class Events(StoreListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def on_hit(self, key, tier, header) -> None:
        self.seen.append(("hit", key))

    def on_miss(self, key) -> None:
        self.seen.append(("miss", key))


def craft_size(path, size: int) -> None:
    """Rewrite a stored frame's header to claim a payload of ``size`` bytes."""
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack_from("<I", data, 5)
    header = json.loads(data[9:9 + length])
    header["size"] = size
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(bytes(data[:5]) + struct.pack("<I", len(raw)) + raw
                     + bytes(data[9 + length:]))


def test_a_crafted_huge_size_is_corrupt_then_recomputed_and_collected(tmp_path, make_store):
    durable = ObjectTier(str(tmp_path / "durable"))
    store = make_store(durable)
    store.put(KEY, b"good bytes")
    path = tmp_path / "durable" / store.name_for(KEY)
    craft_size(path, 1 << 50)  # a petabyte: allocating it would raise MemoryError
    with pytest.raises(CorruptEntry, match="header says"):
        store.get(KEY)
    assert [name for name, header in store.headers()] == [store.name_for(KEY)]
    assert dict(store.headers())[store.name_for(KEY)] is None  # unreadable for gc
    report = sweep(store)
    assert report.entries == 1
    assert not path.exists()  # gc removed it
    store.put(KEY, b"good bytes")
    craft_size(path, 1 << 50)
    outcome = store.get_or_compute(KEY, lambda: b"recomputed")
    assert (outcome.value, outcome.hit) == (b"recomputed", False)
    assert store.get(KEY) == b"recomputed"


def test_gc_and_clear_keep_fresh_entries_with_long_headers(tmp_path, make_store):
    store = make_store(ObjectTier(str(tmp_path / "durable")))
    store.put(KEY, b"value", meta={"notes": "x" * 6000})  # a header of over 4 KiB
    ((_, header),) = list(store.headers())
    assert header is not None
    assert header.meta["notes"] == "x" * 6000
    assert sweep(store).entries == 0
    assert clear(store, older_than=3600).entries == 0
    assert store.get(KEY) == b"value"


def test_one_lookup_that_computes_is_one_miss(tmp_path, make_store):
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    events = Events()
    store.add_listener(events)
    store.get_or_compute(KEY, lambda: b"made")
    assert events.seen == [("miss", KEY)]
    store.get_or_compute(KEY, lambda: b"made")
    assert events.seen == [("miss", KEY), ("hit", KEY)]


def test_a_missing_bucket_fails_before_the_body_runs(s3, make_store):
    store = make_store(ObjectTier("s3://no-such-bucket-here/cache",
                                  storage_options=s3.options()))
    ran = []
    with pytest.raises(DurableWriteError, match="bucket 'no-such-bucket-here' does not exist"):
        store.get_or_compute(KEY, lambda: ran.append(1) or b"x")
    assert ran == []


def test_a_refused_run_marker_is_a_durable_write_error(s3, make_store):
    store = make_store(ObjectTier("s3://no-such-bucket-here/cache",
                                  storage_options=s3.options()))
    with pytest.raises(DurableWriteError, match="run marker"):
        RunTracker(store).record("run-1", KEY)


def test_gc_never_purges_a_run_whose_process_is_alive_here(tmp_path, make_store):
    store = make_store(ObjectTier(str(tmp_path / "durable")))
    tracker = tracker_for(store)
    tracker.record("live-run", KEY)
    store.put(KEY, b"intermediate", lifetime=FlowScoped("live-run"))
    time.sleep(0.05)
    report = sweep(store, stale_after=0.01)  # its heartbeat is "stale", its process alive
    assert report.runs == 0
    assert store.get(KEY) == b"intermediate"
    tracker.leave("live-run")


def test_gc_removes_what_killed_writers_left_behind(tmp_path, make_store):
    store = make_store(ObjectTier(str(tmp_path / "durable")))
    store.put(KEY, b"kept")
    directory = (tmp_path / "durable" / store.name_for(KEY)).parent
    debris = directory / f"{KEY}.tmp-{'0' * 32}"
    debris.write_bytes(b"half a frame")
    fresh = directory / f"{'8' * 64}.tmp-{'1' * 32}"
    fresh.write_bytes(b"a write in progress")
    old = time.time() - 7200
    os.utime(debris, (old, old))
    report = sweep(store)
    assert report.debris == 1
    assert not debris.exists()
    assert fresh.exists()  # a writer may still be at work on it
    assert store.get(KEY) == b"kept"
    clear(store)  # everything of this user, temporary files included
    assert not fresh.exists()


def test_a_crafted_redis_manifest_count_is_rejected_not_fetched(redis_url, make_store, tmp_path):
    import redis

    from flowcache.tiers.redis import RedisTier

    tier = RedisTier.from_url(redis_url, inline_bytes=100, part_bytes=1000)
    store = make_store(tier, ObjectTier(str(tmp_path / "durable")))
    store.put(KEY, os.urandom(5000))
    client = redis.Redis.from_url(redis_url)
    manifest_key = f"flowcache:{{{store.name_for(KEY)}}}"
    client.set(manifest_key, b"FCRP" + struct.pack("<I", 2**32 - 1))  # claims 4 billion parts
    done = threading.Event()
    threading.Thread(target=lambda: (store.get(KEY), done.set()), daemon=True).start()
    assert done.wait(60)  # answered from the durable tier, not after 4 billion GETs
    assert store.counters.tier("redis").corrupt == 1


# -- Redis that refuses, blocks, runs out of connections ----------------------------------------
def test_a_thread_pool_wider_than_the_connection_pool_is_not_an_outage(redis_url, make_store,
                                                                      tmp_path, caplog):
    """Prefect's default thread pool has no limit: 300 tasks at once share 64 connections."""
    from flowcache.tiers.redis import RedisTier

    store = make_store(RedisTier.from_url(redis_url), ObjectTier(str(tmp_path / "d"),
                                                                 fsync=False))
    keys = [f"{i:064x}" for i in range(300)]
    for key in keys:
        store.put(key, b"v" * 100)
    start = threading.Barrier(300)
    errors = []

    def read(key: str) -> None:
        start.wait()
        try:
            assert store.get(key) == b"v" * 100
        except Exception as exc:  # the value is always right: the question is the tier
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    counters = store.counters.tier("redis")
    assert errors == []
    assert (counters.errors, counters.skipped) == (0, 0)
    assert counters.hits == 300
    assert "unavailable" not in caplog.text


def test_a_value_over_protocol_limits_is_refused_not_an_outage(make_store, tmp_path):
    from flowcache.tiers.redis import RedisTier
    from tests.servers import RedisServer

    server = RedisServer(None, "--proto-max-bulk-len", "1mb").start()
    try:
        store = make_store(RedisTier.from_url(server.url, max_item_bytes=None),
                           ObjectTier(str(tmp_path / "d"), fsync=False))
        small, big = "51" * 32, "b1" * 32
        store.put(small, b"small")
        store.put(big, os.urandom(3 << 20))  # one 3 MiB part: Redis drops the connection
        counters = store.counters.tier("redis")
        assert counters.errors == 1  # that write failed, and only that write
        assert store.get(small) == b"small"
        assert counters.hits == 1  # Redis still serves small reads
        assert counters.skipped == 0
    finally:
        server.stop()


def test_locks_degrade_when_redis_is_out_of_memory_or_busy(make_store, tmp_path):
    import redis

    from flowcache.locks import FileLocks, RedisLocks
    from flowcache.tiers.redis import RedisTier
    from tests.servers import RedisServer

    server = RedisServer(None, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction").start()
    try:
        admin = redis.Redis.from_url(server.url)
        tier = RedisTier.from_url(server.url)
        store = make_store(tier, ObjectTier(str(tmp_path / "d"), fsync=False),
                           locks=RedisLocks(tier.client, fallback=FileLocks(tmp_path / "fl")))
        filler = 0
        while True:  # fill Redis until it refuses writes
            try:
                admin.set(f"filler:{filler}", os.urandom(64 << 10))
            except redis.exceptions.OutOfMemoryError:
                break
            filler += 1
        outcome = store.get_or_compute("0f" * 32, lambda: b"computed despite OOM")
        assert outcome.value == b"computed despite OOM"
        assert store.durable.exists(store.name_for("0f" * 32))
        admin.flushall()
        admin.config_set("busy-reply-threshold", 100)
        script = threading.Thread(target=lambda: _busy(server.url), daemon=True)
        script.start()
        assert _wait_until(lambda: _answers_busy(server.url), 60)
        outcome = store.get_or_compute("0e" * 32, lambda: b"computed while BUSY")
        assert outcome.value == b"computed while BUSY"
        script.join(60)
    finally:
        server.stop()


def _busy(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=60)
    with contextlib.suppress(redis.exceptions.RedisError):
        client.eval("local t0 = redis.call('time')[1] "
                    "while tonumber(redis.call('time')[1]) - t0 < 4 do end return 1", 0)


def _answers_busy(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).get("anything")
    except redis.exceptions.BusyLoadingError:
        return False
    except redis.exceptions.ResponseError as exc:
        return "BUSY" in str(exc)
    return False


def _wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


class DownTier:
    """A hot tier whose backend is down: each call counts, and fails as an outage."""

    def __init__(self) -> None:
        from flowcache.tiers import BaseTier

        self.calls = 0
        self.lock = threading.Lock()
        outer = self

        class Down(BaseTier):
            name = "down"

            def get(self, name):
                from flowcache.errors import TierUnavailable

                with outer.lock:
                    outer.calls += 1
                time.sleep(0.2)  # a slow failure, so concurrent callers overlap
                raise TierUnavailable("the backend is down")

            def put(self, name, frame, *, ttl=None, exclusive=False):
                self.get(name)

            exists = delete = scan = get

        self.tier = Down()


def test_after_a_backoff_the_breaker_sends_one_trial_not_one_per_thread(tmp_path, make_store):
    now = [0.0]
    down = DownTier()
    store = make_store(down.tier, ObjectTier(str(tmp_path / "d"), fsync=False),
                       clock=lambda: now[0])
    store.put(KEY, b"durable")  # the put's hot copy fails: the breaker opens
    assert down.calls == 1
    now[0] = 1000.0  # long past the backoff
    threads = [threading.Thread(target=store.get, args=(KEY,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert down.calls == 2  # one trial went to the backend; the other 19 read the durable tier


def test_a_frozen_redis_costs_a_bounded_wait_then_is_skipped(make_store, tmp_path):
    import signal

    from flowcache.tiers.redis import RedisTier
    from tests.servers import RedisServer

    server = RedisServer().start()
    try:
        tier = TierSpec.parse(server.url + "?socket_timeout=1s&socket_connect_timeout=1s"
                              ).build()
        assert isinstance(tier, RedisTier)
        store = make_store(tier, ObjectTier(str(tmp_path / "d"), fsync=False))
        store.put(KEY, b"value")
        server.proc.send_signal(signal.SIGSTOP)  # frozen: connections open, nothing answers
        try:
            done = threading.Event()
            threading.Thread(target=lambda: (store.get(KEY), done.set()), daemon=True).start()
            assert done.wait(60)  # bounded by the timeouts (about 3 s), not forever
            started = time.monotonic()
            assert store.get(KEY) == b"value"  # the breaker is open: no wait at all now
            assert time.monotonic() - started < 30
            assert store.counters.tier("redis").skipped >= 1
        finally:
            server.proc.send_signal(signal.SIGCONT)
    finally:
        server.stop()


def test_a_frozen_object_store_fails_the_write_in_bounded_time(s3, make_store):
    bucket = s3.new_bucket()
    spec = TierSpec.parse(f"s3://{bucket}/cache?timeout=2s")
    store = make_store(spec.build({"s3": s3.options(proxied=True)}))
    assert store.durable.timeout == 2.0
    store.put(KEY, b"before")
    s3.proxy.freeze()
    outcome: list = []

    def write() -> None:
        try:
            store.put("9a" * 32, b"while frozen")
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(120)
    s3.proxy.reset()
    assert not thread.is_alive()  # it gave up; with no deadline it would hang for minutes
    assert isinstance(outcome[0], DurableWriteError)
