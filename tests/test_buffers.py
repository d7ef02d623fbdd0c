"""Large reads fill their final buffer once: BytesWriter, reads into a buffer, block reads."""

from __future__ import annotations

import io
import os
import sys
import threading

import pytest

from flowcache import buffers
from flowcache.buffers import MIN_SIZE, BytesWriter
from flowcache.errors import CorruptEntry
from flowcache.files import FlowcacheFileSystem
from flowcache.frames import decode, read_frame
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier


@pytest.mark.parametrize("size", [0, 10, MIN_SIZE, 3 * MIN_SIZE + 17])
@pytest.mark.parametrize("huge_pages", [True, False])
def test_writer_returns_exactly_what_was_written(size, huge_pages):
    buffers.use_huge_pages(huge_pages)
    try:
        data = os.urandom(size)
        writer = BytesWriter(size)
        for offset in range(0, size, 100_003):
            writer.write(data[offset:offset + 100_003])
        value = writer.getvalue()
        assert type(value) is bytes
        assert value == data
        if size >= MIN_SIZE and sys.implementation.name == "cpython":
            assert writer.tell() == size
    finally:
        buffers.use_huge_pages(False)


def test_large_writers_build_the_result_in_place_and_small_ones_do_not():
    assert BytesWriter(MIN_SIZE).in_place is (sys.implementation.name == "cpython")
    assert not BytesWriter(MIN_SIZE - 1).in_place  # small objects may be shared singletons
    one = BytesWriter(1)
    one.write(b"\x07")
    assert one.getvalue() == b"\x07"
    assert bytes(1) == b"\0"
    assert b"\x07"[0] == 7  # the shared one-byte objects are untouched


