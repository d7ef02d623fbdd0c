"""Reading byte ranges of one exact version of a remote file.

Blocks are cached under their version's key, so a range read while the object is being replaced
must not return the new bytes (they would be cached, and served, as the old version). Each
backend is asked for the exact version where it can enforce it:

* S3: ``GetObject`` with ``VersionId`` (versioned buckets) or ``If-Match: <ETag>``;
* GCS: ``generation=`` on the media request;
* local files: ``fstat`` of the open descriptor before and after the read (a replacement by
  rename is another inode; an in-place rewrite changes ``ctime_ns``, whatever the mtime);
* other backends: the range read, then a fresh metadata check.

A mismatch raises :class:`RemoteChanged`; the reader reopens the file to see the new version.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec

from flowcache.errors import RemoteChanged
from flowcache.files.versions import (
    Version,
    is_local,
    local_path,
    local_version,
    protocol_of,
    version_of,
)


def fetch_range(fs: fsspec.AbstractFileSystem, path: str, version: Version, start: int,
                end: int) -> bytes:
    """Bytes ``[start, end)`` of ``version`` of ``path``; :class:`RemoteChanged` if the file no
    longer holds that version."""
    if start >= end:
        return b""
    protocol = protocol_of(fs)
    if is_local(fs):
        return _local(version, start, end)
    if protocol == "s3" and hasattr(fs, "_call_s3"):
        return _s3(fs, path, version, start, end)
    if protocol == "gs" and version.field("generation"):
        try:
            return fs.cat_file(path, start=start, end=end, generation=version.field("generation"))
        except FileNotFoundError:
            raise RemoteChanged(version.url, "generation gone") from None
    data = fs.cat_file(path, start=start, end=end)
    try:
        now = version_of(fs, path, weak_ok=True)
    except FileNotFoundError:
        raise RemoteChanged(version.url, "deleted") from None
    if now.digest != version.digest:
        raise RemoteChanged(version.url)
    return data


def _local(version: Version, start: int, end: int) -> bytes:
    path = local_path(version.url)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise RemoteChanged(version.url, "deleted") from None
    try:
        if local_version(version.url, os.fstat(fd)).digest != version.digest:
            raise RemoteChanged(version.url)
        data = os.pread(fd, end - start, start)
        while len(data) < end - start:  # pread may return less for large reads
            more = os.pread(fd, end - start - len(data), start + len(data))
            if not more:
                break
            data += more
        if local_version(version.url, os.fstat(fd)).digest != version.digest:
            raise RemoteChanged(version.url, "modified during the read")
    finally:
        os.close(fd)
    if len(data) != end - start:
        raise RemoteChanged(version.url, f"expected {end - start} bytes, read {len(data)}")
    return data


def _s3(fs: Any, path: str, version: Version, start: int, end: int) -> bytes:
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)
    condition: dict[str, str] = {}
    version_id = version.field("VersionId")
    etag = version.field("ETag")
    if version_id and version_id != "None":
        condition["VersionId"] = version_id
    elif etag:
        condition["IfMatch"] = etag

    async def get() -> bytes:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                     Range=f"bytes={start}-{end - 1}", **condition)
        try:
            return await response["Body"].read()
        finally:
            response["Body"].close()

    try:
        data = sync(fs.loop, get)
    except FileNotFoundError:
        raise RemoteChanged(version.url, "deleted") from None
    except OSError as exc:
        if _precondition_failed(exc):
            raise RemoteChanged(version.url, "ETag differs") from None
        raise
    if len(data) != end - start:
        raise RemoteChanged(version.url, f"expected {end - start} bytes, got {len(data)}")
    return data


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("PreconditionFailed", "412") or "pre-condition" in str(exc).lower()
