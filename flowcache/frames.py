"""The stored frame: a versioned, signed header plus payload, verified before it is deserialized.

Layout (all integers little-endian)::

    b"FLWC" | u8 format | u32 header length | header (JSON) | payload | 32-byte MAC | b"FLWC"

The header names the key, owner, serializer, payload size, creation time, lifetime and free-form
metadata (task, flow run, compute seconds). The MAC is blake3 keyed with the owner's signing key
over everything before it, so a flipped bit anywhere, a truncated frame, a frame of another owner
or one forged without the key is rejected with :class:`CorruptEntry` (or :class:`ForeignEntry`)
and its payload is never handed to a deserializer. The header sits first so that listings and
``exists`` can read a few hundred bytes instead of a whole object. The closing magic makes a
truncated frame obvious from its last bytes (and keeps a frame from ending in a carriage return,
which the GCS emulator's multipart parser strips).
"""

from __future__ import annotations

import hmac
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import blake3

from flowcache.buffers import MIN_SIZE, BytesWriter, readinto_fully
from flowcache.errors import CorruptEntry, ForeignEntry
from flowcache.identity import Identity
from flowcache.lifetimes import KEEP, Lifetime
from flowcache.serializers import choose_serializer, get_serializer

MAGIC = b"FLWC"
FORMAT = 1
_PREFIX = struct.Struct("<4sBI")
MAC_BYTES = 32
TRAILER = MAGIC
TAIL_BYTES = MAC_BYTES + len(TRAILER)
_MAX_HEADER = 1 << 20
HEADER_PROBE_BYTES = 4096  # enough to read the header of any frame whose metadata is small
#: frames at least this large are hashed on all cores. Smaller ones on one: their readers run
#: several at once (block reads verify a few 4 MiB blocks in parallel), and blake3's threads
#: on top of those oversubscribe the cores (a 200 MB re-read in 4 MiB blocks: 0.10 s against
#: 0.12 s with every block hashed on all cores, 2 cores)
_THREADED_FROM = 32 << 20


@dataclass(frozen=True)
class Header:
    key: str
    owner: str
    serializer: str
    size: int
    created: float
    lifetime: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> float | None:
        value = self.lifetime.get("expires_at")
        return float(value) if value is not None else None

    def ttl_left(self, now: float | None = None) -> float | None:
        """Seconds until the entry expires (at least a millisecond), None if it never does:
        what a hot tier is given when the entry is copied into it."""
        expiry = self.expires_at
        if expiry is None:
            return None
        return max(0.001, expiry - (time.time() if now is None else now))

    def expired(self, now: float | None = None) -> bool:
        expiry = self.expires_at
        return expiry is not None and (now if now is not None else time.time()) >= expiry

    def to_json(self) -> bytes:
        return json.dumps(
            {"key": self.key, "owner": self.owner, "serializer": self.serializer,
             "size": self.size, "created": self.created, "lifetime": self.lifetime,
             "meta": self.meta},
            sort_keys=True, separators=(",", ":"), default=str,
        ).encode()


class Frame:
    """A frame as a sequence of buffers, so large payloads are never copied to be framed.

    ``encode`` makes ``(prefix+header, payload, mac)``; a tier may store and return the parts as
    they are (memory, Redis) or as one joined buffer (a file); ``decode`` reads either.
    """

    __slots__ = ("nbytes", "parts")

    def __init__(self, parts: tuple[bytes | memoryview, ...] | list[bytes | memoryview]) -> None:
        self.parts = tuple(parts)
        self.nbytes = sum(memoryview(part).nbytes for part in self.parts)

    @classmethod
    def of(cls, data: Frame | bytes | bytearray | memoryview) -> Frame:
        return data if isinstance(data, Frame) else cls((data,))

    def join(self) -> bytes:
        """The frame as one ``bytes`` (no copy when it already is one)."""
        if len(self.parts) == 1 and type(self.parts[0]) is bytes:
            return self.parts[0]
        return b"".join(self.parts)

    def read(self, start: int, end: int) -> bytes | memoryview:
        """Bytes ``[start, end)``: the part itself, a view into one part, or a joined copy."""
        pieces = []
        offset = 0
        for part in self.parts:
            view = memoryview(part)
            size = view.nbytes
            lo, hi = max(start, offset), min(end, offset + size)
            if lo < hi:
                if lo == offset and hi == offset + size and len(pieces) == 0 and hi == end:
                    return part
                pieces.append(view[lo - offset:hi - offset])
            offset += size
            if offset >= end:
                break
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def views(self, start: int, end: int) -> list[memoryview]:
        """Zero-copy views covering ``[start, end)``, for hashing."""
        out = []
        offset = 0
        for part in self.parts:
            view = memoryview(part)
            size = view.nbytes
            lo, hi = max(start, offset), min(end, offset + size)
            if lo < hi:
                out.append(view[lo - offset:hi - offset])
            offset += size
        return out