def test_a_partial_fill_returns_what_was_read_and_the_rest_is_never_old_memory():
    data = os.urandom(MIN_SIZE // 2)
    writer = BytesWriter(MIN_SIZE)
    assert writer.fill_from(io.BytesIO(data)) == len(data)
    assert writer.getvalue() == data

    untouched = BytesWriter(MIN_SIZE)
    untouched.seek(MIN_SIZE)
    assert untouched.getvalue() == bytes(MIN_SIZE)  # zeroed, not a previous object's bytes


def test_regions_are_filled_independently_and_bounds_are_checked():
    data = os.urandom(2 * MIN_SIZE)
    writer = BytesWriter(len(data))
    for start in (MIN_SIZE, 0):  # out of order, as lookup threads finish
        with writer.region(start, start + MIN_SIZE) as region:
            region[:] = data[start:start + MIN_SIZE]
    writer.seek(len(data))
    with pytest.raises(ValueError, match="outside"):
        writer.region(0, len(data) + 1)
    with pytest.raises(ValueError, match="overflows"):
        writer.write(b"x")
    assert writer.getvalue() == data


def test_a_region_faulted_in_ahead_keeps_its_zeroes_and_takes_writes():
    # regions of a fresh result are faulted in with one madvise before the filler writes;
    # the advice must change nothing a reader can see, at unaligned edges either
    writer = BytesWriter(3 * MIN_SIZE)
    with writer.region(5, 2 * MIN_SIZE + 3) as region:
        assert bytes(region[:64]) == bytes(64)
        assert bytes(region[-64:]) == bytes(64)
        region[:3] = b"abc"
    writer.seek(3 * MIN_SIZE)
    value = writer.getvalue()
    assert value[5:8] == b"abc"
    assert value.count(0) == len(value) - 3


def _frame_file(store, key, payload):
    store.put(key, payload)
    return store.durable._path(store.name_for(key))


def test_read_frame_into_a_buffer_then_verify(make_store, tmp_path, identity):
    store = make_store(ObjectTier(str(tmp_path / "durable"), fsync=False))
    payload = os.urandom(MIN_SIZE + 5)
    path = _frame_file(store, "ab" * 32, payload)
    target = bytearray(len(payload))
    with open(path, "rb") as handle:
        entry = decode(read_frame(handle, memoryview(target)), identity=identity)
    assert target == payload
    assert isinstance(entry.payload, memoryview)
    assert entry.payload.readonly
    assert entry.payload.obj is target  # read in place: no copy of the payload

    with open(path, "r+b") as handle:  # one flipped payload byte: read in, then rejected
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    with open(path, "rb") as handle, pytest.raises(CorruptEntry):
        decode(read_frame(handle, memoryview(bytearray(len(payload)))), identity=identity)

    with open(path, "rb") as handle:  # a buffer of another size: read as usual
        frame = read_frame(handle, memoryview(bytearray(3)))
    assert len(frame.parts) == 3
    assert len(frame.parts[1]) == len(payload)


def test_get_entry_into_reads_local_tiers_in_place_and_keeps_hot_copies_apart(make_store,
                                                                             tmp_path):
    node = NodeTier(tmp_path / "node")
    memory = MemoryTier()
    store = make_store(memory, node, ObjectTier(str(tmp_path / "durable"), fsync=False))
    payload = os.urandom(MIN_SIZE)
    store.put("cd" * 32, payload)
    memory.delete(store.name_for("cd" * 32))
    node.delete(store.name_for("cd" * 32))

    target = bytearray(len(payload))
    entry = store.get_entry("cd" * 32, into=memoryview(target))  # from durable, promoted
    assert target == payload
    assert bytes(entry.payload) == payload
    target[:] = bytes(len(target))  # the caller reuses its buffer: the hot copies are theirs
    assert store.get("cd" * 32) == payload  # from memory
    memory.delete(store.name_for("cd" * 32))
    assert store.get("cd" * 32) == payload  # from the node tier
    assert store.counters.tier("node").hits == 1


def test_a_corrupt_node_block_is_replaced_by_the_durable_one_in_a_large_read(make_store,
                                                                            tmp_path):
    source = tmp_path / "data.bin"
    data = os.urandom(6 * (64 << 10) + 99)
    source.write_bytes(data)
    node = NodeTier(tmp_path / "node")
    store = make_store(node, ObjectTier(str(tmp_path / "durable"), fsync=False))
    fs = FlowcacheFileSystem(target_protocol="file", store=store, block_size=64 << 10)
    assert fs.cat_file(str(source)) == data
    fs.wait()
    blocks = sorted(node._path(name) for name in node.scan()
                    if os.path.getsize(node._path(name)) > 64 << 10)  # not the small records
    assert len(blocks) >= 6
    with open(blocks[2], "r+b") as handle:  # flip a byte in one cached block's payload
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert fs.cat_file(str(source)) == data
    assert fs.cat_file(str(source), 100, len(data) - 100) == data[100:-100]
    assert store.counters.tier("node").corrupt == 1


def test_large_reads_from_a_file_are_exact_from_any_position_and_stop_at_its_end(tmp_path):
    from flowcache.buffers import PARALLEL_FROM

    data = os.urandom(PARALLEL_FROM + (5 << 20) + 3)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        assert handle.read(7) == data[:7]  # a buffered reader that has read ahead
        writer = BytesWriter(len(data) - 7 - 11)
        assert writer.fill_from(handle) == writer.size
        assert handle.read() == data[-11:]  # the handle is left just after what was read
    assert writer.getvalue() == data[7:-11]

    with open(path, "rb") as handle:  # asks for more than the file holds
        handle.seek(1000)
        writer = BytesWriter(len(data))
        assert writer.fill_from(handle) == len(data) - 1000
        assert handle.read() == b""
    assert writer.getvalue() == data[1000:]

    read, write = os.pipe()  # not a regular file: read in order, as it arrives
    sink = os.fdopen(write, "wb")
    feeder = threading.Thread(target=lambda: (sink.write(data[:MIN_SIZE]), sink.close()))
    feeder.start()
    with os.fdopen(read, "rb") as handle:
        writer = BytesWriter(MIN_SIZE)
        assert writer.fill_from(handle) == MIN_SIZE
    feeder.join()
    assert writer.getvalue() == data[:MIN_SIZE]
