"""The frame format: round trips, and nothing unverified is ever deserialized."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

from flowcache.errors import CorruptEntry, ForeignEntry, UnserializableResult
from flowcache.frames import TAIL_BYTES, Frame, decode, encode, peek_header
from flowcache.identity import Identity, new_key
from flowcache.lifetimes import TTL, FlowScoped

KEY = "ab" * 32


class PlantFile:
    """A payload that creates a file when unpickled: proof of deserialization."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_keeps_header_fields(identity):
    frame = encode({"a": [1, 2]}, key=KEY, identity=identity, lifetime=TTL(60),
                   meta={"task": "t"}, now=1000.0)
    entry = decode(frame, identity=identity, key=KEY)
    assert entry.load() == {"a": [1, 2]}
    header = entry.header
    assert (header.key, header.owner, header.serializer) == (KEY, "alice", "cloudpickle")
    assert header.created == 1000.0
    assert header.expires_at == 1060.0
    assert header.meta == {"task": "t"}
    assert peek_header(frame.join()[:4096]) == header


def test_bytes_are_stored_raw_and_returned_without_copy(identity):
    data = os.urandom(1 << 16)
    frame = encode(data, key=KEY, identity=identity)
    entry = decode(frame, identity=identity, key=KEY)
    assert entry.header.serializer == "raw"
    assert entry.load() is data
    assert data in frame.join()  # not pickled: the bytes appear as they are
    joined = decode(frame.join(), identity=identity, key=KEY)
    assert joined.load() == data
    compact = joined.compact()
    assert compact.load() is compact.payload
    assert compact.compact() is compact


def test_flow_lifetime_records_the_run(identity):
    frame = encode(1, key=KEY, identity=identity, lifetime=FlowScoped("run-1"))
    assert decode(frame, identity=identity).header.lifetime["run"] == "run-1"


@pytest.mark.parametrize("position", ["header", "payload", "mac", "magic", "trailer"])
def test_a_flipped_byte_is_rejected_before_unpickling(identity, tmp_path, position):
    target = tmp_path / "planted"
    frame = bytearray(encode(PlantFile(str(target)), key=KEY, identity=identity).join())
    # the frame is a valid pickle of PlantFile: unpickling it would create the file
    offsets = {"magic": 0, "header": 20, "payload": len(frame) - TAIL_BYTES - 3,
               "mac": len(frame) - 5, "trailer": len(frame) - 1}
    frame[offsets[position]] ^= 0x01
    with pytest.raises(CorruptEntry):
        decode(bytes(frame), identity=identity, key=KEY).load()
    assert not target.exists()


def test_truncated_and_padded_frames_are_rejected(identity, tmp_path):
    frame = encode(b"x" * 1000, key=KEY, identity=identity).join()
    for broken in (frame[:-1], frame[:10], frame[:100], frame + b"\0", b"", b"garbage" * 20):
        with pytest.raises(CorruptEntry):
            decode(broken, identity=identity, key=KEY)


def test_frame_forged_without_the_owner_key_is_rejected(identity, tmp_path):
    target = tmp_path / "planted"
    forger = Identity("alice", new_key())  # right name, wrong key
    frame = encode(PlantFile(str(target)), key=KEY, identity=forger)
    with pytest.raises(CorruptEntry, match="signature"):
        decode(frame, identity=identity, key=KEY).load()
    assert not target.exists()


def test_frame_of_another_owner_is_foreign(identity):
    bob = Identity("bob", new_key())
    frame = encode(1, key=KEY, identity=bob)
    with pytest.raises(ForeignEntry) as info:
        decode(frame, identity=identity, key=KEY)
    assert isinstance(info.value, PermissionError)
    assert "bob" in str(info.value)


def test_frame_under_the_wrong_key_is_rejected(identity):
    frame = encode(1, key=KEY, identity=identity)
    with pytest.raises(CorruptEntry, match="holds key"):
        decode(frame, identity=identity, key="cd" * 32)


def test_unpicklable_result_names_its_type(identity):
    with pytest.raises(UnserializableResult, match="lock"):
        encode(threading.Lock(), key=KEY, identity=identity)


def test_frames_made_of_parts_and_joined_decode_alike(identity):
    frame = encode([1, "two", 3.0], key=KEY, identity=identity)
    assert len(frame.parts) == 3
    split = Frame([frame.join()[:7], frame.join()[7:50], frame.join()[50:]])
    assert decode(split, identity=identity, key=KEY).load() == [1, "two", 3.0]


def test_pickle_serializer_by_name(identity):
    frame = encode({"k": 1}, key=KEY, identity=identity, serializer="pickle")
    entry = decode(frame, identity=identity)
    assert entry.header.serializer == "pickle"
    assert pickle.loads(entry.payload) == {"k": 1}
