"""One call, one key: the cache() option (Prefect and Dask), the CONTENT policy and Dask graph
caching key the same call the same way, through one key recipe; an ``s3://`` argument is
fingerprinted against the store's configured endpoint on every path."""

from __future__ import annotations

import json
import uuid

import pytest
from dask import delayed
from prefect import flow, task

import dask_cache
from flowcache.config import StoreConfig
from flowcache.errors import UnhashableInput
from flowcache.identity import new_key
from flowcache.keys.recipe import KeyRecipe
from flowcache.listeners import StoreListener
from prefect_cache import FlowcacheStorage, cache
from prefect_cache.policy import ContentKey

pytestmark = pytest.mark.usefixtures("prefect_api")


def measure(url: str, scale: int, unit: str = "bytes") -> int:
    return scale * len(url)


@pytest.fixture
def block(tmp_path, s3):
    """A FlowcacheStorage whose store reads S3 (moto) through its storage options only: the
    environment has no endpoint, so a fingerprint made without them would not reach moto."""
    storage_options = {"s3": s3.options()}
    name = f"one-key-{uuid.uuid4().hex[:8]}"
    FlowcacheStorage(store=f"memory+{tmp_path}/durable", user="kim",
                     signing_key=new_key().hex(),
                     storage_options=storage_options).save(name)
    return FlowcacheStorage.load(name)


class Touched(StoreListener):
    """The keys a path read or wrote: what the store saw, not what the path says it did."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def on_write(self, name, tier, header, nbytes) -> None:
        if tier == "object":
            self.keys.append(header.key)

    def on_hit(self, key, tier, header) -> None:
        self.keys.append(key)

    def take(self) -> str:
        assert len(set(self.keys)) == 1, self.keys
        (key,), self.keys = set(self.keys), []
        return key


def four_keys(block, url: str) -> dict[str, str]:
    store = block.tiered_store()
    touched = Touched()
    store.add_listener(touched)
    cached = cache(files=["url"], store=store)(task(measure))

    @flow
    def with_option() -> int:
        return cached(url, 3)

    with_option()
    option_key = touched.take()

    content = task(measure, cache_policy=ContentKey(files=["url"]), result_storage=block,
                   persist_result=True)

    @flow
    def with_policy() -> int:
        return content(url, 3)

    with_policy()
    record = touched.take()  # Prefect's record, stored under a digest of Prefect's key
    policy_key = dict(store.headers())[store.name_for(record)].meta["path"]

    (_,), plan = dask_cache.compute(delayed(measure)(url, 3), store=store, scheduler="sync",
                                    return_plan=True)
    (graph_key,) = plan.chain.values()
    assert touched.take() == graph_key

    dask_cache.cache(files=["url"], store=store)(measure)(url, 3)
    dask_option_key = touched.take()
    store.listeners.remove(touched)
    return {"cache()": option_key, "CONTENT": policy_key, "dask graph": graph_key,
            "dask_cache.cache()": dask_option_key}


def test_one_call_has_one_key_on_every_path(block, s3):
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/input.csv"
    fs = s3.filesystem()
    fs.pipe(url, b"a,b\n1,2\n")
    first = four_keys(block, url)
    assert len(set(first.values())) == 1, json.dumps(first, indent=1)

    fs.pipe(url, b"a,b\n1,2\n3,4\n")  # a new version of the input: a new key, everywhere
    second = four_keys(block, url)
    assert len(set(second.values())) == 1, json.dumps(second, indent=1)
    assert set(second.values()) != set(first.values())


def test_an_unhashable_argument_names_the_fix_of_its_path(block):
    import threading

    recipe = KeyRecipe.parse()
    with pytest.raises(UnhashableInput, match=r"cache\(exclude=\['url'\]\)"):
        recipe.key(measure, {"url": threading.Lock(), "scale": 1}, namespace="kim")
    policy = ContentKey().recipe()
    with pytest.raises(UnhashableInput, match=r"CONTENT - 'url'"):
        policy.key(measure, {"url": threading.Lock(), "scale": 1}, namespace="kim")
    store = block.tiered_store()
    with pytest.raises(UnhashableInput, match=r"__flowcache_key__.*dask.compute"):
        dask_cache.compute(delayed(measure)(threading.Lock(), 3), store=store,
                           scheduler="sync")


def test_the_store_fingerprints_with_its_storage_options(tmp_path, s3):
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/x"
    s3.filesystem().pipe(url, b"12345")
    config = StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+{tmp_path}/d", "FLOWCACHE_USER": "kim",
        "FLOWCACHE_SIGNING_KEY": new_key().hex(),
        "FLOWCACHE_STORAGE_OPTIONS": json.dumps({"s3": s3.options()})})
    fingerprint = config.build().fingerprinter.fingerprint(url)
    assert fingerprint[0] == "object"
    assert ("size", "5") in fingerprint[2]
