"""The native Prefect path: FlowcacheStorage as result storage and CONTENT as cache policy."""

from __future__ import annotations

import importlib.metadata
import uuid

import pytest
from prefect import flow, task

from flowcache.config import StoreConfig
from flowcache.identity import new_key
from prefect_cache import CONTENT, FlowcacheStorage
from tests.prefect_helpers import task_state_names

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_the_block_is_registered_as_a_prefect_collection():
    entry_points = importlib.metadata.entry_points(group="prefect.collections")
    assert "prefect_cache" in {ep.name for ep in entry_points}
    from prefect.blocks.core import Block

    assert Block.get_block_class_from_key("flowcache-storage") is FlowcacheStorage


@pytest.fixture
def block(tmp_path, redis_url):
    spec = f"memory+{redis_url}+{tmp_path}/durable"
    name = f"test-{uuid.uuid4().hex[:8]}"
    FlowcacheStorage(store=spec, user="erin", signing_key=new_key().hex()).save(name)
    loaded = FlowcacheStorage.load(name)
    return loaded


def test_results_live_in_the_store_and_hit_on_the_next_run(block, tmp_path):
    calls = []
    data = tmp_path / "input.txt"
    data.write_text("hello")

    @task(result_storage=block, cache_policy=CONTENT, persist_result=True)
    def measure(path, factor: int) -> int:
        calls.append(1)
        return len(path.read_text()) * factor

    @flow
    def run() -> int:
        return measure(data, 3)

    assert run() == 15
    state = run(return_state=True)
    assert state.result() == 15
    assert calls == [1]
    assert task_state_names(state.state_details.flow_run_id, expected=1) == {
        "measure": ["Cached"]}
    store = block.tiered_store()
    ((_, header),) = list(store.headers())
    assert header.owner == "erin"
    assert header.meta["path"]  # Prefect's storage key, kept for operators
    data.write_text("hello world")  # an edited input file is a new key
    assert run() == 33
    assert calls == [1, 1]


def test_the_policy_composes_and_narrows_like_prefects(block):
    calls = []

    @task(result_storage=block, cache_policy=CONTENT - "noise", persist_result=True)
    def add(a: int, noise: object) -> int:
        calls.append(1)
        return a + 1

    @flow
    def run(noise: object) -> int:
        return add(1, noise)

    assert run(object()) == 2
    assert run(object()) == 2
    assert calls == [1]


def test_the_block_reads_what_a_store_of_the_same_config_wrote(block):
    store = block.tiered_store()
    again = StoreConfig.from_env({"FLOWCACHE_STORE": block.store, "FLOWCACHE_USER": "erin",
                                  "FLOWCACHE_SIGNING_KEY": block.signing_key.get_secret_value()
                                  }).build()
    block.write_path("some/key", b"payload", _sync=True)
    assert block.read_path("some/key", _sync=True) == b"payload"
    assert again.get(FlowcacheStorage._key("some/key")) == b"payload"
    with pytest.raises(ValueError, match="does not exist"):
        block.read_path("missing", _sync=True)
    assert store is block.tiered_store()


def test_the_native_path_is_not_write_confirmed(s3, tmp_path):
    """Documented limitation: Prefect completes the run first and only logs a failed write."""
    bucket = s3.new_bucket()
    name = f"rejecting-{uuid.uuid4().hex[:8]}"
    FlowcacheStorage(store=f"memory+s3://{bucket}/cache", user="erin",
                     signing_key=new_key().hex(),
                     storage_options={"s3": {k: v for k, v in s3.options(proxied=True).items()
                                             if k != "skip_instance_cache"}}).save(name)
    block = FlowcacheStorage.load(name)

    @task(result_storage=block, cache_policy=CONTENT, persist_result=True)
    def produce(n: int) -> int:
        return n

    @flow
    def run() -> int:
        return produce(7)

    s3.proxy.reject_writes = True
    state = run(return_state=True)
    assert state.is_completed()  # ...although nothing was stored:
    assert list(block.tiered_store().scan()) == []


# -- secrets ------------------------------------------------------------------------------------
def test_secrets_are_saved_obfuscated_and_the_store_still_works(tenant_redis, s3):
    from prefect.client.orchestration import get_client

    server, _, tenant = tenant_redis
    made, _ = tenant("erin")
    bucket = s3.new_bucket()
    s3_secret = f"s3cr3t-{uuid.uuid4().hex}"
    options = {**s3.options(), "secret": s3_secret}  # moto takes any secret
    name = f"secret-{uuid.uuid4().hex[:8]}"
    FlowcacheStorage(store=f"memory+redis://{made.acl_user}@127.0.0.1:{server.port}/0"
                           f"+s3://{bucket}/cache",
                     user="erin", signing_key=new_key().hex(), redis_password=made.password,
                     storage_options={"s3": options}).save(name)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name, "flowcache-storage",
                                                      include_secrets=False)
    shown = repr(document.data) + str(document.data)
    assert made.password not in shown
    assert s3_secret not in shown
    block = FlowcacheStorage.load(name)
    assert made.password not in repr(block) + str(block)
    assert s3_secret not in repr(block) + str(block)
    block.write_path("a/result", b"payload", _sync=True)
    assert block.read_path("a/result", _sync=True) == b"payload"
    store = block.tiered_store()
    assert [tier.name for tier in store.tiers] == ["memory", "redis", "object"]
    assert store.tiers[1].exists(store.name_for(FlowcacheStorage._key("a/result")))


def test_a_password_in_the_store_url_is_refused(redis_url, tmp_path):
    from flowcache.errors import ConfigError

    block = FlowcacheStorage(store=f"memory+redis://fc:hunter2@127.0.0.1:1/0+{tmp_path}/d",
                             user="erin", signing_key=new_key().hex())
    with pytest.raises(ConfigError, match="redis_password"):
        block.tiered_store()
