"""Metadata requests of cached reads: none under "never", one version check per open under
"always", counted where they land (the S3 proxy in front of moto)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowcache.files import FlowcacheFileSystem
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from tests import test_files_support as support
from tests.servers import free_port

file_store = support.file_store  # fixture

ROOT = Path(__file__).resolve().parent.parent

# A new process: the store's tiers on disk, the bucket's endpoint a port nobody listens on.
_OFFLINE_READER = """
import json, sys
import pandas as pd
import flowcache.files
from flowcache.identity import Identity
from flowcache.locks import FileLocks
from flowcache.store import TieredStore
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier

args = json.loads(sys.argv[1])
store = TieredStore([NodeTier(args["node"]), ObjectTier(args["durable"])],
                    identity=Identity("alice", bytes.fromhex(args["key"])),
                    locks=FileLocks(args["locks"]))
options = {"s3": {"endpoint_url": args["endpoint"], "key": "testing", "secret": "testing",
                  "client_kwargs": {"region_name": "us-east-1"},
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 5},
                  "skip_instance_cache": True},
           "store": store, "consistency": "never", "block_size": 65536}
frame = pd.read_parquet(args["url"], storage_options=options)
print(json.dumps({"rows": len(frame), "total": float(frame["score"].sum())}))
"""


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(16)
    return pd.DataFrame({"sample": [f"s{i:05d}" for i in range(20_000)],
                         "score": rng.random(20_000)})


def test_never_reads_parquet_in_a_new_process_with_the_bucket_unreachable(
        s3, make_store, identity, tmp_path, frame):
    bucket = s3.new_bucket()
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    s3.filesystem().pipe_file(f"{bucket}/t.parquet", buffer.getvalue())
    dirs = {"node": str(tmp_path / "node"), "durable": str(tmp_path / "durable"),
            "locks": str(tmp_path / "locks")}
    store = make_store(NodeTier(dirs["node"]), ObjectTier(dirs["durable"]))
    url = f"flowcache::s3://{bucket}/t.parquet"
    options = {"s3": s3.options(), "store": store, "consistency": "never",
               "block_size": 64 << 10}
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options), frame)
    FlowcacheFileSystem(target_protocol="s3", target_options=s3.options(), store=store).wait()

    closed = f"http://127.0.0.1:{free_port()}"
    args = {**dirs, "key": identity.key.hex(), "endpoint": closed, "url": url}
    out = subprocess.run([sys.executable, "-c", _OFFLINE_READER, json.dumps(args)],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rows": len(frame), "total": float(frame["score"].sum())}


class CountingFileSystem(FlowcacheFileSystem):
    """flowcache:: as it is, counting the files it opens (the yardstick for the requests)."""

    opens: Counter[str]

    def _open(self, path: str, mode: str = "rb", **kwargs):  # type: ignore[override]
        self.opens[self._strip_protocol(path)] += 1
        return super()._open(path, mode, **kwargs)


def _dataset(s3, parts: int = 4) -> str:
    bucket = s3.new_bucket()
    direct = s3.filesystem()
    for i in range(parts):
        buffer = io.BytesIO()
        pd.DataFrame({"a": np.arange(1000) + i, "b": np.linspace(0, 1, 1000)}).to_parquet(buffer)
        direct.pipe_file(f"{bucket}/table/part.{i}.parquet", buffer.getvalue())
    return bucket


def _requests(s3, bucket: str) -> tuple[Counter[str], int]:
    """HEADs per object key, and listing GETs, that reached the bucket."""
    heads: Counter[str] = Counter()
    listings = 0
    for method, path in s3.proxy.paths:
        where = path.split("?")[0]
        if method == "HEAD" and where.startswith(f"/{bucket}/table/part."):
            heads[where[len(f"/{bucket}/"):]] += 1
        if method == "GET" and "list-type" in path:
            listings += 1
    return heads, listings


def test_always_checks_each_file_once_per_open_on_a_warm_dask_read(s3, file_store):
    import dask
    import dask.dataframe as dd
    import s3fs

    bucket = _dataset(s3)
    with dask.config.set(scheduler="sync"):
        plain = s3fs.S3FileSystem(**s3.options(proxied=True))
        s3.proxy.reset()
        assert len(dd.read_parquet(f"{bucket}/table", filesystem=plain).compute()) == 4000
        _, plain_listings = _requests(s3, bucket)

        fs = CountingFileSystem(target_protocol="s3", target_options=s3.options(proxied=True),
                                store=file_store, consistency="always", block_size=64 << 10)
        fs.opens = Counter()
        assert len(dd.read_parquet(f"{bucket}/table", filesystem=fs).compute()) == 4000
        fs.wait()
        s3.proxy.reset()
        fs.opens = Counter()
        fs.fs.invalidate_cache()  # a warm cache, but nothing remembered by the target
        assert len(dd.read_parquet(f"{bucket}/table", filesystem=fs).compute()) == 4000
    heads, listings = _requests(s3, bucket)
    data_gets = [p for m, p in s3.proxy.paths if m == "GET" and "list-type" not in p
                 and "/table/part." in p]
    assert data_gets == [], "a warm read fetched file bytes"
    assert fs.opens, "dask opened no file through flowcache::"
    for name, opened in fs.opens.items():
        key = name.split("/", 1)[1]
        assert heads[key] <= opened, f"{key}: {heads[key]} HEADs for {opened} opens"
    assert sum(heads.values()) >= 1  # "always" does check
    assert listings <= plain_listings, (listings, plain_listings, s3.proxy.paths)
