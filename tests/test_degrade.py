"""Degrade, don't fail: Redis may die and come back at any moment without a task failing."""

from __future__ import annotations

import hashlib
import logging

import pytest
import redis

from flowcache.errors import DurableWriteError
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier


def value_for(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 50)


def key_for(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=32).hexdigest()


def test_redis_killed_mid_run_loses_nothing_and_is_used_again(own_redis, tmp_path, make_store,
                                                              caplog):
    now = [0.0]
    hot = RedisTier.from_url(own_redis.url)
    store = make_store(hot, ObjectTier(str(tmp_path / "durable")), clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="flowcache.store")
    written: list[int] = []
    failures = []
    redis_writes_at = {}
    for op in range(1000):
        if op == 300:
            own_redis.kill()
        if op == 700:
            own_redis.start()
            now[0] += 60  # past any backoff: the next operation tries Redis again
        if op % 100 == 50:
            now[0] += 1.0  # time passes; during the outage the store keeps probing
        try:
            if op % 2 == 0:
                store.put(key_for(op), value_for(op))
                written.append(op)
            else:
                source = written[(op * 7) % len(written)]
                assert store.get(key_for(source)) == value_for(source)
        except (ConnectionError, DurableWriteError) as exc:  # a clear error is allowed...
            failures.append((op, exc))
        redis_writes_at[op] = store.counters.tier("redis").writes
    assert failures == []  # ...but with the durable tier up, none happened
    counters = store.counters.tier("redis")
    assert counters.errors >= 1
    assert counters.skipped > 0  # backing off, not hammering a dead server
    assert redis_writes_at[299] > 0
    assert redis_writes_at[699] == redis_writes_at[300]  # nothing reached Redis while down
    assert redis_writes_at[999] > redis_writes_at[700]  # used again after the restart
    client = redis.Redis.from_url(own_redis.url)
    assert len(client.keys("flowcache:*")) >= 140
    outage_warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_warnings) == 1
    assert any("is back" in r.getMessage() for r in caplog.records)
    for op in written:  # every value is still readable, from whichever tier
        assert store.get(key_for(op)) == value_for(op)


def test_redis_down_from_the_start_is_not_an_error(tmp_path, make_store):
    from tests.servers import free_port

    hot = RedisTier.from_url(f"redis://127.0.0.1:{free_port()}/0")
    store = make_store(hot, ObjectTier(str(tmp_path / "durable")))
    store.put("ab" * 32, b"v")
    assert store.get("ab" * 32) == b"v"
    assert store.counters.tier("object").hits == 1


def test_a_full_redis_is_skipped_for_writes(redis_url, tmp_path, make_store, caplog):
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 100_000)
    try:
        store = make_store(RedisTier.from_url(redis_url, max_item_bytes=None),
                           ObjectTier(str(tmp_path / "durable")))
        caplog.set_level(logging.WARNING, logger="flowcache.store")
        store.put("cd" * 32, b"x" * 500_000)  # over maxmemory: Redis answers OOM
        assert store.get("cd" * 32) == b"x" * 500_000
        assert store.counters.tier("redis").errors == 2  # the write and the promotion
        assert store.counters.tier("redis").writes == 0
        warnings = [r for r in caplog.records if "maxmemory" in r.getMessage()]
        assert len(warnings) == 1  # once, not on every write
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", "noeviction")


def test_a_dead_durable_tier_fails_the_write(tmp_path, make_store, s3):
    bucket = s3.new_bucket()
    objects = ObjectTier(f"s3://{bucket}/cache", storage_options=s3.options(proxied=True))
    store = make_store(objects)
    s3.proxy.reject_writes = True
    with pytest.raises(DurableWriteError, match=r"AccessDenied|Forbidden|Permission|denied"):
        store.put("ef" * 32, b"v")
