"""Writing through flowcache::: confirmed at the origin before close(), then cached."""

from __future__ import annotations

import gc
import hashlib
import os

import fsspec
import pytest

from flowcache.errors import DurableWriteError
from flowcache.files.records import BLOCK_KIND, RECORD_KIND
from flowcache.files.writes import Spool, confirm
from flowcache.listeners import StoreListener
from flowcache.purge import tracker_for
from tests import test_files_support as support
from tests.test_files_support import SMALL_BLOCK, durable_keys, make_remote

remote = support.remote  # fixtures
file_store = support.file_store


def test_a_confirmed_write_is_read_back_from_the_cache(remote, file_store):
    data = os.urandom(6 * SMALL_BLOCK + 99)
    with fsspec.open(f"flowcache::{remote.url('out/w.bin')}", "wb", store=file_store,
                     block_size=SMALL_BLOCK, **remote.storage_options()) as handle:
        handle.write(data[:1000])
        handle.write(data[1000:])
    assert remote.direct().cat_file(remote.path("out/w.bin")) == data  # at the origin
    if remote.kind != "local":
        remote.endpoint.proxy.reset()
    reader = remote.cache(file_store)  # a downstream task
    assert reader.cat_file(remote.path("out/w.bin")) == data
    if remote.kind != "local":
        assert remote.data_gets("out/w.bin") == 0, "the downstream read went to the bucket"
    else:
        assert file_store.counters.snapshot()["tiers"]["memory"]["hits"] >= 7


def test_overwriting_replaces_the_cached_version(remote, file_store):
    fs = remote.cache(file_store)
    path = remote.path("v.txt")
    fs.pipe_file(path, b"first version " * 10000)
    assert fs.cat_file(path) == b"first version " * 10000
    old_keys = durable_keys(file_store)
    with fs.open(path, "w") as text:  # text mode through fsspec's wrapper
        text.write("second version\n" * 10000)
    assert fs.cat_file(path) == b"second version\n" * 10000
    assert remote.direct().cat_file(path) == b"second version\n" * 10000
    stale = old_keys - durable_keys(file_store)
    assert len(stale) == len(old_keys) - 1, "all blocks of the first version go, the record stays"


def test_large_writes_spool_to_disk(remote, file_store, tmp_path):
    data = os.urandom(3 << 20)
    fs = remote.cache(file_store, spool_bytes=256 << 10, spool_dir=str(tmp_path))
    with fs.open(remote.path("large.bin"), "wb") as handle:
        for start in range(0, len(data), 100_000):
            handle.write(data[start:start + 100_000])
        assert handle.spool.path is not None  # past spool_bytes: on disk
    assert hashlib.sha256(remote.direct().cat_file(remote.path("large.bin"))).digest() == \
        hashlib.sha256(data).digest()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("flowcache-spool-")]


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_a_rejected_write_raises_from_close_and_caches_nothing(kind, request, tmp_path,
                                                               file_store):
    remote_ = make_remote(request, kind, tmp_path)
    remote_.endpoint.proxy.reject_writes = True
    fs = remote_.cache(file_store)
    handle = fs.open(remote_.path("refused.bin"), "wb")
    handle.write(os.urandom(4 * SMALL_BLOCK))
    with pytest.raises(DurableWriteError, match=r"refused\.bin"):
        handle.close()
    assert handle.closed
    assert durable_keys(file_store) == set()
    for tier in file_store.hot:
        assert list(tier.scan("alice/")) == [], f"{tier.name} holds a copy of a refused write"
    remote_.endpoint.proxy.reject_writes = False
    assert not remote_.direct().exists(remote_.path("refused.bin"))


def test_an_exception_in_the_with_block_or_no_close_writes_nothing(remote, file_store):
    fs = remote.cache(file_store)

    def task() -> None:
        with fs.open(remote.path("half.bin"), "wb") as handle:
            handle.write(b"half a file")
            raise RuntimeError("the task failed mid-write")

    with pytest.raises(RuntimeError):
        task()
    abandoned = fs.open(remote.path("dropped.bin"), "wb")
    abandoned.write(b"never closed")
    del abandoned
    gc.collect()
    assert not remote.direct().exists(remote.path("half.bin"))
    assert not remote.direct().exists(remote.path("dropped.bin"))
    assert durable_keys(file_store) == set()


def test_confirmation_rejects_a_checksum_that_does_not_match(tmp_path):
    spool = Spool(1 << 20)
    spool.write(b"the bytes we sent")
    good = hashlib.md5(b"the bytes we sent").hexdigest()
    fs = fsspec.filesystem("memory")
    confirm(fs, "x", "s3://b/x", {"size": 17, "ETag": f'"{good}"'}, spool)
    with pytest.raises(DurableWriteError, match="does not match"):
        confirm(fs, "x", "s3://b/x", {"size": 17, "ETag": f'"{"0" * 32}"'}, spool)
    with pytest.raises(DurableWriteError, match="17 bytes"):
        confirm(fs, "x", "s3://b/x", {"size": 16, "ETag": f'"{good}"'}, spool)


def test_flow_scoped_files_are_purged_with_the_run(remote, file_store):
    fs = remote.cache(file_store, lifetime="flow", run_id="run-42",
                      meta={"flow": "pipeline", "task": "convert", "run": "run-42"})
    fs.pipe_file(remote.path("tmp.bin"), os.urandom(3 * SMALL_BLOCK))
    other = remote.cache(file_store, lifetime="keep")
    remote.write("kept.bin", b"kept")
    assert other.cat_file(remote.path("kept.bin")) == b"kept"
    other.wait()
    before = durable_keys(file_store)
    report = tracker_for(file_store).purge("run-42")
    assert report.entries == 4  # three blocks and the record
    assert len(durable_keys(file_store)) == len(before) - 4
    assert remote.direct().exists(remote.path("tmp.bin")), "purging the cache deleted the file"


def test_store_listeners_see_every_cached_block(tmp_path, make_store, request):
    """The ledger's seam: durable and hot writes of blocks carry the run, flow and task."""
    from flowcache.tiers.memory import MemoryTier
    from flowcache.tiers.objects import ObjectTier

    class Recorder(StoreListener):
        def __init__(self):
            self.writes = []

        def on_write(self, name, tier, header, nbytes):
            self.writes.append((tier, header.meta.get("kind"), header.meta.get("run"),
                                header.lifetime.get("kind")))

    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable")))
    recorder = Recorder()
    store.add_listener(recorder)
    remote_ = make_remote(request, "local", tmp_path)
    fs = remote_.cache(store, lifetime="2h", meta={"run": "r1", "flow": "f", "task": "t"})
    fs.pipe_file(remote_.path("l.bin"), os.urandom(2 * SMALL_BLOCK + 1))
    durable = [w for w in recorder.writes if w[0] == "object"]
    assert sorted(w[1] for w in durable) == [BLOCK_KIND] * 3 + [RECORD_KIND]
    assert {(w[2], w[3]) for w in recorder.writes} == {("r1", "ttl")}
    assert len([w for w in recorder.writes if w[0] == "memory"]) == 4
