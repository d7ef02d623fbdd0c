"""Real servers for the tests, each on a free loopback port: redis-server, moto (S3), the GCS
emulator, and a small HTTP proxy that counts requests and can make a bucket refuse writes.

Nothing here talks to anything but 127.0.0.1; the machine's standing services (Redis on 6379...)
are never touched.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout}s")


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class RedisServer:
    """A throwaway redis-server; ``kill()`` and ``start()`` simulate an outage."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"fc-redis-{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run the tests with `make test`, "
                               "which installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
             "--enable-debug-command", "local", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class MotoServer:
    """moto's S3 API in server mode (a real HTTP server, enforcing If-None-Match)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        self.proc = subprocess.Popen(
            [_venv_bin("moto_server"), "-H", HOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()


class GcsServer:
    """gcp-storage-emulator, in memory."""

    def __init__(self, default_bucket: str = "fc-default") -> None:
        self.port = free_port()
        self.default_bucket = default_bucket
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> GcsServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", HOST,
             "--port", str(self.port), "--in-memory", "--default-bucket", self.default_bucket],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()


class FaultProxy:
    """An HTTP proxy in front of an object-store emulator.

    Counts requests by method (and records paths), and while ``reject_writes`` is set, answers
    PUT/POST with 403 AccessDenied, the way a bucket policy or a read-only credential would.
    While ``frozen`` is set it accepts requests and never answers them: an endpoint that hangs.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.reject_writes = False
        self.reject_next = 0  # refuse this many more writes, then accept
        self.frozen = threading.Event()
        self._thawed = threading.Event()
        self.counts: Counter[str] = Counter()
        self.paths: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                body = self._read_body()
                with proxy._lock:
                    proxy.counts[self.command] += 1
                    proxy.paths.append((self.command, self.path))
                if proxy.frozen.is_set():
                    proxy._thawed.wait(600)  # hang: no answer until the test thaws us
                    self.close_connection = True
                    return
                refuse = False
                if self.command in ("PUT", "POST"):
                    with proxy._lock:
                        refuse = proxy.reject_writes or proxy.reject_next > 0
                        proxy.reject_next = max(0, proxy.reject_next - 1)
                if refuse:
                    payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied"
                               b"</Code><Message>writes refused by the test</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "connection", "expect")}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                length = str(len(data))
                for key, value in response.getheaders():
                    if key.lower() == "content-length" and self.command == "HEAD":
                        length = value  # a HEAD answer describes the object, not its body
                    elif key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _read_body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return None  # a client that hangs up early is not the test's business

        self.server = Server((HOST, self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def freeze(self) -> None:
        self._thawed.clear()
        self.frozen.set()

    def reset(self) -> None:
        self.frozen.clear()
        self._thawed.set()  # hung requests return (without an answer)
        with self._lock:
            self.counts.clear()
            self.paths.clear()
            self.reject_writes = False
            self.reject_next = 0
