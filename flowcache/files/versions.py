"""Versions of remote files: what identifies the bytes an object holds, and the store keys of them.

A cached block must never be served for bytes other than those it was read from, so every key is
derived from the object's *version*, not its name alone:

* S3: ETag (an MD5 of the content for single-part uploads), VersionId when versioning is on,
  size and LastModified;
* GCS: generation, metageneration, CRC32C and MD5, size;
* local files: inode, ``mtime_ns``, ``ctime_ns`` and size (the ctime catches an in-place
  rewrite whose mtime was put back, as ``cp -p`` does); their URL names the host
  (``file://<host>/path``), since a path means different files on different hosts and the
  cache's shared tiers span hosts;
* any other fsspec backend: whichever of those fields its ``info()`` reports.

Metadata is always fetched fresh (``refresh=True``). A backend that reports no version at all
(only a size) cannot be cached safely; that is an error unless the caller declared the file
immutable (consistency ``"never"``).

Keys are 64 hex characters, ``url (24) | version (16) | block (24)``: every entry of one URL
shares a prefix, so the stale versions of a file can be listed by prefix in the durable tier,
and every block of one version shares a longer one.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import blake3
import fsspec

from flowcache.errors import WeakVersion
from flowcache.keys.fingerprints import VERSION_FIELDS

URL_HEX = 24
VERSION_HEX = 16
RECORD_SUFFIX = "0" * (64 - URL_HEX)  # the per-URL record: see flowcache.files.records
_PROTOCOL_ALIASES = {"s3a": "s3", "gcs": "gs", "local": "file"}
_SKIPPED_FIELDS = frozenset({"size", "type"})
# Backends whose info(refresh=True) asks the server and leaves their listing cache alone: a
# version check there must not drop the listings (s3fs drops the parents' too, and a dask read
# would list the directory again and HEAD every file on each later info()).
_REFRESH_SKIPS_LISTINGS = frozenset({"s3"})


@dataclass(frozen=True)
class Version:
    """One version of one file: its canonical URL, size and the fields that identify it."""

    url: str
    size: int
    fields: tuple[tuple[str, str], ...]

    @functools.cached_property
    def digest(self) -> str:
        """A stable hex digest of (url, size, fields): the same in every process and host."""
        text = json.dumps([self.url, self.size, list(map(list, self.fields))],
                          separators=(",", ":"))
        return blake3.blake3(text.encode()).hexdigest()

    def field(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "size": self.size, "fields": [list(f) for f in self.fields],
                "digest": self.digest}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Version:
        """Rebuild a version from :meth:`to_dict` output; raises ValueError if it is not one."""
        try:
            version = cls(str(data["url"]), int(data["size"]),
                          tuple((str(k), str(v)) for k, v in data["fields"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a file version record ({exc})") from None
        if data.get("digest") != version.digest:
            raise ValueError("file version record does not match its digest")
        return version


def protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    """The filesystem's canonical protocol name (``s3``, ``gs``, ``file``, ...)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return _PROTOCOL_ALIASES.get(protocol, protocol)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return protocol_of(fs) == "file"


def canonical_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """``s3://bucket/key``, ``gs://bucket/key`` or ``file://<host>/absolute/path``."""
    protocol = protocol_of(fs)
    stripped = fs._strip_protocol(path)
    if protocol == "file":
        return f"file://{socket.gethostname()}{os.path.abspath(stripped)}"
    return f"{protocol}://{stripped}"


def local_path(url: str) -> str:
    """The path of a ``file://<host>/path`` URL (``ValueError`` for another scheme)."""
    if not url.startswith("file://"):
        raise ValueError(f"{url} is not a local file URL")
    rest = url[len("file://"):]
    return rest[rest.index("/"):] if "/" in rest else "/"


def url_host(url: str) -> str | None:
    """The host of a ``file://<host>/path`` URL, None for other schemes."""
    if not url.startswith("file://"):
        return None
    return url[len("file://"):].partition("/")[0]


def version_of(fs: fsspec.AbstractFileSystem, path: str, *, weak_ok: bool = False) -> Version:
    """The current version of ``path`` from fresh metadata.

    Raises ``FileNotFoundError`` if there is no such file, ``IsADirectoryError`` for a
    directory, and :class:`WeakVersion` if the backend identifies no version (unless
    ``weak_ok``: the caller treats the file as immutable).
    """
    url = canonical_url(fs, path)
    if is_local(fs):
        return local_version(url, os.stat(local_path(url)))
    if protocol_of(fs) not in _REFRESH_SKIPS_LISTINGS:
        fs.invalidate_cache(path)  # some backends (gcsfs) answer info() from a listing anyway
    try:
        info = fs.info(path, refresh=True)
    except TypeError:  # a backend whose info() takes no refresh argument
        info = fs.info(path)
    if info.get("type") == "directory":
        raise IsADirectoryError(f"{url} is a directory; flowcache:: caches files")
    return version_from_info(url, info, weak_ok=weak_ok)


def local_version(url: str, st: os.stat_result) -> Version:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{url} is a directory; flowcache:: caches files")
    return Version(url, st.st_size, (("ino", str(st.st_ino)), ("mtime_ns", str(st.st_mtime_ns)),
                                     ("ctime_ns", str(st.st_ctime_ns))))


def version_from_info(url: str, info: Mapping[str, Any], *, weak_ok: bool = False) -> Version:
    """A version from a backend's ``info()`` dict (as returned right after a write, too)."""
    fields = tuple((name, str(info[name])) for name in VERSION_FIELDS
                   if name not in _SKIPPED_FIELDS and info.get(name) is not None)
    if not fields and not weak_ok:
        raise WeakVersion(
            f"{url}: the backend reports no version of the file (no ETag, generation or "
            "modification time), so a changed file could not be told from a cached one. "
            "Use consistency='never' only if the file never changes.")
    return Version(url, int(info.get("size") or 0), fields)


# -- keys --------------------------------------------------------------------------------------
def _hex(*parts: str) -> str:
    return blake3.blake3("\0".join(parts).encode()).hexdigest()


def url_prefix(namespace: str, url: str) -> str:
    """The first 24 hex characters of every key of ``url`` in ``namespace``."""
    return _hex("flowcache.files.url", namespace, url)[:URL_HEX]


def version_prefix(namespace: str, version: Version) -> str:
    """The first 40 hex characters of every block key of ``version``."""
    return url_prefix(namespace, version.url) + _hex("version", version.digest)[:VERSION_HEX]


def block_key(namespace: str, version: Version, block_size: int, index: int) -> str:
    """The store key of block ``index`` (of ``block_size`` bytes) of ``version``."""
    tail = _hex("block", str(block_size), str(index))[:64 - URL_HEX - VERSION_HEX]
    return version_prefix(namespace, version) + tail


def record_key(namespace: str, url: str) -> str:
    """The store key of ``url``'s record (the version the cache last saw)."""
    return url_prefix(namespace, url) + RECORD_SUFFIX