@dataclass(frozen=True)
class Entry:
    """A verified frame: its header and its payload (``bytes`` when it could be kept whole)."""

    header: Header
    payload: bytes | memoryview
    frame: Frame

    @property
    def frame_size(self) -> int:
        return self.frame.nbytes

    def load(self) -> Any:
        return get_serializer(self.header.serializer).loads(self.payload)

    def compact(self) -> Entry:
        """This entry with its payload as a ``bytes`` part of its own.

        Worth doing once before keeping a frame in memory: later reads of a ``raw`` payload then
        return that very object instead of copying it each time.
        """
        if type(self.payload) is bytes and len(self.frame.parts) == 3:
            return self
        payload = bytes(self.payload)
        body = self.frame.nbytes - TAIL_BYTES
        head = bytes(self.frame.read(0, body - len(payload)))
        tail = bytes(self.frame.read(body, self.frame.nbytes))
        return Entry(self.header, payload, Frame((head, payload, tail)))


def encode(value: Any, *, key: str, identity: Identity, lifetime: Lifetime = KEEP,
           meta: dict[str, Any] | None = None, serializer: str | None = None,
           now: float | None = None) -> Frame:
    """Serialize ``value`` into a signed frame (raises UnserializableResult)."""
    return _encode(value, key, identity, lifetime, meta, serializer, now)[1]


def encode_entry(value: Any, *, key: str, identity: Identity, lifetime: Lifetime = KEEP,
                 meta: dict[str, Any] | None = None, serializer: str | None = None,
                 now: float | None = None) -> Entry:
    """Serialize ``value`` into a signed frame and give it as the :class:`Entry` a reader
    decodes from it (its header parsed back from the bytes written), without :func:`decode`'s
    second pass over a frame that was made right here."""
    payload, frame = _encode(value, key, identity, lifetime, meta, serializer, now)
    header, _ = _parse_header(memoryview(frame.parts[0]), key, frame.nbytes)
    return Entry(header=header, payload=payload if header.size else b"", frame=frame)


def _encode(value: Any, key: str, identity: Identity, lifetime: Lifetime,
            meta: dict[str, Any] | None, serializer: str | None,
            now: float | None) -> tuple[bytes | memoryview, Frame]:
    chosen = choose_serializer(value, serializer)
    payload = chosen.dumps(value)
    created = time.time() if now is None else now
    header = Header(key=key, owner=identity.user, serializer=chosen.name,
                    size=memoryview(payload).nbytes, created=created,
                    lifetime=lifetime.to_header(created), meta=dict(meta or {}))
    return payload, encode_payload(header, payload, identity)


def encode_payload(header: Header, payload: bytes | memoryview, identity: Identity) -> Frame:
    """Frame a payload without copying it: ``(prefix+header, payload, mac+trailer)``."""
    header_bytes = header.to_json()
    head = _PREFIX.pack(MAGIC, FORMAT, len(header_bytes)) + header_bytes
    threads = blake3.blake3.AUTO if header.size >= _THREADED_FROM else 1
    mac = blake3.blake3(head, key=identity.key, max_threads=threads)
    mac.update(payload)
    return Frame((head, payload, mac.digest() + TRAILER))


