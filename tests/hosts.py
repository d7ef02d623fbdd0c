"""Several "hosts" on one machine: a Dask scheduler and workers each in a network namespace of
their own, each worker host with its own node tier, sharing Redis and an S3 bucket (moto) that
listen on the bridge between them.

Why namespaces: the placement tests must show that a task ran *on the host* holding its entry,
and that bytes crossed between hosts through Redis or the bucket. Separate namespaces give each
host its own address and its own loopback, so "local" and "remote" mean what they do on a real
cluster. Layout (``netns`` mode, when this process is root and the kernel allows it)::

    root namespace: bridge fcb<pid>g<n> 10.231.<s>.1/24  (Redis, moto, the test's Client)
      |-- veth -- netns fch-<pid>-<n>-0  10.231.<s>.10   dask scheduler
      |-- veth -- netns fch-<pid>-<n>-1  10.231.<s>.11   dask worker(s), node tier h1/node
      '-- veth -- netns fch-<pid>-<n>-2  10.231.<s>.12   dask worker(s), node tier h2/node

The namespaces have no default route, so nothing in them can send a packet anywhere but the
bridge; the services bind the bridge address only. Names carry this process's pid (and a counter),
so parallel runs never collide, and a run that died without cleaning up is swept by the next one
(its pid is gone). ``loopback`` mode (not root, no ``ip``, or a kernel that refuses namespaces; or
forced with ``FLOWCACHE_TEST_HOSTS=loopback``) runs the same processes on loopback addresses of
their own (127.0.1.<10+i>, services on 127.0.0.1), each host in its own process group with its own
node-tier directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netns import Bridge, command, netns_refusal

ROOT = Path(__file__).resolve().parents[1]
MODES = ("netns", "loopback")
#: force a mode (``loopback`` exercises the fallback on a machine that has namespaces)
MODE_VARIABLE = "FLOWCACHE_TEST_HOSTS"


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def wait_for_port(host: str, port: int, *, timeout: float = 120.0,
                  proc: subprocess.Popen | None = None, netns: str | None = None) -> None:
    """Wait until something listens on ``host:port`` (seen from the root namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {host}:{port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def listening_sockets(pids: set[int], netns: str | None = None) -> list[str]:
    """``address:port`` of the TCP sockets ``pids`` listen on (in ``netns``, if given)."""
    argv = ["ss", "-ltnpH"]
    done = command(*(["ip", "netns", "exec", netns, *argv] if netns else argv))
    found = []
    for line in done.stdout.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(line.split()[3])
    return found


@dataclass(eq=False)  # a host is itself: compared and hashed by identity
class Host:
    """One "machine": an address, maybe a namespace, a node tier, the processes it runs."""

    name: str
    address: str
    directory: Path
    netns: str | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def node_dir(self) -> Path:
        return self.directory / "node"

    def argv(self, *command: str) -> list[str]:
        """``command`` as run on this host (inside its namespace, if it has one)."""
        return ["ip", "netns", "exec", self.netns, *command] if self.netns else list(command)

    def spawn(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
        """Start ``command`` on this host in a process group of its own (logs in its dir)."""
        with open(self.directory / f"{log}.log", "ab") as out:
            proc = subprocess.Popen(self.argv(*command), env=env, cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self) -> None:
        """End every process this host runs (their whole process groups), abruptly."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
        self.procs.clear()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        self.kill()

    def listening(self) -> list[str]:
        """``address:port`` of every TCP socket this host's processes listen on."""
        return listening_sockets({proc.pid for proc in self.procs}, self.netns)

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class Hosts:
    """A scheduler host and ``workers`` worker hosts (see the module docstring).

    ::

        with Hosts(workers=2) as hosts:
            client = hosts.client()
            config = hosts.store_config()     # the same store as the workers, for the test
    """

    def __init__(self, workers: int = 2, *, processes: int = 1, threads: int = 2,
                 mode: str | None = None, user: str = "hostuser",
                 node_bytes: str = "1GiB", ledger: str = "off") -> None:
        wanted = mode or os.environ.get(MODE_VARIABLE) or "auto"
        if wanted not in (*MODES, "auto"):
            raise ValueError(f"{MODE_VARIABLE}={wanted!r}: use netns, loopback or auto")
        self.fallback_reason: str | None = None
        if wanted in ("auto", "netns"):
            refusal = netns_refusal()
            if refusal is not None and wanted == "netns":
                raise RuntimeError(f"network namespaces are not available: {refusal}")
            self.fallback_reason = refusal
            wanted = "netns" if refusal is None else "loopback"
        else:
            self.fallback_reason = f"{MODE_VARIABLE}=loopback"
        self.mode = wanted
        self.n_workers = workers
        self.processes = processes
        self.threads = threads
        self.user = user
        self.signing_key = os.urandom(32).hex()
        self.node_bytes = node_bytes
        self.ledger = ledger
        self.directory = Path(tempfile.mkdtemp(prefix="fc-hosts-"))
        self.bridge: Bridge | None = None
        self.hosts: list[Host] = []
        self.service_address = "127.0.0.1"
        self.bucket = f"fc-hosts-{uuid.uuid4().hex[:8]}"
        self._services: list[subprocess.Popen] = []
        self._clients: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Hosts:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Hosts:
        if self.mode == "netns":
            self.bridge = Bridge().open()
            self.service_address = self.bridge.address
        for index in range(self.n_workers + 1):
            directory = self.directory / f"h{index}"
            directory.mkdir()
            if self.bridge is not None:
                netns, address = self.bridge.add_host(index)
            else:
                netns, address = None, f"127.0.1.{10 + index}"
            self.hosts.append(Host(f"h{index}", address, directory, netns))
        self._start_services()
        self._start_scheduler()
        for host in self.worker_hosts:
            self.start_workers(host)
        self.wait_for_workers(self.n_workers * self.processes)
        return self

    def close(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close(timeout=30)
        for host in reversed(self.hosts):
            host.stop()
        for proc in self._services:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._services.clear()
        if self.bridge is not None:
            self.bridge.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- services on the bridge -----------------------------------------------------------------
    def _start_services(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it")
        self.redis_port = free_port(self.service_address)
        self._services.append(subprocess.Popen(
            [redis, "--port", str(self.redis_port), "--bind", self.service_address,
             "--save", "", "--appendonly", "no", "--protected-mode", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for_port(self.service_address, self.redis_port, proc=self._services[-1])
        self.moto_port = free_port(self.service_address)
        self._services.append(subprocess.Popen(
            [_venv_bin("moto_server"), "-H", self.service_address, "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=self._base_env()))
        wait_for_port(self.service_address, self.moto_port, proc=self._services[-1])
        import boto3

        boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing",
                     ).create_bucket(Bucket=self.bucket)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.service_address}:{self.redis_port}/0"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.service_address}:{self.moto_port}"

    def store_env(self, lock_dir: Path) -> dict[str, str]:
        """The ``FLOWCACHE_*`` settings every host uses: one user, key, Redis and bucket."""
        options = {"s3": {"endpoint_url": self.s3_endpoint, "key": "testing",
                          "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}}
        return {"FLOWCACHE_STORE": f"memory+{self.redis_url}+s3://{self.bucket}/cache",
                "FLOWCACHE_STORAGE_OPTIONS": json.dumps(options),
                "FLOWCACHE_USER": self.user, "FLOWCACHE_SIGNING_KEY": self.signing_key,
                "FLOWCACHE_LOCK_DIR": str(lock_dir), "FLOWCACHE_LEDGER": self.ledger}

    def store_config(self) -> Any:
        """The workers' store configuration, for the test process (the client's side)."""
        from flowcache.config import StoreConfig

        return StoreConfig.from_env(self.store_env(self.directory / "client-locks"))

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "FLOWCACHE_"))}
        env.update({"PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                    "PYTHONUNBUFFERED": "1"})
        return env

    def host_env(self, host: Host) -> dict[str, str]:
        env = self._base_env()
        env.update(self.store_env(host.directory / "locks"))
        env.update({"DASK_FLOWCACHE__NODE_DIR": str(host.node_dir),
                    "DASK_FLOWCACHE__NODE_BYTES": self.node_bytes})
        return env

    # -- Dask -------------------------------------------------------------------------------------
    @property
    def scheduler_host(self) -> Host:
        return self.hosts[0]

    @property
    def worker_hosts(self) -> list[Host]:
        return self.hosts[1:]

    @property
    def scheduler_file(self) -> Path:
        return self.directory / "scheduler.json"

    def _start_scheduler(self) -> None:
        host = self.scheduler_host
        proc = host.spawn([_venv_bin("dask"), "scheduler", "--host", host.address,
                           "--port", "0", "--dashboard-address", f"{host.address}:0",
                           "--scheduler-file",
                           str(self.scheduler_file), "--preload", "dask_cache.preload"],
                          self.host_env(host), "scheduler")
        deadline = time.monotonic() + 180
        while not self.scheduler_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler did not start:\n{host.log('scheduler')}")
            time.sleep(0.1)
        while True:
            with contextlib.suppress(ValueError):
                self.scheduler_address = json.loads(self.scheduler_file.read_text())["address"]
                break
            time.sleep(0.1)

    def start_workers(self, host: Host) -> None:
        """Start this host's worker processes (``processes`` of them, no nanny)."""
        for index in range(self.processes):
            host.spawn([_venv_bin("dask"), "worker", "--scheduler-file",
                        str(self.scheduler_file), "--host", host.address, "--no-nanny",
                        "--dashboard-address", f"{host.address}:0",
                        "--nthreads", str(self.threads),
                        "--name", f"{host.name}-{index}",
                        "--local-directory", str(host.directory / "dask"),
                        "--preload", "dask_cache.preload"],
                       self.host_env(host), f"worker-{index}")

    def client(self) -> Any:
        """A Client in this (root) namespace, connected to the scheduler host."""
        from distributed import Client

        client = Client(self.scheduler_address, timeout=120)
        self._clients.append(client)
        return client

    def wait_for_workers(self, count: int, timeout: float = 240.0) -> None:
        client = self.client()
        try:
            client.wait_for_workers(count, timeout=timeout)
        except TimeoutError as exc:
            logs = "\n".join(f"{h.name}: {h.log('worker-0')}" for h in self.worker_hosts)
            raise RuntimeError(f"{count} workers did not join:\n{logs}") from exc

    def host_of(self, worker_address: str) -> Host:
        """The host a worker (``tcp://ip:port``) runs on."""
        ip = worker_address.split("://")[-1].rsplit(":", 1)[0]
        return next(host for host in self.hosts if host.address == ip)

    def workers_on(self, client: Any, host: Host) -> list[str]:
        return sorted(address for address in client.scheduler_info(n_workers=-1)["workers"]
                      if self.host_of(address) is host)
