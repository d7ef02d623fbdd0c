"""fsspec's own abstract test suites (copy, get, put, pipe, open) run against ``flowcache::``.

Over a local directory and over S3 (moto), every test of the five suites runs; none is skipped.
The one difference between the two targets goes through fsspec's own fixture rather than a
skip: S3 has no empty directories, so ``supports_empty_directories`` is False there (the suites
then expect what an object store does). Each test uses a fresh store and, on S3, a fresh bucket.
"""

from __future__ import annotations

import posixpath

import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests

from flowcache.files import FlowcacheFileSystem
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier


@pytest.fixture
def suite_store(make_store, tmp_path):
    return make_store(MemoryTier(64 << 20), NodeTier(tmp_path / "node", max_bytes=256 << 20),
                      ObjectTier(str(tmp_path / "durable"), fsync=False))


class LocalFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, suite_store):
        return FlowcacheFileSystem(target_protocol="file", target_options={"auto_mkdir": True},
                                   store=suite_store)

    @pytest.fixture
    def fs_path(self, tmp_path):
        root = tmp_path / "remote"
        root.mkdir()
        return str(root)


class S3Fixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, suite_store, s3):
        return FlowcacheFileSystem(target_protocol="s3", target_options=s3.options(),
                                   store=suite_store)

    @pytest.fixture
    def fs_path(self, s3):
        return s3.new_bucket()

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self):
        return False


class TestLocalCopy(AbstractCopyTests, LocalFixtures):
    """fsspec's copy suite, local target."""


class TestLocalGet(AbstractGetTests, LocalFixtures):
    """fsspec's get suite, local target."""


class TestLocalPut(AbstractPutTests, LocalFixtures):
    """fsspec's put suite, local target."""


class TestLocalPipe(AbstractPipeTests, LocalFixtures):
    """fsspec's pipe suite, local target."""


class TestLocalOpen(AbstractOpenTests, LocalFixtures):
    """fsspec's open suite, local target."""


class TestS3Copy(AbstractCopyTests, S3Fixtures):
    """fsspec's copy suite, s3 target."""


class TestS3Get(AbstractGetTests, S3Fixtures):
    """fsspec's get suite, s3 target."""


class TestS3Put(AbstractPutTests, S3Fixtures):
    """fsspec's put suite, s3 target."""


class TestS3Pipe(AbstractPipeTests, S3Fixtures):
    """fsspec's pipe suite, s3 target."""


class TestS3Open(AbstractOpenTests, S3Fixtures):
    """fsspec's open suite, s3 target."""

