"""localize(): a node-local path holding the current version of a remote file.

Tools that want a path (samtools, a C library, ``np.memmap``) cannot read ``s3://``. ``localize``
gives them one, on the node's local disk, shared by the node's processes::

    <local dir>/<user>/<url hash>/<version digest>/<file name>

The path names the version, so it stays valid while the remote file's fingerprint matches (per
the consistency policy, checked on each call); when the file changes, the next call downloads
the new version beside it and removes the old one. The bytes come through the block cache, so a
node that already holds the blocks (node tier, Redis) never touches the bucket, and concurrent
callers fetch each block once. Copies are made read-only: a task that edited one would corrupt
what every later task on the node reads. A local file is returned as it is.

Each URL directory keeps a ``.source.json`` (the URL and its localized version) for
:func:`flowcache.files.sweep.sweep_files`, which removes copies of deleted or replaced files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import fsspec

from flowcache.files.blocks import BlockReader
from flowcache.files.versions import Version, is_local, local_path, url_prefix
from flowcache.store import TieredStore

SOURCE = ".source.json"
_DIGEST_DIR = 16


def default_local_dir() -> Path:
    """``<user cache dir>/flowcache/localized`` (on the node's disk, not in shared memory)."""
    from flowcache.config import default_cache_dir

    return default_cache_dir() / "localized"


def local_root(store: TieredStore, directory: str | os.PathLike[str] | None) -> Path:
    return Path(directory) if directory is not None else default_local_dir()


def url_dir(store: TieredStore, root: Path, url: str) -> Path:
    return root / store.namespace / url_prefix(store.namespace, url)


def localize_version(reader: BlockReader, target: fsspec.AbstractFileSystem,
                     directory: str | os.PathLike[str] | None = None) -> Path:
    """The local copy of ``reader``'s version, downloading it (through the block cache) if
    this node has none; a file of a local ``target`` is its own copy."""
    version = reader.version
    if is_local(target):
        return Path(local_path(version.url))
    root = local_root(reader.store, directory)
    base = url_dir(reader.store, root, version.url)
    name = os.path.basename(version.url.rstrip("/")) or "file"
    target = base / version.digest[:_DIGEST_DIR] / name
    if _complete(target, version):
        os.utime(target)  # recently used (for sweeps by age)
        return target
    base.mkdir(parents=True, exist_ok=True)
    remove_other_versions(base, keep=version.digest[:_DIGEST_DIR])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.tmp-{uuid.uuid4().hex}"
    step = max(reader.policy.fetch_bytes, reader.policy.block_size)
    try:
        with open(tmp, "wb") as handle:
            for start in range(0, version.size, step):
                handle.write(reader.read(start, min(version.size, start + step)))
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, target)  # exclusive: a concurrent caller's identical copy stands
        except FileExistsError:
            if not _complete(target, version):
                os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _write_source(base, version)
    return target


def _complete(target: Path, version: Version) -> bool:
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    return st.st_size == version.size and not st.st_mode & 0o222


def remove_other_versions(base: Path, keep: str | None) -> int:
    """Remove the copies in ``base`` of versions other than ``keep`` (all, if None)."""
    removed = 0
    if not base.is_dir():
        return 0
    for child in base.iterdir():
        if child.is_dir() and child.name != keep:
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def _write_source(base: Path, version: Version) -> None:
    tmp = base / f"{SOURCE}.tmp-{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(version.to_dict()))
    os.replace(tmp, base / SOURCE)


def read_source(base: Path) -> Version | None:
    """The version last localized in ``base`` (None if unreadable)."""
    try:
        return Version.from_dict(json.loads((base / SOURCE).read_text()))
    except (OSError, ValueError):
        return None
