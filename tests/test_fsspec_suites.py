"""fsspec's own abstract test suites (copy, get, put, pipe, open) run against ``flowcache::``.

Over a local directory and over S3 (moto), every test of the five suites runs; none is skipped.
The one difference between the two targets goes through fsspec's own fixture rather than a
skip: S3 has no empty directories, so ``supports_empty_directories`` is False there (the suites
then expect what an object store does). Each test uses a fresh store and, on S3, a fresh prefix
of one bucket, read and written through one s3fs per module: a new s3fs per test spent 0.1-0.3 s
making its botocore client (its service model parsed again), two thirds of the S3 half's setup.
The flowcache filesystem in front of it is new per test, and the consistency is the default
("always": a metadata request per open), the setting the suites' write-then-read steps need.
"""

from __future__ import annotations

import posixpath
import uuid

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


@pytest.fixture(scope="module")
def s3_target(s3_endpoint):
    """The module's s3fs and its bucket (each test writes under a prefix of its own)."""
    return s3_endpoint.filesystem(), s3_endpoint.new_bucket()


class S3Fixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, suite_store, s3_target):
        return FlowcacheFileSystem(fs=s3_target[0], store=suite_store)

    @pytest.fixture
    def fs_path(self, s3_target):
        return f"{s3_target[1]}/{uuid.uuid4().hex[:12]}"

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



def test_put_file_makes_local_parents_and_needs_no_directories_on_s3(suite_store, s3_target,
                                                                     tmp_path):
    # put_file skips fsspec's mkdirs of the parent: the local write makes it, S3 has none
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload" * 1000)
    local = FlowcacheFileSystem(target_protocol="file", store=suite_store)  # no auto_mkdir
    local.put_file(str(source), str(tmp_path / "new" / "nested" / "file.bin"))
    assert (tmp_path / "new" / "nested" / "file.bin").read_bytes() == source.read_bytes()
    s3fs, bucket = s3_target
    remote = FlowcacheFileSystem(fs=s3fs, store=suite_store)
    path = f"{bucket}/{uuid.uuid4().hex[:12]}/deep/file.bin"
    remote.put_file(str(source), path)
    assert s3fs.cat_file(path) == source.read_bytes()
    with pytest.raises(FileExistsError):
        remote.put_file(str(source), path, mode="create")
