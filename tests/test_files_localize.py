"""localize(): a node-local path per file version; sweep_files(): copies of gone files removed."""

from __future__ import annotations

import os
import socket

import pytest

from flowcache.files import localize
from flowcache.files.sweep import sweep_files
from flowcache.files.versions import record_key
from tests import test_files_support as support
from tests.test_files_support import SMALL_BLOCK, durable_keys, make_remote

file_store = support.file_store  # fixture


@pytest.fixture(params=["s3", "gcs"])
def bucket(request, tmp_path):
    return make_remote(request, request.param, tmp_path)


def test_localize_is_valid_while_the_fingerprint_matches(bucket, file_store, tmp_path):
    local_dir = tmp_path / "localized"
    first = os.urandom(3 * SMALL_BLOCK + 5)
    bucket.write("ref/genome.fa", first)

    def local() -> os.PathLike:
        return localize(bucket.url("ref/genome.fa"), store=file_store, directory=local_dir,
                        storage_options=bucket.options, block_size=SMALL_BLOCK)

    path = local()
    assert path.read_bytes() == first
    assert path.name == "genome.fa"
    assert local_dir in path.parents
    assert not path.stat().st_mode & 0o222  # read-only: tasks cannot corrupt the copy
    bucket.endpoint.proxy.reset()
    assert local() == path  # unchanged: the same file, no download
    assert bucket.data_gets("ref/genome.fa") == 0

    second = os.urandom(2 * SMALL_BLOCK)
    bucket.write("ref/genome.fa", second)
    new_path = local()
    assert new_path != path
    assert new_path.read_bytes() == second
    assert not path.exists(), "the copy of the replaced version is still on the node"


def test_localize_of_a_local_file_is_the_file(tmp_path, file_store):
    source = tmp_path / "here.txt"
    source.write_text("local already")
    assert localize(str(source), store=file_store) == source


def test_localize_of_a_missing_file_is_file_not_found(bucket, file_store, tmp_path):
    with pytest.raises(FileNotFoundError):
        localize(bucket.url("nothing/here"), store=file_store, directory=tmp_path / "l",
                 storage_options=bucket.options)


def test_sweep_removes_copies_of_deleted_and_replaced_files(bucket, file_store, tmp_path):
    local_dir = tmp_path / "localized"
    fs = bucket.cache(file_store, local_dir=str(local_dir))
    for name in ("gone.bin", "replaced.bin", "kept.bin"):
        bucket.write(name, os.urandom(2 * SMALL_BLOCK))
        fs.cat_file(bucket.path(name))
    gone_copy = fs.localize(bucket.path("gone.bin"))
    kept_copy = fs.localize(bucket.path("kept.bin"))
    fs.wait()
    kept_keys = {k for k in durable_keys(file_store)
                 if k[:24] == record_key("alice", bucket.url("kept.bin"))[:24]}
    assert len(kept_keys) == 3  # two blocks and the record

    bucket.delete("gone.bin")  # behind the cache's back: nobody opens them again
    bucket.write("replaced.bin", os.urandom(2 * SMALL_BLOCK))
    report = sweep_files(file_store, storage_options={bucket.protocol: bucket.options},
                         local_dir=local_dir)
    assert report.deleted == [bucket.url("gone.bin")]
    assert report.replaced == [bucket.url("replaced.bin")]
    assert report.entries == 6  # two blocks and a record each
    assert 4 * SMALL_BLOCK < report.bytes < 4 * SMALL_BLOCK + 2000
    assert durable_keys(file_store) == kept_keys
    assert report.local_copies == 1
    assert not gone_copy.exists()
    assert kept_copy.exists()
    assert sweep_files(file_store, storage_options={bucket.protocol: bucket.options},
                       local_dir=local_dir).entries == 0


def test_sweep_keeps_what_it_cannot_check(tmp_path, make_store, request):
    from flowcache.tiers.objects import ObjectTier

    store = make_store(ObjectTier(str(tmp_path / "durable")))
    remote = make_remote(request, "local", tmp_path)
    remote.write("x.bin", b"x" * 100)
    fs = remote.cache(store)
    fs.cat_file(remote.path("x.bin"))
    fs.wait()
    before = durable_keys(store)

    def unreachable(url: str):
        raise ConnectionError("the bucket is down")

    report = sweep_files(store, current=unreachable, local_dir=tmp_path / "none")
    assert durable_keys(store) == before
    assert report.entries == 0
    assert list(report.errors) == [f"file://{socket.gethostname()}{remote.path('x.bin')}"]
