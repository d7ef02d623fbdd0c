"""Reading through flowcache::: served from the tiers, exact range bytes, changes seen."""

from __future__ import annotations

import os
import random

import fsspec
import pytest

from flowcache.errors import ConfigError
from flowcache.files import FlowcacheFileSystem, RemoteChanged, parse_consistency
from flowcache.files.versions import block_key, record_key
from tests import test_files_support as support
from tests.test_files_support import SMALL_BLOCK, durable_keys

remote = support.remote  # fixtures
file_store = support.file_store


def test_a_second_read_is_served_from_the_cache(remote, file_store):
    data = os.urandom(5 * SMALL_BLOCK + 123)
    remote.write("a.bin", data)
    assert remote.cache(file_store).cat_file(remote.path("a.bin")) == data
    remote.cache(file_store).wait()
    with remote.cache(file_store).open(remote.path("a.bin")) as handle:
        assert handle.read() == data
    hits = file_store.counters.snapshot()["tiers"]["memory"]["hits"]
    assert hits >= 6  # every block of the second read came from the memory tier
    if remote.kind != "local":
        assert remote.data_gets("a.bin") == 1  # six blocks, one range request, one read


def test_read_after_remote_change_returns_the_new_bytes(remote, file_store):
    """consistency="always": the next open sees the new version; the old blocks are dropped."""
    old, new = os.urandom(3 * SMALL_BLOCK), os.urandom(3 * SMALL_BLOCK)
    remote.write("b.bin", old)
    fs = remote.cache(file_store, consistency="always")
    assert fs.cat_file(remote.path("b.bin")) == old
    fs.wait()
    first = fs.current_version(remote.path("b.bin"))
    old_blocks = {block_key("alice", first, SMALL_BLOCK, i) for i in range(3)}
    assert old_blocks <= durable_keys(file_store)

    remote.write("b.bin", new)  # same size: only the fingerprint tells them apart
    with fsspec.open(f"flowcache::{remote.url('b.bin')}", "rb", store=file_store,
                     block_size=SMALL_BLOCK, **remote.storage_options()) as handle:
        assert handle.read() == new
    assert fs.cat_file(remote.path("b.bin"), 10, 20) == new[10:20]
    fs.wait()
    keys = durable_keys(file_store)
    assert not old_blocks & keys, "the replaced version's blocks are still cached"
    assert record_key("alice", first.url) in keys


def test_block_reads_equal_range_reads(remote, file_store):
    """Any range, across block boundaries, cold or warm, is exactly the remote's range."""
    data = os.urandom(17 * SMALL_BLOCK + 4321)
    remote.write("big.bin", data)
    direct = remote.direct()
    fs = remote.cache(file_store)
    path = remote.path("big.bin")
    rng = random.Random(8)
    size = len(data)
    bs = SMALL_BLOCK
    ranges = [(0, 1), (bs - 1, bs + 1), (3 * bs, 5 * bs), (size - 10, size), (size - 1, size + 50),
              (5 * bs + 7, 9 * bs - 3)] + [tuple(sorted(rng.sample(range(size), 2)))
                                           for _ in range(12)]
    for start, end in ranges:  # first pass: mostly cold; second: warm
        expected = direct.cat_file(path, start=start, end=min(end, size))
        assert fs.cat_file(path, start, end) == expected == data[start:end]
    fs.wait()
    with fs.open(path) as handle:
        for start, end in ranges:
            handle.seek(start)
            assert handle.read(end - start) == data[start:end]
        handle.seek(-100, 2)
        assert handle.read() == data[-100:]
    assert fs.cat_file(path, -50) == data[-50:]


def test_range_reads_cache_only_the_blocks_they_touch(remote, file_store):
    data = os.urandom(40 * SMALL_BLOCK)
    remote.write("huge.bin", data)
    fs = remote.cache(file_store)
    path = remote.path("huge.bin")
    with fs.open(path) as handle:
        handle.seek(10 * SMALL_BLOCK + 100)
        assert handle.read(SMALL_BLOCK) == data[10 * SMALL_BLOCK + 100:11 * SMALL_BLOCK + 100]
    fs.wait()
    version = fs.current_version(path)
    cached = {i for i in range(40)
              if block_key("alice", version, SMALL_BLOCK, i) in durable_keys(file_store)}
    assert cached == {10, 11}


def test_every_n_seconds_and_never(tmp_path, file_store):
    from tests.test_files_support import Remote

    root = tmp_path / "r"
    root.mkdir()
    local = Remote("local", str(root))
    now = [1000.0]
    local.write("c.txt", b"version one")
    lazy = local.cache(file_store, consistency="60s", clock=lambda: now[0])
    path = local.path("c.txt")
    assert lazy.cat_file(path) == b"version one"
    local.write("c.txt", b"version two!")
    assert lazy.cat_file(path) == b"version one"  # within the interval: not checked
    now[0] += 61
    assert lazy.cat_file(path) == b"version two!"

    never = local.cache(file_store, consistency="never")
    local.write("c.txt", b"version three")
    assert never.cat_file(path) == b"version two!"  # immutable by declaration
    never.check(path)
    assert never.cat_file(path) == b"version three"


