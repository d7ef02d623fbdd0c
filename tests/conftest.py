"""Test fixtures: real servers on free loopback ports, isolated config, stores to test."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

# Before anything imports gcsfs, platformdirs or prefect (see NOTES.md): no gRPC bucket probe,
# no telemetry, dummy cloud credentials, and config/cache dirs of our own.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="flowcache-tests-"))
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "XDG_CACHE_HOME": str(_SESSION_DIR / "cache"), "XDG_CONFIG_HOME": str(_SESSION_DIR / "config"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
})
for _name in [n for n in os.environ if n.startswith("FLOWCACHE_")]:
    del os.environ[_name]

import pytest  # noqa: E402

from flowcache.identity import Identity, new_key  # noqa: E402
from flowcache.locks import FileLocks  # noqa: E402
from flowcache.store import TieredStore  # noqa: E402
from tests.servers import FaultProxy, GcsServer, MotoServer, RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


# -- Redis ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """A clean database on the shared test redis-server."""
    import redis

    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.config_set("maxmemory", 0)
    client.close()
    return redis_server.url


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, to kill and restart mid-test."""
    server = RedisServer().start()
    yield server
    server.stop()


# -- S3 (moto) and GCS (emulator) -------------------------------------------------------------
class ObjectStoreEndpoint:
    def __init__(self, protocol: str, server, proxy: FaultProxy) -> None:
        self.protocol = protocol
        self.server = server
        self.proxy = proxy

    def options(self, *, proxied: bool = False) -> dict:
        endpoint = self.proxy.endpoint if proxied else self.server.endpoint
        if self.protocol == "s3":
            return {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
                    "client_kwargs": {"region_name": "us-east-1"},
                    "config_kwargs": {"retries": {"max_attempts": 2}},
                    "skip_instance_cache": True}
        return {"endpoint_url": endpoint, "token": "anon", "project": "test",
                "skip_instance_cache": True}

    def filesystem(self, *, proxied: bool = False):
        import fsspec

        return fsspec.filesystem(self.protocol, **self.options(proxied=proxied))

    def new_bucket(self) -> str:
        name = f"fc-{uuid.uuid4().hex[:12]}"
        if self.protocol == "s3":
            import boto3

            boto3.client("s3", endpoint_url=self.server.endpoint, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing",
                         ).create_bucket(Bucket=name)
        else:
            self.filesystem().mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_endpoint():
    server = MotoServer().start()
    proxy = FaultProxy(server.port).start()
    yield ObjectStoreEndpoint("s3", server, proxy)
    proxy.stop()
    server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint():
    server = GcsServer().start()
    proxy = FaultProxy(server.port).start()
    yield ObjectStoreEndpoint("gs", server, proxy)
    proxy.stop()
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    s3_endpoint.proxy.reset()
    return s3_endpoint


@pytest.fixture
def gcs(gcs_endpoint):
    gcs_endpoint.proxy.reset()
    return gcs_endpoint


# -- identities and stores --------------------------------------------------------------------
@pytest.fixture
def identity() -> Identity:
    return Identity("alice", new_key())


@pytest.fixture
def make_store(identity, tmp_path):
    """Build a TieredStore over the given tiers, with file locks in this test's directory."""
    stores: list[TieredStore] = []

    def build(*tiers, who: Identity | None = None, **options) -> TieredStore:
        options.setdefault("locks", FileLocks(tmp_path / "locks"))
        store = TieredStore(list(tiers), identity=who or identity, **options)
        stores.append(store)
        return store

    yield build
    for store in stores:
        store.close()


# -- Prefect ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def prefect_api():
    """One ephemeral Prefect API for the whole session (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def default_store_of():
    """Make a store the process default for the test (what cache() uses), then forget it."""
    from flowcache.config import set_default_store

    def install(store: TieredStore) -> TieredStore:
        set_default_store(store)
        return store

    yield install
    set_default_store(None)


# -- time, tenants (appended for the access, ledger and billing tests) --------------------------
class FakeClock:
    """A clock the test moves by hand: ``clock()`` is now, ``clock.advance(s)`` moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenant_redis(own_redis):
    """A redis-server of the test's own (ACL users outlive FLUSHALL), with its admin client and
    a function making tenants: ``tenant("alice")`` -> (RedisTenant, their client URL)."""
    import redis

    from flowcache.admin import provision_redis_user

    admin = redis.Redis.from_url(own_redis.url)

    def tenant(user: str):
        made = provision_redis_user(admin, user)
        url = f"redis://{made.acl_user}:{made.password}@127.0.0.1:{own_redis.port}/0"
        return made, url

    yield own_redis, admin, tenant
    admin.close()
