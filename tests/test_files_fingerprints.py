"""A local file rewritten in place with its old mtime (``cp -p``, ``rsync -t``, ``os.utime``)
is a new version: for ``flowcache::`` reads and for task keys alike."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowcache.keys.recipe import KeyRecipe
from tests import test_files_support as support

file_store = support.file_store  # fixture


def _after_a_ctime_tick(path: Path, deadline: float = 60.0) -> None:
    """Wait until the kernel's file clock has moved past ``path``'s ctime (it ticks in
    jiffies, so two writes a few ms apart may share one); a condition, not a sleep."""
    probe = path.with_name(path.name + ".probe")
    limit = time.monotonic() + deadline
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            probe.unlink()
            return
        assert time.monotonic() < limit, "the file clock did not move in 60 s"


def _rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    """What ``cp -p`` onto an existing file does: same inode, new bytes, old times back."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)


def _task(sample: Path) -> int:
    return len(sample.read_bytes())


def test_in_place_rewrite_with_restored_mtime_is_a_new_version(tmp_path, file_store):
    from flowcache.files import FlowcacheFileSystem

    path = tmp_path / "sample.bin"
    old, new = b"A" * 100_000, b"B" * 100_000
    path.write_bytes(old)
    fs = FlowcacheFileSystem(target_protocol="file", store=file_store, consistency="always",
                             block_size=64 << 10)
    recipe = KeyRecipe.parse(files=["sample"])
    key_before = recipe.key(_task, {"sample": path}, namespace="alice")
    assert fs.cat_file(str(path)) == old
    fs.wait()

    _after_a_ctime_tick(path)
    _rewrite_keeping_mtime(path, new)

    assert fs.cat_file(str(path)) == new, "the rewritten file was served from the cache"
    with fs.open(str(path)) as handle:
        assert handle.read() == new
    assert recipe.key(_task, {"sample": path}, namespace="alice") != key_before


def test_rewrite_inside_a_directory_changes_the_directory_key(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    member = folder / "a.csv"
    member.write_bytes(b"x,y\n1,2\n")
    recipe = KeyRecipe.parse(files=["sample"])
    before = recipe.key(_task, {"sample": folder}, namespace="alice")
    _after_a_ctime_tick(member)
    _rewrite_keeping_mtime(member, b"x,y\n3,4\n")
    assert recipe.key(_task, {"sample": folder}, namespace="alice") != before


def test_an_untouched_file_keeps_its_key(tmp_path):
    path = tmp_path / "same.bin"
    path.write_bytes(b"same")
    recipe = KeyRecipe.parse(files=["sample"])
    first = recipe.key(_task, {"sample": path}, namespace="alice")
    path.read_bytes()  # reading changes no fingerprint field
    assert recipe.key(_task, {"sample": path}, namespace="alice") == first