def test_never_trusts_another_process_record(s3, make_store, tmp_path, identity):
    """A new process (an empty version book) under "never" reads without a metadata request."""
    from tests.test_files_support import make_remote

    class Request:
        def getfixturevalue(self, name):
            return s3

    remote_s3 = make_remote(Request(), "s3", tmp_path)
    data = os.urandom(2 * SMALL_BLOCK)
    remote_s3.write("d.bin", data)

    def store():
        from flowcache.tiers.node import NodeTier
        from flowcache.tiers.objects import ObjectTier

        return make_store(NodeTier(tmp_path / "node"), ObjectTier(str(tmp_path / "durable")))

    assert remote_s3.cache(store(), consistency="never").cat_file(remote_s3.path("d.bin")) == data
    remote_s3.cache(store()).wait()
    s3.proxy.reset()
    fresh = store()  # another store object: nothing known in this "process"
    assert remote_s3.cache(fresh, consistency="never").cat_file(remote_s3.path("d.bin")) == data
    assert s3.proxy.counts == {}, f"requests reached the bucket: {dict(s3.proxy.counts)}"


def test_missing_files_and_deleted_files(remote, file_store):
    fs = remote.cache(file_store)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fs.open(remote.path("nope.bin"))
    with pytest.raises(FileNotFoundError):
        fs.cat_file(remote.path("nope.bin"))
    remote.write("gone.bin", b"soon gone" * 1000)
    assert fs.cat_file(remote.path("gone.bin")) == b"soon gone" * 1000
    fs.wait()
    assert len(durable_keys(file_store)) > 1
    remote.delete("gone.bin")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(remote.path("gone.bin"))
    assert durable_keys(file_store) == set(), "the deleted file's blocks and record remain"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_file_replaced_during_a_read_is_not_cached_as_the_old_version(kind, request, tmp_path,
                                                                         file_store):
    from tests.test_files_support import make_remote

    remote_ = make_remote(request, kind, tmp_path)
    old = os.urandom(4 * SMALL_BLOCK)
    remote_.write("e.bin", old)
    fs = remote_.cache(file_store)
    path = remote_.path("e.bin")
    with fs.open(path) as handle:
        assert handle.read(10) == old[:10]  # block 0 cached, version fixed at open
        remote_.write("e.bin", os.urandom(4 * SMALL_BLOCK))
        handle.seek(3 * SMALL_BLOCK)
        with pytest.raises(RemoteChanged, match="open it again"):
            handle.read(10)
    fs.wait()
    stale = fs.reader(path, handle.version)
    assert stale.lookup(3) is None  # nothing cached under the old version's key


def test_bad_input_is_a_clear_error(file_store):
    with pytest.raises(ValueError, match="nosuch"):
        fsspec.open("flowcache::nosuch://bucket/key", store=file_store).open()
    with pytest.raises(ValueError, match="chained URL"):
        FlowcacheFileSystem(store=file_store)
    fs = FlowcacheFileSystem(target_protocol="file", store=file_store)
    with pytest.raises(ValueError, match="not 'ab'"):
        fs.open("/tmp/x", "ab")
    with pytest.raises(ValueError, match="block_size"):
        FlowcacheFileSystem(target_protocol="file", store=file_store, block_size=10)
    with pytest.raises(ValueError, match="run"):
        FlowcacheFileSystem(target_protocol="file", store=file_store, lifetime="flow")
    with pytest.raises(ConfigError, match="consistency"):
        parse_consistency("sometimes")
    assert parse_consistency(30).seconds == 30
    assert parse_consistency("immutable").name == "never"


def test_cat_file_never_returns_the_version_it_read_ahead_once_the_file_changed(remote,
                                                                                file_store):
    """cat_file reads the known version's blocks while the check runs; a changed file must
    still come back as its new bytes (and a deleted one as FileNotFoundError)."""
    old, new = os.urandom(4 * SMALL_BLOCK), os.urandom(4 * SMALL_BLOCK)
    remote.write("f.bin", old)
    fs = remote.cache(file_store, consistency="always")
    path = remote.path("f.bin")
    assert fs.cat_file(path) == old
    fs.wait()
    remote.write("f.bin", new)
    fresh = remote.cache(file_store, consistency="always")  # knows the old one from the record
    assert fresh.cat_file(path) == new
    assert fresh.cat_file(path, 5, 50) == new[5:50]
    fs.wait()
    remote.delete("f.bin")
    with pytest.raises(FileNotFoundError):
        fresh.cat_file(path)
