"""Configuration: store specs, options, embedded defaults and clear errors."""

from __future__ import annotations

import os

import pytest

from flowcache.config import StoreConfig, TierSpec, parse_size, split_store_spec
from flowcache.errors import ConfigError
from flowcache.locks import FileLocks, RedisLocks
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier


def test_store_spec_splits_on_plus_before_a_scheme_or_path():
    assert split_store_spec("memory+redis://127.0.0.1:6379/0+s3://bucket/prefix") == [
        "memory", "redis://127.0.0.1:6379/0", "s3://bucket/prefix"]
    assert split_store_spec("memory://?max_bytes=1GiB+/var/cache/fc") == [
        "memory://?max_bytes=1GiB", "/var/cache/fc"]
    assert split_store_spec("redis+cluster://h:7000+gs://b/p") == ["redis+cluster://h:7000",
                                                                   "gs://b/p"]
    assert split_store_spec("memory+~/cache") == ["memory", "~/cache"]


def test_tier_options_are_taken_from_the_query_and_the_rest_left_alone():
    spec = TierSpec.parse("redis://h:1/0?max_item_bytes=2MiB&socket_keepalive=true")
    assert spec.kind == "redis"
    assert spec.options == {"max_item_bytes": 2 << 20}
    assert spec.url == "redis://h:1/0?socket_keepalive=true"
    assert TierSpec.parse("memory://?max_bytes=1GB").options == {"max_bytes": 10**9}
    assert TierSpec.parse("/tmp/x?fsync=false").options == {"fsync": False}
    assert TierSpec.parse("memory://bucket/path").kind == "object"


