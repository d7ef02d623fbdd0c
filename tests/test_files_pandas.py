"""pandas through flowcache:: URLs: read_csv, read_parquet, to_parquet, unchanged code."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from flowcache.config import use_store
from tests import test_files_support as support

remote = support.remote  # fixtures
file_store = support.file_store


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"sample": [f"s{i:05d}" for i in range(20_000)],
                         "depth": rng.integers(0, 500, 20_000),
                         "score": rng.random(20_000)})


def test_read_csv_and_read_parquet(remote, file_store, frame):
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    remote.write("t.parquet", buffer.getvalue())
    remote.write("t.csv", frame.to_csv(index=False).encode())
    options = {**remote.storage_options(), "block_size": 64 << 10}
    with use_store(file_store):  # the default store, as inside a task
        csv = pd.read_csv(f"flowcache::{remote.url('t.csv')}", storage_options=options)
        parquet = pd.read_parquet(f"flowcache::{remote.url('t.parquet')}",
                                  storage_options=options)
        again = pd.read_parquet(f"flowcache::{remote.url('t.parquet')}", storage_options=options,
                                columns=["score"])
    pd.testing.assert_frame_equal(csv, frame)
    pd.testing.assert_frame_equal(parquet, frame)
    pd.testing.assert_series_equal(again["score"], frame["score"])
    assert file_store.counters.snapshot()["tiers"]["memory"]["hits"] > 0


def test_to_parquet_through_the_protocol_then_read_from_the_cache(remote, file_store, frame):
    url = f"flowcache::{remote.url('written/t.parquet')}"
    options = {**remote.storage_options(), "store": file_store, "block_size": 64 << 10}
    frame.to_parquet(url, storage_options=options)
    if remote.kind != "local":
        remote.endpoint.proxy.reset()
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options), frame)
    if remote.kind != "local":
        assert remote.data_gets("written/t.parquet") == 0
    direct = pd.read_parquet(io.BytesIO(remote.direct().cat_file(remote.path("written/t.parquet"))))
    pd.testing.assert_frame_equal(direct, frame)
