"""Benchmark: flowcache's cache() option against Prefect's native INPUTS cache, in one run.

Two workloads, each run cold once and then warm ``--repeats`` times (median reported):

* a flow of 200 small cached tasks (``.map`` over 200 integers);
* a flow with one task returning 100 MB of bytes.

Variants: Prefect native (``cache_policy=INPUTS``, results persisted to Prefect's local result
storage), flowcache with its embedded default (memory + local directory: warm hits come from
memory), and flowcache with only the local directory (warm hits read and verify the frame from
disk, as a fresh process would). Prefect runs on its temporary API under a throwaway
PREFECT_HOME.

A third workload, a large warm flow (``--large 2000`` cached tasks, ``.map``), runs against a
Prefect server on PostgreSQL that the benchmark starts itself (``initdb`` in a temporary
directory, a free port, as ``nobody`` when run as root: postgres refuses root); Prefect's
temporary SQLite API fails a flow this size here (503, "database is locked"). Native caching
(every hit is a Cached task run) against ``cache(hits="table")`` (hits answered before a task
run exists, listed in one artifact), cold once and warm ``--large-repeats`` times, whole flow
runs. ``--large 0`` skips it; ``--only-large`` runs only it.

Prints tables; the last line is one JSON object.

    .venv/bin/python bench/prefect_flow.py [--repeats 5] [--tasks 200] [--mb 100]
        [--large 2000] [--large-repeats 3] [--only-large]
"""

from __future__ import annotations

from harness import arguments, emit, median, timed

# isort: split
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS

from flowcache.identity import Identity, new_key
from flowcache.store import TieredStore
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache import cache, cache_hooks


def small_body(i: int) -> int:
    return i * 2


def big_body(mb: int) -> bytes:
    return bytes(range(256)) * (mb * 4096)


def make_flows(store: TieredStore | None, tasks: int, mb: int):
    if store is None:
        small = task(small_body, cache_policy=INPUTS, persist_result=True, name="small")
        big = task(big_body, cache_policy=INPUTS, persist_result=True, name="big")
    else:
        small = cache(keep=True, store=store)(task(small_body, name="small"))
        big = cache(keep=True, store=store)(task(big_body, name="big"))

    @flow(name="bench-small")
    def many() -> float:
        start = time.perf_counter()
        assert sum(f.result() for f in small.map(range(tasks))) == tasks * (tasks - 1)
        return time.perf_counter() - start

    @flow(name="bench-big")
    def one_big() -> float:
        start = time.perf_counter()
        assert len(big(mb)) == mb << 20
        return time.perf_counter() - start

    return many, one_big


def cold_and_warm(fn, repeats: int) -> dict[str, float]:
    """Cold and median-warm times: of the tasks inside the flow, and of the whole flow run.

    The whole run includes Prefect's fixed per-flow costs (API calls, and up to 1 s waiting
    for its heartbeat thread at exit), the same for every variant.
    """
    cold_flow, cold_tasks = timed(fn)
    runs = [timed(fn) for _ in range(repeats)]
    return {"cold_tasks_s": cold_tasks, "cold_flow_s": cold_flow,
            "warm_tasks_s": median(tasks for _, tasks in runs),
            "warm_flow_s": median(flow_s for flow_s, _ in runs)}


