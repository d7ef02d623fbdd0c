"""rm through flowcache::: the target removes files and directories, the cache forgets them."""

from __future__ import annotations

import os

import pytest

from tests import test_files_support as support
from tests.test_files_support import SMALL_BLOCK, durable_keys

remote = support.remote  # fixtures
file_store = support.file_store


def test_recursive_rm_removes_the_tree_and_its_cached_copies(remote, file_store):
    data = os.urandom(2 * SMALL_BLOCK)
    names = ["tree/a.bin", "tree/sub/b.bin", "tree/sub/deeper/c.bin"]
    for name in names:
        remote.write(name, data)
    fs = remote.cache(file_store)
    for name in names:
        assert fs.cat_file(remote.path(name)) == data
    fs.wait()
    assert durable_keys(file_store), "nothing was cached"

    fs.rm(remote.path("tree"), recursive=True)

    assert not fs.exists(remote.path("tree/sub/deeper/c.bin"))
    assert not remote.direct().exists(remote.path("tree/a.bin"))
    if remote.kind == "local":
        assert not os.path.exists(remote.path("tree"))
    assert durable_keys(file_store) == set(), "cached copies of removed files remain"
    with pytest.raises(FileNotFoundError):
        fs.cat_file(remote.path("tree/a.bin"))
