"""Shared fixtures of the cached file I/O tests: remote places (local, S3, GCS) and stores.

Named ``test_files_*`` to sit with the tests it serves; it holds no tests itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import flowcache.files  # noqa: F401  (registers the flowcache:: protocol)
from flowcache.files import FlowcacheFileSystem
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier

SMALL_BLOCK = 64 << 10  # tests use small blocks so that a few hundred KB span many


@dataclass
class Remote:
    """Where the files under test live, and how to reach them around the cache."""

    kind: str  # local | s3 | gcs
    root: str  # "s3://bucket", "gs://bucket" or a local directory
    options: dict[str, Any] = field(default_factory=dict)  # target options (through the proxy)
    endpoint: Any = None

    @property
    def protocol(self) -> str:
        return {"local": "file", "s3": "s3", "gcs": "gs"}[self.kind]

    def url(self, name: str) -> str:
        return f"{self.root}/{name}" if self.kind != "local" else f"file://{self.root}/{name}"

    def path(self, name: str) -> str:
        return f"{self.root.split('://', 1)[-1]}/{name}"

    def direct(self) -> Any:
        """The target filesystem, bypassing the proxy (for setting files up)."""
        if self.endpoint is None:
            import fsspec

            return fsspec.filesystem("file")
        return self.endpoint.filesystem()

    def write(self, name: str, data: bytes) -> None:
        fs = self.direct()
        if self.kind == "local":
            Path(self.path(name)).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(self.path(name) + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(self.path(name))  # a new inode, like an upload replacing an object
            return
        fs.pipe_file(self.path(name), data)
        fs.invalidate_cache()

    def delete(self, name: str) -> None:
        self.direct().rm_file(self.path(name))

    def cache(self, store: Any, **options: Any) -> FlowcacheFileSystem:
        options.setdefault("block_size", SMALL_BLOCK)
        return FlowcacheFileSystem(target_protocol=self.protocol,
                                   target_options=dict(self.options), store=store, **options)

    def storage_options(self) -> dict[str, Any]:
        """``storage_options`` for a chained ``flowcache::`` URL (pandas, fsspec.open)."""
        return {self.protocol: dict(self.options)} if self.options else {}

    def data_gets(self, name: str) -> int:
        """Requests for the object's bytes that reached the server (not metadata)."""
        if self.endpoint is None:
            raise ValueError("only object stores count requests")
        bucket = self.root.split("://", 1)[1]
        key = name
        count = 0
        for method, path in list(self.endpoint.proxy.paths):
            if method != "GET":
                continue
            if self.kind == "s3" and path.split("?")[0] == f"/{bucket}/{key}":
                count += 1
            if self.kind == "gcs" and "alt=media" in path and f"/b/{bucket}/o/" in path \
                    and unquote(path.split("/o/", 1)[1].split("?")[0]) == key:
                count += 1
        return count


@pytest.fixture(params=["local", "s3", "gcs"])
def remote(request, tmp_path) -> Remote:
    """Each test runs against local files, moto (S3) and the GCS emulator."""
    return make_remote(request, request.param, tmp_path)


def make_remote(request: Any, kind: str, tmp_path: Path) -> Remote:
    if kind == "local":
        root = tmp_path / "remote"
        root.mkdir()
        return Remote("local", str(root))
    endpoint = request.getfixturevalue("s3" if kind == "s3" else "gcs")
    bucket = endpoint.new_bucket()
    options = endpoint.options(proxied=True)
    return Remote(kind, f"{endpoint.protocol}://{bucket}", options, endpoint)


@pytest.fixture
def file_store(make_store, tmp_path):
    """memory -> node (this test's directory) -> a local durable tier."""
    return make_store(MemoryTier(64 << 20), NodeTier(tmp_path / "node", max_bytes=256 << 20),
                      ObjectTier(str(tmp_path / "durable"), fsync=False))


def durable_keys(store: Any) -> set[str]:
    return {store.key_of(name) for name in store.scan()}
