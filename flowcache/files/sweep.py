"""sweep_files(): removing cached copies of remote files that were deleted or replaced.

Readers drop stale blocks when *they* notice a change, but a file nobody opens again keeps its
copies until their lifetime ends. The sweep (for ``flowcache gc``) finds every cached file by
the headers of its durable entries (each names its URL and version), fetches each URL's current
version once, and deletes the blocks and records of versions the remote no longer holds, from
every tier, plus this node's localized copies of them. Headers are read, payloads never are.

A URL whose metadata cannot be fetched (no credentials, the bucket unreachable) is left alone
and reported: absence of evidence is not a deleted file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from flowcache.errors import OtherHostFile
from flowcache.files.localize import local_root, read_source, remove_other_versions
from flowcache.files.records import BLOCK_KIND, RECORD_KIND
from flowcache.files.versions import Version, local_path, url_host, version_of
from flowcache.store import TieredStore

log = logging.getLogger("flowcache.files")


@dataclass
class FileSweepReport:
    urls: int = 0  # cached files checked
    deleted: list[str] = field(default_factory=list)  # URLs whose remote file is gone
    replaced: list[str] = field(default_factory=list)  # URLs that hold another version now
    entries: int = 0  # store entries removed (blocks and records)
    bytes: int = 0
    local_copies: int = 0  # localized copies removed from this node
    errors: dict[str, str] = field(default_factory=dict)  # URL -> why it was not checked

    def as_dict(self) -> dict[str, Any]:
        return {"urls": self.urls, "deleted": list(self.deleted),
                "replaced": list(self.replaced), "entries": self.entries, "bytes": self.bytes,
                "local_copies": self.local_copies, "errors": dict(self.errors)}


Resolver = Callable[[str], Version]


def sweep_files(store: TieredStore, *, storage_options: Mapping[str, Mapping[str, Any]]
                | None = None, local_dir: str | os.PathLike[str] | None = None,
                current: Resolver | None = None) -> FileSweepReport:
    """Remove the cached copies of files whose remote object was deleted or replaced.

    ``storage_options`` (per protocol) reach the remote filesystems; by default those of the
    store's configuration. ``current(url)`` may replace the metadata lookup (tests).
    """
    options = storage_options if storage_options is not None else _configured(store)
    current = current or _resolver(options)
    by_url: dict[str, list[tuple[str, str | None, int]]] = defaultdict(list)
    for name, header in store.headers():
        meta = header.meta if header is not None else {}
        if meta.get("kind") in (BLOCK_KIND, RECORD_KIND) and meta.get("url"):
            by_url[str(meta["url"])].append((name, meta.get("version"), header.size))
    report = FileSweepReport()
    now_of: dict[str, Version | None] = {}
    for url, entries in sorted(by_url.items()):
        report.urls += 1
        try:
            now = now_of[url] = _lookup(current, url)
        except Exception as exc:
            report.errors[url] = f"{type(exc).__name__}: {exc}"
            log.warning("sweep_files: cannot check %s (%s); keeping its cached copies", url, exc)
            continue
        stale = [(name, size) for name, version, size in entries
                 if now is None or version != now.digest]
        if not stale:
            continue
        (report.deleted if now is None else report.replaced).append(url)
        for name, size in stale:
            if store.delete_name(name, reason="stale"):
                report.entries += 1
                report.bytes += size
    report.local_copies = _sweep_local(store, local_root(store, local_dir), current, now_of,
                                       report)
    return report


def _sweep_local(store: TieredStore, root: Path, current: Resolver,
                 known: dict[str, Version | None], report: FileSweepReport) -> int:
    base_dir = root / store.namespace
    if not base_dir.is_dir():
        return 0
    removed = 0
    for base in sorted(base_dir.iterdir()):
        source = read_source(base)
        if source is None:
            continue
        if source.url not in known:
            try:
                known[source.url] = _lookup(current, source.url)
            except Exception as exc:
                report.errors[source.url] = f"{type(exc).__name__}: {exc}"
                continue
        now = known[source.url]
        keep = now.digest[:16] if now is not None else None
        removed += remove_other_versions(base, keep)
        if now is None:
            (base / ".source.json").unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: another version appeared
                base.rmdir()
    return removed


def _lookup(current: Resolver, url: str) -> Version | None:
    try:
        return current(url)
    except FileNotFoundError:
        return None


def _resolver(options: Mapping[str, Mapping[str, Any]]) -> Resolver:
    filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    def current(url: str) -> Version:
        host = url_host(url)
        if host is not None:
            if host != socket.gethostname():
                raise OtherHostFile(f"a file of host {host}: sweep on that host")
            return version_of(fsspec.filesystem("file"), local_path(url))
        protocol, _, path = url.partition("://")
        fs = filesystems.get(protocol)
        if fs is None:
            fs = filesystems[protocol] = fsspec.filesystem(protocol,
                                                            **dict(options.get(protocol, {})))
        return version_of(fs, path, weak_ok=True)

    return current


def _configured(store: TieredStore) -> Mapping[str, Mapping[str, Any]]:
    config = getattr(store, "config", None)
    return getattr(config, "storage_options", None) or {}
