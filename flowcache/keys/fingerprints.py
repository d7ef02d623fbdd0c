"""File fingerprints: what identifies one version of a file without reading it.

A cached result that depends on a file must miss when the file changes. Reading a whole file to
hash it would cost as much as the work the cache saves, so a file is identified by what its
storage says about the version it holds:

* local files: absolute path, size, ``mtime_ns``, ``ctime_ns`` and inode (directories: the same
  for every file below). The mtime alone is not enough: ``cp -p``, ``rsync -t`` and
  ``os.utime`` put an old mtime back on new bytes. The ctime cannot be set from user space (any
  write, chmod or utime moves it), and a replacement by rename is another inode;
* S3: ETag, VersionId (when versioning is on), size, LastModified;
* GCS: generation, size, crc32c/md5;
* any other fsspec backend: whatever of those fields its ``info()`` reports.

Metadata is always fetched with ``refresh=True``: a listing cached by fsspec would make an edited
file look unchanged.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

# Fields of fsspec info() dicts that identify an object version, in the order they are hashed.
VERSION_FIELDS = (
    "size", "ETag", "etag", "VersionId", "generation", "metageneration", "crc32c", "md5Hash",
    "LastModified", "mtime", "updated", "type",
)
LOCAL_PROTOCOLS = frozenset({"file", "local"})


@dataclass(frozen=True)
class FileRef:
    """A file or directory named by an fsspec URL, to be keyed by its fingerprint.

    Pass one as a task input (``FileRef("s3://bucket/raw/a.csv")``) where a plain string would
    be keyed by its text only. ``storage_options`` override the store-wide ones for this URL.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __fspath__(self) -> str:
        protocol, path = split_protocol(self.url)
        if protocol in LOCAL_PROTOCOLS:
            return path
        raise TypeError(f"{self.url} is not a local path")

    def __str__(self) -> str:
        return self.url


def split_protocol(url: str) -> tuple[str, str]:
    """``"s3://b/k"`` -> ``("s3", "b/k")``; a bare path is ``("file", path)``."""
    if "://" in url:
        protocol, _, rest = url.partition("://")
        protocol = protocol.lower()
        if protocol in LOCAL_PROTOCOLS:
            return "file", rest
        return protocol, rest
    return "file", url


class Fingerprinter:
    """Turns file references into version fingerprints.

    ``storage_options`` maps a protocol (``"s3"``, ``"gs"``) to the keyword arguments its fsspec
    filesystem needs (endpoint, credentials); configuration parses them once, at the edge.
    """

    def __init__(self, storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.storage_options = {k: dict(v) for k, v in (storage_options or {}).items()}

    def fingerprint(self, ref: str | os.PathLike[str] | FileRef | Any) -> tuple:
        """Return a tuple of canonical values that changes whenever the file does."""
        if isinstance(ref, FileRef):
            protocol, path = split_protocol(ref.url)
            if protocol == "file":
                return local_fingerprint(Path(path))
            return self._remote(protocol, path, ref.storage_options)
        if isinstance(ref, fsspec.core.OpenFile):
            return remote_fingerprint(ref.fs, ref.path)
        if isinstance(ref, os.PathLike):
            return local_fingerprint(Path(os.fspath(ref)))
        if isinstance(ref, str):
            protocol, path = split_protocol(ref)
            if protocol == "file":
                return local_fingerprint(Path(path))
            return self._remote(protocol, path, {})
        raise TypeError(f"not a file reference: {type(ref).__name__}")

    def filesystem(self, protocol: str, extra: Mapping[str, Any] | None = None
                   ) -> fsspec.AbstractFileSystem:
        options = {**self.storage_options.get(protocol, {}), **(extra or {})}
        if protocol in ("gs", "gcs"):
            options = {**self.storage_options.get("gs", {}), **self.storage_options.get("gcs", {}),
                       **(extra or {})}
        return fsspec.filesystem(protocol, **options)

    def _remote(self, protocol: str, path: str, extra: Mapping[str, Any]) -> tuple:
        fs = self.filesystem(protocol, extra)
        return remote_fingerprint(fs, f"{protocol}://{path}")


def local_fingerprint(path: Path) -> tuple:
    """(kind, absolute path, size, mtime_ns, ctime_ns, inode), recursively for directories."""
    path = path.expanduser().absolute()
    try:
        st = path.stat()
    except FileNotFoundError:
        return ("missing", str(path))
    if stat.S_ISDIR(st.st_mode):
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root, name)
                try:
                    fst = full.stat()
                except FileNotFoundError:
                    continue
                entries.append((str(full.relative_to(path)), *_stat_fields(fst)))
        return ("dir", str(path), tuple(entries))
    return ("file", str(path), *_stat_fields(st))


def _stat_fields(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def remote_fingerprint(fs: fsspec.AbstractFileSystem, url: str) -> tuple:
    """Fingerprint an object (or every object under a prefix) from fresh metadata."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in LOCAL_PROTOCOLS:
        return local_fingerprint(Path(fs._strip_protocol(url)))
    path = fs._strip_protocol(url)
    fs.invalidate_cache(path)
    try:
        info = fs.info(path, refresh=True)
    except FileNotFoundError:
        return ("missing", f"{protocol}://{path}")
    if info.get("type") == "directory":
        fs.invalidate_cache(path)
        found = fs.find(path, detail=True)
        entries = tuple(
            (name, _version_fields(meta)) for name, meta in sorted(found.items())
        )
        return ("dir", f"{protocol}://{path}", entries)
    return ("object", f"{protocol}://{path}", _version_fields(info))


def _version_fields(info: Mapping[str, Any]) -> tuple:
    return tuple((name, str(info[name])) for name in VERSION_FIELDS if info.get(name) is not None)
