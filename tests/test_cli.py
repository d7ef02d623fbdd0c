"""The operator's command: one-line errors and exit codes, --json, --dry-run, confirmations,
limits, progress, and ``flowcache doctor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flowcache.cli import app
from flowcache.config import StoreConfig
from flowcache.identity import new_key

runner = CliRunner()


@pytest.fixture
def env(tmp_path):
    return {"FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "olga",
            "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCK_DIR": str(tmp_path / "l"),
            "FLOWCACHE_LEDGER": str(tmp_path / "ledger.sqlite3")}


def fill(env, count: int, size: int = 2000) -> list[str]:
    store = StoreConfig.from_env(env).build()
    keys = [f"{i:064x}" for i in range(count)]
    for key in keys:
        store.put(key, os.urandom(size))
    return keys


def flowcache(*args: str, env: dict, extra: dict | None = None) -> subprocess.CompletedProcess:
    """The installed command, in a process of its own (what an operator's shell runs)."""
    return subprocess.run([sys.executable, "-m", "flowcache", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env, **(extra or {})})


def test_errors_are_one_line_on_stderr_with_an_exit_code_that_says_what_kind(env, tmp_path):
    bad_config = flowcache("ls", env={**env, "FLOWCACHE_STORE": "memory+reddis://h:1/0"})
    assert bad_config.returncode == 2
    assert bad_config.stderr.strip().count("\n") == 0
    assert bad_config.stderr.startswith("flowcache: error: FLOWCACHE_STORE: unknown tier scheme")
    assert "Traceback" not in bad_config.stderr
    usage = flowcache("clear", env=env)
    assert usage.returncode == 2
    assert "say what to clear" in usage.stderr
    runtime = flowcache("runs", str(tmp_path), "--repair", env=env)
    assert runtime.returncode == 2  # no manifest: a bad argument
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".flowcache-manifest.json").write_text("{")
    (tmp_path / "d" / ".flowcache-manifest.json.bak").write_text("[")
    broken = flowcache("runs", str(tmp_path / "d"), env=env)
    assert broken.returncode == 1  # a failure at run time: both copies damaged
    assert "Traceback" not in broken.stderr
    debug = flowcache("--debug", "runs", str(tmp_path / "d"), env=env)
    assert "Traceback" in debug.stderr  # --debug asks for it
    assert debug.returncode == 1


def test_version_and_module_entry_points(env):
    from flowcache import __version__

    result = flowcache("--version", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == f"flowcache {__version__}"
    assert runner.invoke(app, ["--version"]).output.strip() == f"flowcache {__version__}"


def test_every_data_command_speaks_json(env, tmp_path):
    fill(env, 3)
    for command in (["info"], ["doctor"], ["ls"], ["gc", "--dry-run"],
                    ["clear", "--older-than", "1h", "--dry-run"],
                    ["billing", "--since", "1h"], ["ledger", "reconcile"],
                    ["carbon", "forecast", "DE", "--at", "2022-06-01T12:00Z", "--hours", "3"],
                    ["carbon", "plan", "--duration", "1h", "--regions", "DE,FR",
                     "--max-delay", "6h", "--at", "2022-06-01T12:00Z"]):
        result = runner.invoke(app, [*command, "--json"], env=env)
        assert result.exit_code == 0, (command, result.output)
        json.loads(result.stdout)  # one JSON document, nothing else on stdout


def test_ls_stops_after_its_limit_and_prints_human_sizes(s3, tmp_path):
    bucket = s3.new_bucket()
    env = {"FLOWCACHE_STORE": f"s3://{bucket}/cache", "FLOWCACHE_USER": "olga",
           "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LEDGER": "off",
           "FLOWCACHE_STORAGE_OPTIONS": json.dumps({"s3": s3.options(proxied=True)})}
    fill(env, 30, size=3000)
    s3.proxy.reset()
    result = runner.invoke(app, ["ls", "--limit", "5", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 5
    header_reads = s3.proxy.counts["GET"]
    assert header_reads < 15, header_reads  # five headers and a listing, not thirty headers
    table = runner.invoke(app, ["ls", "--limit", "2"], env=env)
    assert "2.9 KiB" in table.output


def test_dry_runs_remove_nothing_and_clear_all_asks(env):
    keys = fill(env, 4)
    dry = runner.invoke(app, ["clear", "--all", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["entries"] == 4
    store = StoreConfig.from_env(env).build()
    assert all(store.exists(key) for key in keys)
    gc = runner.invoke(app, ["gc", "--dry-run", "--json"], env=env)
    assert json.loads(gc.stdout)["store"]["dry_run"] is True
    unasked = runner.invoke(app, ["clear", "--all"], env=env)  # stdin is no terminal here
    assert unasked.exit_code == 2
    assert "pass --yes" in unasked.output
    assert all(store.exists(key) for key in keys)
    done = runner.invoke(app, ["clear", "--all", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert not any(store.exists(key) for key in keys)


def test_long_work_shows_progress_on_a_terminal(env):
    fill(env, 3)
    result = flowcache("gc", env=env, extra={"FORCE_COLOR": "1", "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    assert "collecting" in result.stderr  # the bar, on stderr, where it does not mix with data


def test_a_plan_without_carbon_data_exits_non_zero(env):
    result = runner.invoke(app, ["carbon", "plan", "--duration", "1h", "--regions", "XX-NOPE",
                                 "--at", "2022-06-01T12:00Z"], env=env)
    assert result.exit_code == 1
    assert "no carbon data" in result.output


def test_doctor_passes_a_working_setup_and_warns_about_an_open_redis(env, redis_url,
                                                                       tmp_path):
    good = runner.invoke(app, ["doctor", "--json"], env=env)
    assert good.exit_code == 0, good.output
    checks = {check["name"]: check for check in json.loads(good.stdout)}
    assert checks["signed round trip"]["status"] == "ok"
    assert checks["user"]["detail"] == "olga"
    assert {"ledger", "locks", "signing key"} <= checks.keys()
    with_redis = {**env, "FLOWCACHE_STORE": f"memory+{redis_url}+{tmp_path}/durable"}
    warned = runner.invoke(app, ["doctor", "--json"], env=with_redis)
    assert warned.exit_code == 0, warned.output
    redis_check = next(c for c in json.loads(warned.stdout) if "(redis)" in c["name"])
    assert redis_check["status"] == "warn"
    assert "without a password" in redis_check["detail"]


def test_doctor_finds_a_missing_bucket(s3):
    env = {"FLOWCACHE_STORE": "memory+s3://no-such-bucket-for-doctor/cache",
           "FLOWCACHE_USER": "olga", "FLOWCACHE_SIGNING_KEY": new_key().hex(),
           "FLOWCACHE_LEDGER": "off", "FLOWCACHE_STORAGE_OPTIONS": json.dumps(
               {"s3": s3.options()})}
    result = runner.invoke(app, ["doctor"], env=env)
    assert result.exit_code == 1
    assert "bucket 'no-such-bucket-for-doctor' does not exist" in result.output
    assert "check(s) failed" in result.output
