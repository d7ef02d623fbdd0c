"""TieredStore: read-through, promotion, durable-first writes, corruption handling."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
import redis

from flowcache.errors import CorruptEntry, DurableWriteError, ForeignEntry, UnserializableResult
from flowcache.frames import decode, encode
from flowcache.identity import Identity, new_key
from flowcache.lifetimes import TTL
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier

KEY = "0a" * 32


@dataclasses.dataclass
class Record:
    name: str
    values: list


VALUES = {
    "bytes": b"\x00\x01raw bytes",
    "large-bytes": os.urandom(3 << 20),
    "str": "text ✓",
    "int": 2**80,
    "float": 1.5,
    "none": None,
    "nested": {"a": [1, (2, 3)], "b": {"c": {4, 5}}},
    "numpy": np.arange(1000, dtype=np.float32).reshape(10, 100),
    "pandas": pd.DataFrame({"k": ["a", "b", "c"], "v": [1.0, 2.0, 3.0]}),
    "dataclass": Record("r", [1, 2]),
}


def same(left, right) -> bool:
    if isinstance(left, np.ndarray):
        return np.array_equal(left, right) and left.dtype == right.dtype
    if isinstance(left, pd.DataFrame):
        return left.equals(right)
    return left == right


def durable_tier(kind: str, request, tmp_path):
    if kind == "local":
        return ObjectTier(str(tmp_path / "durable"))
    endpoint = request.getfixturevalue(kind)
    bucket = endpoint.new_bucket()
    return ObjectTier(f"{endpoint.protocol}://{bucket}/cache", storage_options=endpoint.options())


@pytest.mark.parametrize("durable", ["local", "s3", "gcs"])
def test_every_value_round_trips_through_every_tier(durable, request, tmp_path, make_store,
                                                    redis_url):
    objects = durable_tier(durable, request, tmp_path)
    redis_tier = RedisTier.from_url(redis_url, max_item_bytes=None)
    store = make_store(MemoryTier(), redis_tier, objects)
    for index, (name, value) in enumerate(VALUES.items()):
        key = f"{index:02x}" * 32
        store.put(key, value)
        assert same(store.get(key), value), name
    assert store.counters.tier("memory").hits == len(VALUES)

    via_redis = make_store(RedisTier.from_url(redis_url, max_item_bytes=None), objects)
    via_durable = make_store(objects)
    for index, (name, value) in enumerate(VALUES.items()):
        key = f"{index:02x}" * 32
        assert same(via_redis.get(key), value), name
        assert same(via_durable.get(key), value), name
    assert via_redis.counters.tier("redis").hits == len(VALUES)
    assert via_durable.counters.tier("object").hits == len(VALUES)


def test_a_durable_hit_is_promoted_into_faster_tiers(tmp_path, make_store, redis_url):
    objects = ObjectTier(str(tmp_path / "durable"))
    make_store(objects).put(KEY, b"payload")
    memory, hot = MemoryTier(), RedisTier.from_url(redis_url)
    store = make_store(memory, hot, objects)
    assert store.get(KEY) == b"payload"
    assert store.counters.tier("object").hits == 1
    assert memory.exists(store.name_for(KEY))
    assert hot.exists(store.name_for(KEY))
    assert store.get(KEY) == b"payload"
    assert store.counters.tier("memory").hits == 1


def test_a_memory_hit_on_bytes_returns_the_stored_object(tmp_path, make_store):
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    data = os.urandom(1 << 20)
    store.put(KEY, data)
    assert store.get(KEY) is data


# -- durable writes ---------------------------------------------------------------------------
@pytest.mark.parametrize("durable", ["s3", "gcs"])
def test_a_rejected_durable_write_raises_and_leaves_no_hot_copy(durable, request, make_store,
                                                                redis_url):
    endpoint = request.getfixturevalue(durable)
    bucket = endpoint.new_bucket()
    objects = ObjectTier(f"{endpoint.protocol}://{bucket}/cache",
                         storage_options=endpoint.options(proxied=True))
    memory, hot = MemoryTier(), RedisTier.from_url(redis_url)
    store = make_store(memory, hot, objects)
    endpoint.proxy.reject_writes = True
    with pytest.raises(DurableWriteError) as info:
        store.put(KEY, b"value")
    assert KEY in str(info.value)
    assert len(memory) == 0
    assert list(hot.scan()) == []
    assert not objects.exists(store.name_for(KEY))
    endpoint.proxy.reject_writes = False
    store.put(KEY, b"value")
    assert make_store(objects).get(KEY) == b"value"


def test_a_failing_local_directory_raises_and_leaves_no_hot_copy(tmp_path, make_store,
                                                                 redis_url):
    root = tmp_path / "durable"
    objects = ObjectTier(str(root))
    memory, hot = MemoryTier(), RedisTier.from_url(redis_url)
    store = make_store(memory, hot, objects)
    (root / "alice").write_text("a file where the namespace directory should be")
    with pytest.raises(DurableWriteError):
        store.put(KEY, {"v": 1})
    assert len(memory) == 0
    assert list(hot.scan()) == []


def test_an_unserializable_result_writes_nothing(tmp_path, make_store):
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(MemoryTier(), objects)
    with pytest.raises(UnserializableResult):
        store.put(KEY, threading.Lock())
    assert list(objects.scan()) == []


def test_a_concurrent_writer_first_wins_and_is_verified(tmp_path, make_store):
    objects = ObjectTier(str(tmp_path / "durable"))
    first = make_store(objects)
    first.put(KEY, b"first")
    second = make_store(MemoryTier(), objects)
    entry = second.put(KEY, b"first")  # same key: the existing durable entry stands
    assert entry.load() == b"first"
    assert second.get(KEY) == b"first"


def test_an_invalid_existing_durable_frame_is_replaced(tmp_path, make_store):
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(objects)
    path = tmp_path / "durable" / store.name_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage that is not a frame")
    store.put(KEY, b"good")
    assert store.get(KEY) == b"good"


# -- corruption -------------------------------------------------------------------------------
class PlantFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def flip_redis_byte(redis_url: str, offset: int) -> None:
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("flowcache:*")
    value = bytearray(client.get(key))
    value[offset] ^= 0x01
    client.set(key, bytes(value))


def test_a_flipped_byte_in_redis_is_dropped_and_the_durable_copy_served(tmp_path, make_store,
                                                                        redis_url):
    objects = ObjectTier(str(tmp_path / "durable"))
    hot = RedisTier.from_url(redis_url)
    store = make_store(hot, objects)
    store.put(KEY, {"value": 42})
    flip_redis_byte(redis_url, -40)
    stored = hot.get(store.name_for(KEY))
    with pytest.raises(CorruptEntry):  # the frame itself is rejected...
        decode(stored, identity=store.identity, key=KEY)
    assert store.get(KEY) == {"value": 42}  # ...and the store recovers from the durable tier
    counters = store.counters.tier("redis")
    assert counters.corrupt == 1
    assert store.counters.tier("object").hits == 1
    assert store.get(KEY) == {"value": 42}  # the re-promoted copy is good
    assert store.counters.tier("redis").hits == 1


def test_a_flipped_byte_in_the_durable_tier_raises_and_is_never_unpickled(tmp_path,
                                                                          make_store):
    target = tmp_path / "planted"
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(objects)
    store.put(KEY, PlantFile(str(target)), serializer="pickle")
    assert not target.exists()  # writing pickles it; only unpickling would create it
    path = tmp_path / "durable" / store.name_for(KEY)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry):
        store.get(KEY)
    assert not target.exists()
    outcome = store.get_or_compute(KEY, lambda: "recomputed")
    assert (outcome.hit, outcome.value) == (False, "recomputed")
    assert store.get(KEY) == "recomputed"


def test_a_frame_planted_by_someone_without_the_key_is_not_unpickled(tmp_path, make_store):
    target = tmp_path / "planted"
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(MemoryTier(), objects)
    mallory = Identity("alice", new_key())  # claims to be alice, lacks her key
    frame = encode(PlantFile(str(target)), key=KEY, identity=mallory, serializer="pickle")
    objects.put(store.name_for(KEY), frame)
    with pytest.raises(CorruptEntry, match="signature"):
        store.get(KEY)
    assert not target.exists()


def test_another_users_frame_is_a_permission_error(tmp_path, make_store):
    objects = ObjectTier(str(tmp_path / "durable"))
    bob = make_store(objects, who=Identity("bob", new_key()))
    bob.put(KEY, b"bob's")
    alice = make_store(objects)
    objects.put(alice.name_for(KEY), objects.get(bob.name_for(KEY)))  # copied into her space
    with pytest.raises(ForeignEntry):
        alice.get(KEY)
    with pytest.raises(PermissionError):
        alice.get(KEY)


# -- lifetimes, deletes, single flight ---------------------------------------------------------
def test_expired_entries_are_misses_in_every_tier(tmp_path, make_store, redis_url):
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(MemoryTier(), RedisTier.from_url(redis_url), objects)
    written_earlier = time.time() - 10
    frame = encode(b"short-lived", key=KEY, identity=store.identity, lifetime=TTL(5),
                   now=written_earlier)
    store.put_frame(KEY, frame)
    assert store.get(KEY, None) is None
    assert not objects.exists(store.name_for(KEY))  # removed on read once expired
    store.put(KEY, b"fresh", lifetime=TTL(60))
    assert store.get(KEY) == b"fresh"


def test_delete_removes_the_key_from_every_tier(tmp_path, make_store, redis_url):
    memory, hot = MemoryTier(), RedisTier.from_url(redis_url)
    objects = ObjectTier(str(tmp_path / "durable"))
    store = make_store(memory, hot, objects)
    store.put(KEY, b"x")
    assert store.delete(KEY) is True
    name = store.name_for(KEY)
    assert not memory.exists(name)
    assert not hot.exists(name)
    assert not objects.exists(name)
    assert store.delete(KEY) is False


def test_get_or_compute_hits_after_the_first_call(tmp_path, make_store):
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    calls = []
    first = store.get_or_compute(KEY, lambda: calls.append(1) or [1, 2])
    second = store.get_or_compute(KEY, lambda: calls.append(1) or [1, 2])
    assert (first.hit, second.hit) == (False, True)
    assert second.value == [1, 2]
    assert calls == [1]
    assert second.header.meta["compute_seconds"] >= 0
    refreshed = store.get_or_compute(KEY, lambda: [3], refresh=True)
    assert refreshed.hit is False
    assert store.get(KEY) == [3]


def test_threads_racing_for_one_key_compute_once(tmp_path, make_store):
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    calls = []
    barrier = threading.Barrier(8)
    results = []

    def produce():
        calls.append(1)
        time.sleep(0.2)  # simulated work, so the others arrive while it runs
        return b"result"

    def worker():
        barrier.wait()
        results.append(store.get_or_compute(KEY, produce).value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == [b"result"] * 8


def test_scan_and_headers_list_only_this_users_entries(tmp_path, make_store):
    objects = ObjectTier(str(tmp_path / "durable"))
    alice = make_store(objects)
    bob = make_store(objects, who=Identity("bob", new_key()))
    alice.put(KEY, b"a", meta={"task": "t1"})
    bob.put("0b" * 32, b"b")
    listed = list(alice.headers())
    assert [name for name, _ in listed] == [alice.name_for(KEY)]
    assert listed[0][1].meta["task"] == "t1"
