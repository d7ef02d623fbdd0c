"""Concurrent readers of one uncached block fetch it from the bucket once.

Counted on the server side: every request passes the FaultProxy in front of moto / the GCS
emulator, which records method and path.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from pathlib import Path

from flowcache.identity import new_key
from tests import test_files_support as support
from tests.test_files_support import make_remote

file_store = support.file_store  # fixture

PROCESSES = 8
BLOCK = 256 << 10


def _reader(root: str, key_hex: str, target: dict, url_path: str, barrier, results) -> None:
    import flowcache.files  # noqa: F401
    from flowcache.files import FlowcacheFileSystem
    from flowcache.identity import Identity
    from flowcache.locks import FileLocks
    from flowcache.store import TieredStore
    from flowcache.tiers.node import NodeTier
    from flowcache.tiers.objects import ObjectTier

    store = TieredStore([NodeTier(Path(root) / "node"), ObjectTier(f"{root}/durable")],
                        identity=Identity("alice", bytes.fromhex(key_hex)),
                        locks=FileLocks(Path(root) / "locks"))
    fs = FlowcacheFileSystem(target_protocol="s3", target_options=target, store=store,
                             block_size=BLOCK)
    barrier.wait()
    data = fs.cat_file(url_path, BLOCK + 10, BLOCK + 5000)  # inside block 1
    fs.wait()
    results.put(hashlib.sha256(data).hexdigest())
    store.close()


def test_eight_processes_fetch_one_block_once(s3, tmp_path, request):
    remote = make_remote(request, "s3", tmp_path)
    data = os.urandom(4 * BLOCK)
    remote.write("shared.bin", data)
    s3.proxy.reset()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    key_hex = new_key().hex()  # one user: every process signs and verifies with this key
    procs = [context.Process(target=_reader, args=(str(tmp_path), key_hex, remote.options,
                                                   remote.path("shared.bin"), barrier, results))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    digests = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert set(digests) == {hashlib.sha256(data[BLOCK + 10:BLOCK + 5000]).hexdigest()}
    assert remote.data_gets("shared.bin") == 1, s3.proxy.paths
    assert s3.proxy.counts["HEAD"] >= PROCESSES  # each opened it under "always"



def test_eight_threads_fetch_one_block_once(gcs, tmp_path, request, file_store):
    remote = make_remote(request, "gcs", tmp_path)
    data = os.urandom(4 * BLOCK)
    remote.write("shared.bin", data)
    gcs.proxy.reset()
    fs = remote.cache(file_store, block_size=BLOCK)
    barrier = threading.Barrier(PROCESSES)
    out: list[bytes] = []

    def read() -> None:
        barrier.wait()
        out.append(fs.cat_file(remote.path("shared.bin"), 2 * BLOCK, 3 * BLOCK))

    threads = [threading.Thread(target=read) for _ in range(PROCESSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert out == [data[2 * BLOCK:3 * BLOCK]] * PROCESSES
    assert remote.data_gets("shared.bin") == 1, gcs.proxy.paths


def test_many_first_opens_of_one_file_record_it_once(tmp_path, request, s3, make_store, caplog):
    """The per-URL record is the one entry replaced in place: concurrent writers take its lock
    (a durable tier on S3 makes the window between reading and writing it wide)."""
    from flowcache.files.records import RECORD_KIND
    from flowcache.listeners import StoreListener
    from flowcache.tiers.objects import ObjectTier

    options = {k: v for k, v in s3.options().items() if k != "skip_instance_cache"}
    file_store = make_store(ObjectTier(f"s3://{s3.new_bucket()}/cache", storage_options=options))

    writes = []

    class Records(StoreListener):
        def on_write(self, name, tier, header, nbytes):
            if tier == "object" and header.meta.get("kind") == RECORD_KIND:
                writes.append(name)

    file_store.add_listener(Records())
    remote = make_remote(request, "local", tmp_path)
    remote.write("new.bin", os.urandom(1000))
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def first_open() -> None:
        barrier.wait()
        try:
            remote.cache(file_store).check(remote.path("new.bin"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_open) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(writes) == 1
    assert "could not record" not in caplog.text