def decode(frame: Frame | bytes | memoryview, *, identity: Identity, key: str | None = None,
           verify: bool = True) -> Entry:
    """Check a frame's structure, owner and MAC, and return it as an :class:`Entry`.

    ``verify=False`` is only for frames that never left this process (the memory tier holds
    frames that were verified or made here).
    """
    frame = Frame.of(frame)
    total = frame.nbytes
    head = frame.read(0, min(total, HEADER_PROBE_BYTES))
    try:
        header_end = header_length(head)
    except CorruptEntry as exc:
        raise CorruptEntry(key, exc.reason) from None
    if header_end > len(head) and header_end <= total:
        head = frame.read(0, header_end)
    header, payload_start = _parse_header(memoryview(head), key, total)
    body_size = payload_start + header.size
    if total != body_size + TAIL_BYTES:
        raise CorruptEntry(key, f"frame is {total} bytes, header says "
                                f"{body_size + TAIL_BYTES} (truncated or padded)")
    if bytes(frame.read(total - len(TRAILER), total)) != TRAILER:
        raise CorruptEntry(key, "frame does not end with its closing magic (truncated)")
    if header.owner != identity.user:
        raise ForeignEntry(key or header.key, header.owner, identity.user)
    if key is not None and header.key != key:
        raise CorruptEntry(key, f"frame holds key {header.key}, not {key}")
    if verify:
        threads = blake3.blake3.AUTO if body_size >= _THREADED_FROM else 1
        hasher = blake3.blake3(key=identity.key, max_threads=threads)
        for view in frame.views(0, body_size):
            hasher.update(view)
        mac = bytes(frame.read(body_size, body_size + MAC_BYTES))
        if not hmac.compare_digest(hasher.digest(), mac):
            raise CorruptEntry(key, "signature does not match its contents (changed bytes, "
                                    "or written without the owner's key)")
    payload = frame.read(payload_start, body_size) if header.size else b""
    return Entry(header=header, payload=payload, frame=frame)


def peek_header(prefix: bytes | memoryview, key: str | None = None) -> Header:
    """Read the (unverified) header from the first bytes of a frame, for listings only."""
    view = memoryview(prefix)
    header, _ = _parse_header(view, key, None)
    return header


def header_length(prefix: bytes | memoryview) -> int:
    """How many leading bytes of a frame hold its prefix and header."""
    view = memoryview(prefix)
    if len(view) < _PREFIX.size:
        raise CorruptEntry(None, f"only {len(view)} bytes, too short to be a frame")
    magic, version, length = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise CorruptEntry(None, "not a flowcache frame (bad magic)")
    if version != FORMAT:
        raise CorruptEntry(None, f"frame format {version} is not supported (this is {FORMAT})")
    if length > _MAX_HEADER:
        raise CorruptEntry(None, f"header length {length} is implausible")
    return _PREFIX.size + length


def _parse_header(view: memoryview, key: str | None, total: int | None) -> tuple[Header, int]:
    try:
        end = header_length(view)
    except CorruptEntry as exc:
        raise CorruptEntry(key, exc.reason) from None
    if end > len(view) or (total is not None and end + TAIL_BYTES > total):
        raise CorruptEntry(key, f"header of {end} bytes does not fit the frame")
    try:
        raw = json.loads(bytes(view[_PREFIX.size:end]))
        header = Header(key=str(raw["key"]), owner=str(raw["owner"]),
                        serializer=str(raw["serializer"]), size=int(raw["size"]),
                        created=float(raw["created"]), lifetime=dict(raw["lifetime"]),
                        meta=dict(raw.get("meta") or {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(key, f"unreadable header ({exc})") from None
    if header.size < 0:
        raise CorruptEntry(key, "negative payload size")
    return header, end


def read_frame(handle: BinaryIO, into: memoryview | None = None) -> Frame:
    """Read a frame from a file as its parts, so the payload is read straight into its own
    ``bytes`` (no second copy to cut it out of the whole). Anything that does not parse is
    returned whole, for :func:`decode` to reject with the right reason.

    With ``into`` (a writable buffer exactly the payload's size) the payload is read into it
    instead and the frame's payload part is a read-only view of it: a large result is then
    filled where it ends up, without an intermediate copy. A payload of another size is read
    as usual (the caller copies what it gets)."""
    total = os.fstat(handle.fileno()).st_size - handle.tell()
    start = handle.read(_PREFIX.size)
    try:
        end = header_length(start)
        head = start + handle.read(end - _PREFIX.size)
        size = int(json.loads(head[_PREFIX.size:])["size"])
    except (CorruptEntry, ValueError, KeyError, TypeError):
        return Frame((start + handle.read(),))
    if size < 0 or end + size + TAIL_BYTES != total:
        # a size the file cannot hold (a crafted header): never allocate what it claims;
        # the file is what it is, and decode() rejects it as corrupt
        return Frame((head + handle.read(),))
    if into is not None and into.nbytes == size:
        got = readinto_fully(handle, into)
        payload: bytes | memoryview = into[:got].toreadonly()
    elif size >= MIN_SIZE:  # large: read straight into its final bytes (see buffers.py)
        writer = BytesWriter(size)
        writer.fill_from(handle)
        payload = writer.getvalue()
    else:
        payload = handle.read(size)
    tail = handle.read()
    return Frame((head, payload, tail))
