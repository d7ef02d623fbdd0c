"""The block cache: a file version's bytes as store entries per block, each fetched only once.

A file is cut into blocks of ``block_size`` bytes (4 MiB by default); block ``i`` of a version
is an ordinary store entry (raw bytes, signed, never unpickled) under
``block_key(namespace, version, block_size, i)``, so owners, lifetimes, the ledger and
``flowcache gc`` treat it like a task output. A range read touches only its blocks.

On a miss, contiguous missing blocks are fetched with one range request of up to
``fetch_bytes`` (object stores charge per request, and some serve a request of 200 MB far
faster than fifty of 4 MB). Single flight uses the store's own per-key locks, the ones
``get_or_compute`` holds (threads, then file locks or Redis leases): a run's block locks are
taken in ascending order (so two runs never deadlock), the tiers are checked again under them,
and only what is still missing is fetched. Concurrent readers of a block, in any thread or
process sharing the lock backend, wait and then read it from the tiers.

Reads of many cached blocks look the next blocks up (read and verify them) in other threads
while the current one is copied into the result. The reader gets fetched bytes as soon as they
arrive; the blocks are then stored (durable tier
first, then the hot tiers) by the same worker, still under the locks, while the reader goes on.
A failed store only logs: the remote file is the source of truth, the cache may lose anything.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowcache.buffers import BytesWriter
from flowcache.errors import CorruptEntry
from flowcache.files.records import BLOCK_KIND, track
from flowcache.files.versions import Version, block_key
from flowcache.lifetimes import KEEP, FlowScoped, Lifetime
from flowcache.store import TieredStore

log = logging.getLogger("flowcache.files")

DEFAULT_BLOCK_SIZE = 4 << 20
DEFAULT_FETCH_BYTES = 256 << 20
MIN_BLOCK_SIZE = 4 << 10
LOOKAHEAD = 3  # cached blocks being read and verified beside the one waited for
Fetch = Callable[[int, int], bytes]  # (start, end) -> bytes of the version, from the remote


@dataclass(frozen=True)
class BlockPolicy:
    """How a filesystem caches blocks: their size, the largest fetch, their lifetime."""

    block_size: int = DEFAULT_BLOCK_SIZE
    fetch_bytes: int = DEFAULT_FETCH_BYTES
    lifetime: Lifetime = KEEP
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.block_size < MIN_BLOCK_SIZE:
            raise ValueError(f"block_size must be at least {MIN_BLOCK_SIZE} bytes "
                             f"(4-16 MiB suits object stores), got {self.block_size}")
        if self.fetch_bytes < self.block_size:
            raise ValueError("fetch_bytes must be at least one block")
        if isinstance(self.lifetime, FlowScoped) and not self.lifetime.run_id:
            raise ValueError("lifetime 'flow' needs the flow run's id (run_id=...); inside a "
                             "task declared with prefect_cache.files() it is filled in")

    def blocks(self, version: Version) -> int:
        return -(-version.size // self.block_size)

    def span(self, version: Version, index: int) -> tuple[int, int]:
        start = index * self.block_size
        return start, min(version.size, start + self.block_size)


class Workers:
    """The threads that fetch and store blocks for one store in this process.

    Lookups (reading cached blocks) and version checks run on threads shared by every store in
    the process: they hold nothing of a store, and a new store object (a new process's first
    read, a benchmark's fresh filesystem) should not pay for starting threads.
    """

    _shared: ClassVar[dict[str, ThreadPoolExecutor]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, max_workers: int = 4) -> None:
        self.pool = ThreadPoolExecutor(max_workers, thread_name_prefix="flowcache-files")
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    @property
    def lookups(self) -> ThreadPoolExecutor:
        return self._shared_pool("lookups", 4)

    @property
    def checks(self) -> ThreadPoolExecutor:
        """Version checks run beside the reads they confirm (see ``FlowcacheFileSystem``)."""
        return self._shared_pool("checks", 4)

    @classmethod
    def _shared_pool(cls, name: str, threads: int) -> ThreadPoolExecutor:
        pool = cls._shared.get(name)
        if pool is None:
            with cls._shared_lock:
                pool = cls._shared.get(name)
                if pool is None:
                    pool = cls._shared[name] = ThreadPoolExecutor(
                        threads, thread_name_prefix=f"flowcache-{name}")
        return pool

    def submit(self, fn: Callable[[], None]) -> Future:
        future = self.pool.submit(fn)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every block being stored now is stored; False on timeout."""
        with self._lock:
            pending = list(self._pending)
        return not wait(pending, timeout=timeout).not_done


_WORKERS: weakref.WeakKeyDictionary[TieredStore, Workers] = weakref.WeakKeyDictionary()
_WORKERS_LOCK = threading.Lock()


def workers_for(store: TieredStore) -> Workers:
    with _WORKERS_LOCK:
        workers = _WORKERS.get(store)
        if workers is None:
            workers = _WORKERS[store] = Workers()
        return workers


class BlockReader:
    """Range reads of one version through the store's tiers, fetching what is missing once."""

    def __init__(self, store: TieredStore, version: Version, fetch: Fetch,
                 policy: BlockPolicy) -> None:
        self.store = store
        self.version = version
        self.fetch = fetch
        self.policy = policy
        self.workers = workers_for(store)

    def key(self, index: int) -> str:
        return block_key(self.store.namespace, self.version, self.policy.block_size, index)

    # -- reading ------------------------------------------------------------------------------
    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the version (clipped to its size).

        A read of several blocks fills its result in place: cached blocks are read (and
        verified) straight into their place in it by lookup threads, a few blocks ahead, and
        fetched ones are copied in. A read that one fetch covers entirely returns the fetched
        bytes themselves.
        """
        size = self.version.size
        start, end = max(0, start), min(end, size)
        if start >= end:
            return b""
        bs = self.policy.block_size
        first, last = start // bs, (end - 1) // bs
        if first == last:
            block = self.block(first)
            lo = first * bs
            if start == lo and end - lo == len(block) and type(block) is bytes:
                return block
            return bytes(memoryview(block)[start - lo:end - lo])
        out = BytesWriter(end - start)
        missing: list[int] = []
        any_cached = False
        for index, cached in self._lookups(first, last, out, start):
            if not cached:
                missing.append(index)
                continue
            any_cached = True
            if missing:
                self._write_fetched(out, missing, start, end)
                missing = []
        if missing:
            if not any_cached:  # nothing was cached: maybe one fetch is the whole answer
                pieces: dict[int, bytes | memoryview] = {}
                spans = self._fetch_missing(missing, pieces)
                if len(spans) == 1:
                    lo, data = spans[0]
                    if lo <= start and lo + len(data) >= end:
                        return data[start - lo:end - lo]
                for index in missing:
                    self._write(out, index, pieces[index], start)
            else:
                self._write_fetched(out, missing, start, end)
        out.seek(end - start)
        return out.getvalue()

    def _lookups(self, first: int, last: int, out: BytesWriter,
                 start: int) -> Iterator[tuple[int, bool]]:
        """(index, whether it was cached) for blocks ``first..last`` in order; each cached block
        is written into its place in ``out`` by a lookup thread, at most ``LOOKAHEAD`` blocks
        ahead of the one the caller waits for."""
        pending: deque[tuple[int, Future]] = deque()
        upcoming = iter(range(first, last + 1))
        submit = self.workers.lookups.submit
        for index in itertools.islice(upcoming, LOOKAHEAD):
            pending.append((index, submit(self._place, index, out, start)))
        while pending:
            index, future = pending.popleft()
            for following in itertools.islice(upcoming, 1):
                pending.append((following, submit(self._place, following, out, start)))
            yield index, future.result()

    def _place(self, index: int, out: BytesWriter, start: int) -> bool:
        """Write cached block ``index`` into its place in ``out`` (the result starts at
        ``start``); False when it is not cached. A block wholly inside the result is read
        straight into place by tiers that can."""
        a, b, lo, hi = self._slot(index, out, start)
        with out.region(a, b) as region:
            payload = self.lookup(index, into=region if b - a == hi - lo else None)
            in_place = isinstance(payload, memoryview) and payload.obj is region.obj
        if payload is None:
            return False
        if not in_place:
            self._write(out, index, payload, start)
        return True

    def _write(self, out: BytesWriter, index: int, payload: bytes | memoryview,
               start: int) -> None:
        a, b, lo, _ = self._slot(index, out, start)
        with out.region(a, b) as region:
            region[:] = memoryview(payload)[a + start - lo:b + start - lo]

    def _slot(self, index: int, out: BytesWriter, start: int) -> tuple[int, int, int, int]:
        """Where block ``index`` lands in a result that starts at ``start``: ``[a, b)`` of
        ``out``, and the block's own span ``[lo, hi)`` in the file."""
        lo, hi = self.policy.span(self.version, index)
        return max(lo, start) - start, min(hi - start, out.size), lo, hi

    def _write_fetched(self, out: BytesWriter, missing: list[int], start: int,
                       end: int) -> None:
        pieces: dict[int, bytes | memoryview] = {}
        self._fetch_missing(missing, pieces)
        for index in missing:
            self._write(out, index, pieces[index], start)

    def block(self, index: int) -> bytes | memoryview:
        """The whole of block ``index`` (for readers that keep the current block)."""
        payload = self.lookup(index)
        if payload is None:
            pieces: dict[int, bytes | memoryview] = {}
            self._fetch_missing([index], pieces)
            payload = pieces[index]
        return payload

    def lookup(self, index: int, into: memoryview | None = None) -> bytes | memoryview | None:
        """Block ``index`` from the fastest tier that has it, or None (``into``: a buffer of
        the block's size that local tiers read it into; see ``TieredStore.get_entry``)."""
        key = self.key(index)
        try:
            entry = self.store.get_entry(key, into=into)
        except CorruptEntry as exc:  # the durable copy is bad: fetch again and replace it
            log.warning("cached block %d of %s is invalid (%s); fetching it again", index,
                        self.version.url, exc)
            return None
        if entry is None:
            return None
        lo, hi = self.policy.span(self.version, index)
        if entry.header.serializer != "raw" or entry.header.size != hi - lo:
            log.warning("cached block %d of %s is not a %d-byte raw block; dropping it", index,
                        self.version.url, hi - lo)
            self.store.delete(key, reason="invalid")
            return None
        return entry.payload

    def _fetch_missing(self, missing: list[int],
                       pieces: dict[int, bytes | memoryview]) -> list[tuple[int, bytes]]:
        """Fetch ``missing`` blocks (in runs, in parallel) into ``pieces``; returns the spans
        fetched from the remote as (offset, bytes)."""
        per_run = max(1, self.policy.fetch_bytes // self.policy.block_size)
        runs: list[list[int]] = []
        for index in missing:
            if runs and index == runs[-1][-1] + 1 and len(runs[-1]) < per_run:
                runs[-1].append(index)
            else:
                runs.append([index])
        handoffs = []
        for run in runs:
            handoff: Future = Future()
            self.workers.submit(lambda run=run, handoff=handoff: self._fetch_run(run, handoff))
            handoffs.append((run, handoff))
        spans = []
        for run, handoff in handoffs:
            found, span = handoff.result()
            pieces.update(found)
            if span is not None:
                lo, data = span
                spans.append(span)
                view = memoryview(data)
                for index in run:
                    if index not in found:
                        a, b = self.policy.span(self.version, index)
                        pieces[index] = view[a - lo:b - lo]
        return spans

    def _fetch_run(self, run: list[int], handoff: Future) -> None:
        """In a worker: lock the run's blocks, fetch what is still missing in one request,
        hand the bytes to the reader, then store the blocks (still holding the locks)."""
        try:
            with contextlib.ExitStack() as held:
                for index in run:  # ascending order: runs never wait on each other in a cycle
                    held.enter_context(self.store.locks.hold(self.store.name_for(self.key(index))))
                found: dict[int, bytes | memoryview] = {}
                missing = []
                for index in run:
                    payload = self.lookup(index)
                    if payload is None:
                        missing.append(index)
                    else:
                        found[index] = payload
                if not missing:
                    handoff.set_result((found, None))
                    return
                lo = self.policy.span(self.version, missing[0])[0]
                hi = self.policy.span(self.version, missing[-1])[1]
                data = self.fetch(lo, hi)
                handoff.set_result((found, (lo, data)))
                self._store(missing, lo, data)
        except BaseException as exc:
            if not handoff.done():
                handoff.set_exception(exc)
            else:
                log.warning("could not cache blocks of %s: %s", self.version.url, exc)

    # -- storing ------------------------------------------------------------------------------
    def _store(self, indices: list[int], offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for index in indices:
            lo, hi = self.policy.span(self.version, index)
            self.put(index, bytes(view[lo - offset:hi - offset]))

    def put(self, index: int, payload: bytes) -> None:
        """Store block ``index`` (durable tier first); a flow-scoped block is tracked first."""
        key = self.key(index)
        lifetime = self.policy.lifetime
        if isinstance(lifetime, FlowScoped) and lifetime.run_id:
            track(self.store, lifetime.run_id, key)
        meta = {**self.policy.meta, "kind": BLOCK_KIND, "url": self.version.url,
                "version": self.version.digest, "block": index}
        self.store.put(key, payload, lifetime=lifetime, meta=meta, serializer="raw")

    def fill(self, read: Callable[[int, int], bytes]) -> int:
        """Store every block of the version from ``read(start, end)`` (after a write);
        returns the bytes stored."""
        stored = 0
        for index in range(self.policy.blocks(self.version)):
            lo, hi = self.policy.span(self.version, index)
            payload = read(lo, hi)
            if len(payload) != hi - lo:
                raise ValueError(f"block {index} of {self.version.url}: read {len(payload)} "
                                 f"bytes, expected {hi - lo}")
            self.put(index, payload)
            stored += hi - lo
        return stored