@pytest.mark.parametrize(("text", "size"), [("10", 10), ("1KiB", 1024), ("1.5MB", 1_500_000),
                                            ("2GiB", 2 << 30), ("3 mib", 3 << 20)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="size"):
        parse_size("lots")
    with pytest.raises(ConfigError, match="true or false"):
        TierSpec.parse("/tmp/x?fsync=maybe")
    with pytest.raises(ConfigError, match="FLOWCACHE_LOCKS"):
        StoreConfig.from_env({"FLOWCACHE_LOCKS": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="JSON"):
        StoreConfig.from_env({"FLOWCACHE_STORAGE_OPTIONS": "{nope"})
    with pytest.raises(ConfigError, match="user name"):
        StoreConfig.from_env({"FLOWCACHE_USER": "../etc"})
    with pytest.raises(ConfigError, match="does not exist"):
        StoreConfig.from_env({"FLOWCACHE_CONFIG": str(tmp_path / "missing.toml")})


def test_embedded_default_needs_no_server(session_dir):
    config = StoreConfig.from_env({})
    store = config.build()
    assert [type(t) for t in store.tiers] == [MemoryTier, ObjectTier]
    assert str(store.durable.root).startswith(str(session_dir))  # the user's cache dir
    assert isinstance(store.locks.outer, FileLocks)
    store.put("ab" * 32, b"works")
    assert config.build().get("ab" * 32) == b"works"  # a new process would find it too
    # the signing key was created once and is reused
    assert StoreConfig.from_env({}).signing_key == config.signing_key


def test_redis_tier_brings_redis_locks(redis_url, tmp_path):
    config = StoreConfig.from_env({"FLOWCACHE_STORE": f"memory+{redis_url}+{tmp_path}/d",
                                   "FLOWCACHE_USER": "bob"})
    store = config.build()
    assert isinstance(store.tiers[1], RedisTier)
    assert isinstance(store.locks.outer, RedisLocks)
    assert store.identity.user == "bob"


def test_toml_file_settings_and_env_precedence(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'[flowcache]\nstore = ["memory", "{tmp_path}/d"]\nuser = "carol"\n'
                    '[flowcache.storage_options.s3]\nendpoint_url = "http://127.0.0.1:1"\n')
    config = StoreConfig.from_env({"FLOWCACHE_CONFIG": str(path)})
    assert config.user == "carol"
    assert config.tiers == ("memory", f"{tmp_path}/d")
    assert config.storage_options["s3"]["endpoint_url"] == "http://127.0.0.1:1"
    assert StoreConfig.from_env({"FLOWCACHE_CONFIG": str(path),
                                 "FLOWCACHE_USER": "dave"}).user == "dave"


def test_the_last_tier_must_be_durable(tmp_path):
    with pytest.raises(ValueError, match="durable"):
        StoreConfig.from_env({"FLOWCACHE_STORE": "memory"}).build()


def test_a_node_tier_in_the_chain(tmp_path):
    from flowcache.tiers.node import NodeTier

    config = StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+node://{tmp_path}/node?max_bytes=1MiB+{tmp_path}/d"})
    store = config.build()
    node = store.tiers[1]
    assert isinstance(node, NodeTier)
    assert node.max_bytes == 1 << 20
    assert str(node.root) == f"{tmp_path}/node"
    store.put("ab" * 32, b"x")
    assert node.exists(store.name_for("ab" * 32))


def test_huge_pages_setting_applies_to_the_process_when_a_store_is_built(session_dir):
    from flowcache import buffers

    try:
        config = StoreConfig.from_env({"FLOWCACHE_HUGE_PAGES": "on"})
        assert config.huge_pages is True
        config.build()
        assert buffers._huge_pages is True
        StoreConfig.from_env({}).build()  # off by default
        assert buffers._huge_pages is False
        with pytest.raises(ConfigError, match="FLOWCACHE_HUGE_PAGES"):
            StoreConfig.from_env({"FLOWCACHE_HUGE_PAGES": "sometimes"})
    finally:
        buffers.use_huge_pages(False)


# -- a typo is an error at configuration time (issue 14) --------------------------------------
@pytest.mark.parametrize(("spec", "says"), [
    ("memory+s3://", "names no valid bucket"),
    ("memory+gs://", "names no valid bucket"),
    ("memory+s3:///prefix", "names no valid bucket"),
    ("reddis://127.0.0.1:6379/0+/tmp/fc-x", "unknown tier scheme 'reddis'.*did you mean 'redis'"),
    ("memroy+/tmp/fc-x", "'memroy' is neither a tier.*did you mean 'memory'"),
    ("memory+redis://127.0.0.1:port/0+/tmp/fc-x", "port that is not a number"),
    ("memory+redis://127.0.0.1:6379/zero+/tmp/fc-x", "database 'zero' is not a number"),
    ("memory", "no durable tier"),
    ("memory+redis://127.0.0.1:6379/0", "no durable tier"),
    ("/tmp/fc-x+memory", "must come last"),
    ("/tmp/fc-x+/tmp/fc-y", "exactly one durable tier"),
    ("memory+redis://h:1/0?max_item_byte=1MiB+/tmp/fc-x",
     "no option 'max_item_byte'.*did you mean 'max_item_bytes'"),
    ("memory://?max_byte=1GiB+/tmp/fc-x", "no option 'max_byte'.*did you mean 'max_bytes'"),
    ("memory?max_bytes=lots+/tmp/fc-x", "max_bytes='lots' is not a size"),
    ("memory+/tmp/fc-x?fsinc=false", "no option 'fsinc'"),
    ("memory+redis://h:1/0?socket_timeout=forever+/tmp/fc-x", "is not a duration"),
])
def test_a_store_spec_that_cannot_work_is_refused_at_configuration_time(spec, says, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=says) as info:
        StoreConfig.from_env({"FLOWCACHE_STORE": spec})
    assert "FLOWCACHE_STORE" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder named "s3:" or "memroy" was made


def test_typos_in_variable_and_file_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"FLOWCACHE_SOTRE.*did you mean 'FLOWCACHE_STORE'\?"):
        StoreConfig.from_env({"FLOWCACHE_SOTRE": f"memory+{tmp_path}/d"})
    path = tmp_path / "config.toml"
    path.write_text(f'[flowcache]\nsotre = "memory+{tmp_path}/d"\n')
    with pytest.raises(ConfigError, match=r"sotre.*did you mean 'store'\?"):
        StoreConfig.from_env({"FLOWCACHE_CONFIG": str(path)})


def test_what_redis_py_takes_in_its_url_still_passes(tmp_path):
    config = StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+redis://127.0.0.1:6379/0?socket_keepalive=true"
                           f"&max_connections=8&socket_timeout=2s+{tmp_path}/d"})
    (_, redis_spec, _) = [TierSpec.parse(t) for t in config.tiers]
    assert redis_spec.options == {"max_connections": 8, "socket_timeout": 2.0}
    assert redis_spec.url == "redis://127.0.0.1:6379/0?socket_keepalive=true"


def test_the_command_reports_a_bad_configuration_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "flowcache.cli", "info"], cwd=tmp_path,
                            env={**os.environ, "FLOWCACHE_STORE": "memory+s3://"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "FLOWCACHE_STORE" in lines[0]
