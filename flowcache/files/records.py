"""Per-URL records: which version of a remote file the cache holds, and dropping the others.

A record is an ordinary store entry (raw JSON bytes, signed, never unpickled) under the URL's
record key. Processes compare the version they see with it: a difference means the remote file
changed since something was cached, so the blocks of every other version are dropped, from the
durable tier and the shared hot tiers alike. It also lets ``consistency="never"`` readers in a
new process skip the metadata request, and lets ``sweep_files`` find what to check.

Stale blocks are found by key prefix (all keys of a URL share one, see
:mod:`flowcache.files.versions`), so dropping never needs to read a block.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from flowcache.errors import CorruptEntry
from flowcache.files.versions import (
    RECORD_SUFFIX,
    URL_HEX,
    Version,
    record_key,
    url_prefix,
    version_prefix,
)
from flowcache.lifetimes import KEEP, FlowScoped, Lifetime
from flowcache.purge import tracker_for
from flowcache.store import TieredStore

log = logging.getLogger("flowcache.files")

RECORD_KIND = "file-record"
BLOCK_KIND = "file-block"


def read_record(store: TieredStore, url: str) -> Version | None:
    """The version recorded for ``url``, or None (no record, or an unreadable one)."""
    key = record_key(store.namespace, url)
    try:
        entry = store.get_entry(key)
    except CorruptEntry as exc:
        log.warning("ignoring the invalid record of %s: %s", url, exc)
        return None
    if entry is None or entry.header.serializer != "raw":
        return None
    try:
        version = Version.from_dict(json.loads(bytes(entry.payload)))
    except ValueError as exc:
        log.warning("ignoring the unreadable record of %s: %s", url, exc)
        return None
    return version if version.url == url else None


def write_record(store: TieredStore, version: Version, *, lifetime: Lifetime = KEEP,
                 meta: dict[str, Any] | None = None) -> None:
    """Record ``version`` as the one cached for its URL (durable first, like any entry).

    A record is the one entry that is replaced in place, so writers take its key's store lock
    (threads, processes, hosts) and skip the write if it already names ``version``: readers
    that see a new version at once write it once, and never race an overwrite.
    """
    key = record_key(store.namespace, version.url)
    with store.locks.hold(store.name_for(key)):
        current = read_record(store, version.url)
        if current is not None and current.digest == version.digest:
            return
        if isinstance(lifetime, FlowScoped) and lifetime.run_id:
            track(store, lifetime.run_id, key)
        payload = json.dumps({**version.to_dict(), "recorded": time.time()}).encode()
        store.put(key, payload, lifetime=lifetime, serializer="raw", overwrite=True,
                  meta={**(meta or {}), "kind": RECORD_KIND, "url": version.url,
                        "version": version.digest})


def track(store: TieredStore, run_id: str, key: str) -> None:
    """Mark ``key`` as an intermediate of flow run ``run_id`` (before it is written), so
    ``purge_intermediates`` removes it with the run's task outputs."""

    tracker_for(store).record(run_id, key)


def url_names(store: TieredStore, url: str) -> Iterator[str]:
    """Names of every durable entry of ``url`` (its record and blocks of any version)."""
    prefix = url_prefix(store.namespace, url)
    yield from store.scan(f"{prefix[:2]}/{prefix}")


def drop_stale(store: TieredStore, url: str, keep: Version | None) -> int:
    """Delete the cached blocks of ``url`` that are not of ``keep`` (all of them, and the
    record, when ``keep`` is None: the file is gone). Returns how many entries went."""
    keep_prefix = version_prefix(store.namespace, keep) if keep is not None else None
    dropped = 0
    for name in list(url_names(store, url)):
        key = store.key_of(name)
        if keep_prefix is not None and (key.startswith(keep_prefix)
                                        or key[URL_HEX:] == RECORD_SUFFIX):
            continue
        try:
            if store.delete_name(name, reason="stale"):
                dropped += 1
        except Exception as exc:  # best effort: sweep_files retries
            log.warning("could not drop the stale cached copy %s of %s: %s", name, url, exc)
    if dropped:
        log.info("dropped %d cached entries of %s (%s)", dropped, url,
                 "replaced" if keep is not None else "deleted")
    return dropped