# -- the large warm flow, on a Prefect server backed by PostgreSQL ---------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(check, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                         "install it or run with --large 0")
    return found[-1].parent


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server; yields its SQLAlchemy URL for Prefect."""
    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="flowcache-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(root / "data"), "-U", "prefect",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    server = subprocess.Popen(
        [*as_user, str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
         "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def accepting() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        _wait_until(accepting, "PostgreSQL")
        time.sleep(1.0)  # the port opens a moment before it accepts logins
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres"
    finally:  # pg_ctl waits until the server is down (runuser does not pass signals on)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "stop", "-D", str(root / "data"),
                        "-m", "fast", "-w"], capture_output=True, timeout=120)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def prefect_server(database_url: str) -> Iterator[str]:
    """``prefect server start`` on ``database_url``; yields its API URL."""
    port = _free_port()
    home = tempfile.mkdtemp(prefix="flowcache-bench-prefect-pg-")
    env = {**os.environ, "PREFECT_HOME": home,
           "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    log = open(Path(home) / "server.log", "wb")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if server.poll() is not None:
            raise RuntimeError("the Prefect server exited: " + (Path(home) / "server.log")
                               .read_text(errors="replace")[-2000:])
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
        return False

    try:
        _wait_until(healthy, "the Prefect server", timeout=300)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def large_flow(store: TieredStore | None, tasks: int):
    """A flow mapping ``tasks`` cached calls: native caching, or cache(hits="table")."""
    if store is None:
        cell = task(small_body, cache_policy=INPUTS, persist_result=True, name="cell")
        hooks: dict = {}
    else:
        cell = cache(keep=True, store=store, hits="table")(task(small_body, name="cell"))
        hooks = cache_hooks()

    @flow(name="bench-large-native" if store is None else "bench-large-flowcache", **hooks)
    def many() -> int:
        return sum(f.result() for f in cell.map(range(tasks)))

    return many


def run_large(tasks: int, repeats: int, store: TieredStore) -> dict[str, float]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    figures: dict[str, float] = {}
    with postgres() as database_url, prefect_server(database_url) as api_url, \
            temporary_settings({PREFECT_API_URL: api_url}):
        for name, variant in (("native", None), ("flowcache_table", store)):
            many = large_flow(variant, tasks)
            cold, total = timed(many)
            assert total == tasks * (tasks - 1)
            warm = median(timed(many)[0] for _ in range(repeats))
            figures[f"large_{name}_cold_flow_s"] = round(cold, 3)
            figures[f"large_{name}_warm_flow_s"] = round(warm, 3)
    figures["large_warm_speedup_vs_native"] = round(
        figures["large_native_warm_flow_s"] / figures["large_flowcache_table_warm_flow_s"], 1)
    print(f"{tasks} cached tasks on a Prefect server with PostgreSQL; whole flow runs, seconds; "
          f"warm = median of {repeats}")
    print(f"{'variant':<24} {'cold':>9} {'warm':>9}")
    for name in ("native", "flowcache_table"):
        print(f"{name:<24} {figures[f'large_{name}_cold_flow_s']:9.2f} "
              f"{figures[f'large_{name}_warm_flow_s']:9.2f}")
    print(f"warm speed-up vs native: {figures['large_warm_speedup_vs_native']}x (goal >= 5x)\n")
    return figures


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000,
                        help="tasks in the large warm flow on PostgreSQL (0: skip it)")
    parser.add_argument("--large-repeats", type=int, default=3)
    parser.add_argument("--only-large", action="store_true")
    args = parser.parse_args()
    identity = Identity("bench", new_key())
    workdir = Path(tempfile.mkdtemp(prefix="flowcache-bench-store-"))
    large: dict[str, float] = {}
    if args.large:
        large = run_large(args.large, args.large_repeats, TieredStore(
            [MemoryTier(max_bytes=1 << 30), ObjectTier(str(workdir / "large"))],
            identity=identity))
        if args.only_large:
            emit({"large_tasks": args.large, "large_repeats": args.large_repeats, **large})
            return
    variants = {
        "prefect_native": None,
        "flowcache_memory_local": TieredStore(
            [MemoryTier(max_bytes=1 << 30), ObjectTier(str(workdir / "a"))], identity=identity),
        "flowcache_local_only": TieredStore([ObjectTier(str(workdir / "b"))], identity=identity),
    }
    results: dict[str, dict[str, float]] = {}
    for name, store in variants.items():
        many, one_big = make_flows(store, args.tasks, args.mb)
        small = cold_and_warm(many, args.repeats)
        big = cold_and_warm(one_big, args.repeats)
        results[name] = {**{f"small_{k}": v for k, v in small.items()},
                         **{f"big_{k}": v for k, v in big.items()}}
    native = results["prefect_native"]
    print(f"{args.tasks} small tasks / one {args.mb} MB task; seconds; warm = median of "
          f"{args.repeats}; 'tasks' = inside the flow, 'flow' = whole flow run")
    print(f"{'variant':<24} {'small cold':>10} {'small warm':>10} {'small warm':>10} "
          f"{'big cold':>9} {'big warm':>9} {'big warm':>9} {'warm hit':>9}")
    print(f"{'':<24} {'flow':>10} {'tasks':>10} {'flow':>10} {'flow':>9} {'task':>9} "
          f"{'flow':>9} {'MB/s':>9}")
    for name, row in results.items():
        print(f"{name:<24} {row['small_cold_flow_s']:10.3f} {row['small_warm_tasks_s']:10.3f} "
              f"{row['small_warm_flow_s']:10.3f} {row['big_cold_flow_s']:9.3f} "
              f"{row['big_warm_tasks_s']:9.4f} {row['big_warm_flow_s']:9.3f} "
              f"{args.mb * 1.048576 / row['big_warm_tasks_s']:9.0f}")
    figures: dict[str, float] = {"tasks": args.tasks, "mb": args.mb, "repeats": args.repeats,
                                 "large_tasks": args.large, **large}
    for name, row in results.items():
        figures.update({f"{name}_{k}": round(v, 4) for k, v in row.items()})
        if name != "prefect_native":
            for scope in ("tasks", "flow"):
                figures[f"{name}_small_warm_{scope}_time_vs_native"] = round(
                    row[f"small_warm_{scope}_s"] / native[f"small_warm_{scope}_s"], 3)
            figures[f"{name}_big_warm_hit_speedup_vs_native"] = round(
                native["big_warm_tasks_s"] / row["big_warm_tasks_s"], 1)
    print()
    for name in ("flowcache_memory_local", "flowcache_local_only"):
        print(f"{name}: {args.tasks}-task warm time / native = "
              f"{figures[f'{name}_small_warm_tasks_time_vs_native']} inside the flow, "
              f"{figures[f'{name}_small_warm_flow_time_vs_native']} whole flow (goal <= 1.0); "
              f"{args.mb} MB warm hit speed-up vs native = "
              f"{figures[f'{name}_big_warm_hit_speedup_vs_native']}x (goal >= 10x)")
    emit(figures)


if __name__ == "__main__":
    main()
