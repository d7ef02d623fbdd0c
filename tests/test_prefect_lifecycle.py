"""Runs that end by cancellation or by a killed process leave no intermediates behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcache.cli import app
from flowcache.config import StoreConfig
from flowcache.identity import new_key
from tests.prefect_helpers import eventually, log_matching, run_logs

pytestmark = pytest.mark.usefixtures("prefect_api")
SCRIPT = Path(__file__).with_name("lifecycle_flows.py")


@pytest.fixture
def env(tmp_path, redis_url):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ,
            "FLOWCACHE_STORE": f"memory+{redis_url}+{tmp_path}/durable",
            "FLOWCACHE_USER": "dora", "FLOWCACHE_SIGNING_KEY": new_key().hex(),
            "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks"),
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            "PYTHONPATH": str(SCRIPT.parents[1])}


def lifetimes(store) -> list[str]:
    return sorted(h.lifetime["kind"] for _, h in store.headers())


def redis_names(store) -> set[str]:
    return {n for n in store.tiers[1].scan(f"{store.namespace}/")}


def test_gc_cleans_what_a_killed_flow_process_left(env):
    proc = subprocess.run([sys.executable, str(SCRIPT), "killed"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    store = StoreConfig.from_env(env).build()
    assert lifetimes(store) == ["flow", "flow", "flow", "keep"]  # no hook ran
    assert len(redis_names(store)) == 4
    result = CliRunner().invoke(app, ["gc"], env=env)
    assert result.exit_code == 0, result.output
    assert "collected 3 entries" in result.output
    assert "1 abandoned runs" in result.output
    assert lifetimes(store) == ["keep"]
    assert len(redis_names(store)) == 1


def test_a_cancelled_run_purges_its_intermediates(env):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    server = subprocess.Popen([sys.executable, str(SCRIPT), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with get_client(sync_client=True) as client:
            deployment = eventually(lambda: _deployment(client), timeout=120)
            assert deployment, "the served deployment did not register"
            run = client.create_flow_run_from_deployment(deployment.id)
            store = StoreConfig.from_env(env).build()
            assert eventually(lambda: lifetimes(store) == ["flow", "flow", "flow", "keep"],
                              timeout=120), lifetimes(store)
            client.set_flow_run_state(run.id, Cancelling(), force=True)
            final = eventually(lambda: _final(client, run.id), timeout=120)
        assert final is not None
        assert final.is_cancelled(), final
        assert eventually(lambda: lifetimes(store) == ["keep"], timeout=60), lifetimes(store)
        assert len(redis_names(store)) == 1
        # the runner's process runs the hook, after the run's process (and its counts) ended
        totals = log_matching(run.id, "flowcache:", "purged 3 intermediates")
        assert totals is not None, "\n".join(r.message for r in run_logs(run.id))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()


def _deployment(client):
    try:
        return client.read_deployment_by_name("flowcache-cancelled/cancel-me")
    except Exception:
        return None


def _final(client, run_id):
    state = client.read_flow_run(run_id).state
    return state if state is not None and state.is_final() else None
