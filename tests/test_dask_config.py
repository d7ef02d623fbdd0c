"""dask_cache fits into Dask's configuration: its own ``flowcache:`` key, no refresh of the
user's config, ``DASK_FLOWCACHE__*`` variables, and a preload for command-line servers.

Importing dask_cache once broke plain Dask (its defaults sat under Dask's own ``cache`` key, the
local scheduler's result cache) and wiped ``dask.config.set`` values; these tests run plain Dask
after the import, in this process and in fresh ones started the way a user starts Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import pytest
from dask import delayed

import dask_cache
from dask_cache.settings import DaskCacheSettings
from flowcache.config import StoreConfig
from flowcache.errors import ConfigError
from flowcache.identity import new_key
from tests import dask_jobs as jobs

ROOT = Path(__file__).resolve().parents[1]


def until(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``check`` until it returns something truthy (or the generous deadline passes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Dask or flowcache settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASK_", "FLOWCACHE_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def fresh_python(code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a new interpreter (a user's fresh process); its last line is JSON."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=clean_env(**env), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- plain Dask keeps working after the import --------------------------------------------------
def test_plain_delayed_computes_twice_after_the_import():
    x = delayed(jobs.total)([1, 2, 3])
    assert x.compute() == 6
    assert delayed(jobs.add)(x, 4).compute() == 10  # x's key was computed before
    assert "cache" not in dask.config.config  # Dask's local result cache is not ours


def test_reading_parquet_twice_after_the_import(tmp_path):
    import dask.dataframe as dd
    import pandas as pd

    path = str(tmp_path / "frame.parquet")
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_parquet(path)
    assert dd.read_parquet(path).compute()["a"].tolist() == [1, 2, 3]
    assert dd.read_parquet(path)["a"].sum().compute() == 6
    # both share the sum's keys with the computation before: a result cache left in Dask's
    # config made the local scheduler skip them and fail on their dependents (KeyError)
    assert dd.read_parquet(path)["a"].mean().compute() == 2
    assert (dd.read_parquet(path)["a"].sum() + 1).compute() == 7
    pd.DataFrame({"a": [10, 20, 30, 40], "b": list("pqrs")}).to_parquet(path)
    assert dd.read_parquet(path)["a"].sum().compute() == 100  # new data, not a stale result


def test_a_process_cluster_starts_after_the_import_and_reads_our_settings():
    import dask.array as da
    from distributed import Client, LocalCluster

    # tuple keys computed by the local scheduler once stayed in Dask's config, which is copied
    # to worker processes: their nannies failed to start
    assert (da.ones(10, chunks=5) * 2).sum().compute() == 20
    with dask.config.set({"flowcache.node-bytes": "3GiB", "flowcache.files": False}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        assert client.submit(jobs.add, 2, 3).result() == 5
        (settings,) = client.run(jobs.worker_settings).values()
    json.dumps(dask.config.get("flowcache"))  # plain values: Dask copies them as text
    assert settings["node_bytes"] == 3 << 30  # dask.config.set reached the worker process
    assert settings["files"] is False


# -- the user's configuration survives; the environment is read ----------------------------------
def test_values_set_before_the_import_survive_it():
    got = fresh_python("""
        import json
        import dask
        dask.config.set({"array.chunk-size": "7MiB", "flowcache.node-bytes": "5GiB"})
        import dask_cache
        from dask_cache.settings import DaskCacheSettings
        settings = DaskCacheSettings.current()
        print(json.dumps({"chunk": dask.config.get("array.chunk-size"),
                          "node_bytes": settings.node_bytes,
                          "bandwidth": dask.config.get("flowcache.load-bandwidth"),
                          "cache": dask.config.get("cache", None)}))
    """)
    assert got == {"chunk": "7MiB", "node_bytes": 5 << 30, "bandwidth": "500MB",
                   "cache": None}


def test_dask_flowcache_environment_variables(tmp_path):
    got = fresh_python("""
        import json
        import dask
        from dask import delayed
        import dask_cache
        from dask_cache.settings import DaskCacheSettings
        from tests import dask_jobs as jobs
        x = delayed(jobs.total)([1, 2])
        first, second = x.compute(), delayed(jobs.add)(x, 1).compute()
        s = DaskCacheSettings.current()
        print(json.dumps({"results": [first, second], "node_bytes": s.node_bytes,
                          "node_dir": s.node_dir, "files": s.files,
                          "min_compute_seconds": s.min_compute_seconds}))
    """, DASK_FLOWCACHE__NODE_BYTES="3GiB", DASK_FLOWCACHE__NODE_DIR=str(tmp_path / "node"),
        DASK_FLOWCACHE__FILES="false", DASK_FLOWCACHE__MIN_COMPUTE_SECONDS="50ms")
    assert got == {"results": [3, 4], "node_bytes": 3 << 30, "node_dir": str(tmp_path / "node"),
                   "files": False, "min_compute_seconds": 0.05}


def test_the_old_variable_is_refused_naming_the_new_one(tmp_path):
    got = fresh_python("""
        import json
        from dask import delayed
        import dask_cache
        from tests import dask_jobs as jobs
        try:
            dask_cache.compute(delayed(jobs.add)(1, 2), scheduler="sync")
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            print(json.dumps({"error": None}))
    """, DASK_CACHE__NODE_BYTES="3GiB", FLOWCACHE_STORE=f"memory+{tmp_path}/durable",
        FLOWCACHE_USER="olga", FLOWCACHE_SIGNING_KEY=new_key().hex(),
        FLOWCACHE_LOCK_DIR=str(tmp_path / "locks"), FLOWCACHE_LEDGER="off")
    assert got["error"] == "ConfigError", got
    assert "DASK_FLOWCACHE__NODE_BYTES" in got["message"]


@pytest.mark.parametrize(("section", "named"), [
    ({"node-byte": "1GiB"}, "did you mean 'node-bytes'"),
    ({"node_bytes": "lots"}, "DASK_FLOWCACHE__NODE_BYTES"),
    ({"node-bytes": 0}, "more than 0 bytes"),
    ({"files": "maybe"}, "flowcache.files"),
    ({"load-latency": "soon"}, "flowcache.load-latency"),
    ({"node-dir": ""}, "flowcache.node-dir"),
])
def test_a_bad_setting_is_a_config_error_naming_it(section, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        DaskCacheSettings.current({"flowcache": section})


def test_settings_accept_either_spelling_and_fill_in_defaults():
    settings = DaskCacheSettings.current({"flowcache": {"node_bytes": 1024,
                                                         "load-latency": "5ms"}})
    assert settings.node_bytes == 1024
    assert settings.load_latency == pytest.approx(0.005)
    assert settings.load_bandwidth == 500_000_000  # the shipped default


# -- command-line servers: the preload module ------------------------------------------------
def test_dask_worker_and_scheduler_started_with_the_preload(tmp_path):
    """``dask scheduler`` and ``dask worker`` processes, each with ``--preload
    dask_cache.preload``: the worker joins with the store, node tier and metrics installed
    before its first task, and caches into the store its environment names."""
    from distributed import Client

    env = {"FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "preload",
           "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCK_DIR": str(tmp_path / "l"),
           "FLOWCACHE_LEDGER": "off",
           "DASK_FLOWCACHE__NODE_DIR": str(tmp_path / "node"),
           "DASK_FLOWCACHE__NODE_BYTES": "64MiB"}
    scheduler_file = tmp_path / "scheduler.json"
    processes: list[subprocess.Popen] = []

    def start(*args: str, log: str) -> subprocess.Popen:
        with open(tmp_path / f"{log}.log", "w") as handle:  # the child keeps its own copy
            process = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=ROOT,
                                       env=clean_env(**env), stdout=handle,
                                       stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    def log_of(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()[-4000:]

    try:
        scheduler = start("scheduler", "--host", "127.0.0.1", "--port", "0",
                          "--no-dashboard", "--scheduler-file", str(scheduler_file),
                          "--preload", "dask_cache.preload", log="scheduler")
        assert until(lambda: scheduler_file.exists() or scheduler.poll() is not None), \
            log_of("scheduler")
        assert scheduler.poll() is None, log_of("scheduler")
        address = json.loads(scheduler_file.read_text())["address"]
        worker = start("worker", address, "--nthreads", "1", "--nworkers", "1",
                       "--no-dashboard", "--preload", "dask_cache.preload", log="worker")
        with Client(address, timeout=120) as client:
            joined = until(lambda: client.scheduler_info()["workers"] or worker.poll(), 180)
            assert worker.poll() is None, log_of("worker")
            assert joined, log_of("worker")
            assert "flowcache" in next(iter(client.run(jobs.worker_plugins).values()))
            assert "flowcache-scheduler" in client.run_on_scheduler(jobs.scheduler_plugins)
            first = client.submit(jobs.cached_square, 7, pure=False).result()
            again = client.submit(jobs.cached_square, 7, pure=False).result()
            assert again == first  # the second call was a hit
            (metrics,) = client.run(dask_cache.worker_metrics).values()

            def shown() -> bool:  # the plugin's custom metrics reach the scheduler
                (info,) = client.scheduler_info()["workers"].values()
                return info["metrics"].get("flowcache-memory-hits", 0) >= 1

            assert until(shown), client.scheduler_info()["workers"]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(120)
    assert metrics["tiers"]["node"]["writes"] == 1  # the node tier of DASK_FLOWCACHE__NODE_DIR
    assert any((tmp_path / "node").rglob("*")), "nothing reached the node tier directory"
    store = StoreConfig.from_env(env).build()
    (name,) = list(store.scan())  # the durable copy, in the environment's store, signed
    assert store.get(store.key_of(name)) == first
