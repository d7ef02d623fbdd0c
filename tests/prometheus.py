"""A real Prometheus server for the tests: scrapes targets on loopback every second, keeps its
data in a directory of its own, and answers queries through its HTTP API.

Debian's ``prometheus`` package provides the binary (``make servers`` installs it). Its own
service, if the package started one, listens on 9090; this server takes a free port and never
talks to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import HOST, free_port, wait_for_port


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; run the tests with `make test`, which "
                           "installs Debian's prometheus package")
    return path


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (host:port) every second, with ``rules`` loaded."""

    def __init__(self, workdir: Path, targets: list[str], *, rules: list[Path] = ()) -> None:
        self.workdir = workdir
        self.targets = targets
        self.rules = [str(path) for path in rules]
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                             "evaluation_interval": "1s"},
                  "rule_files": self.rules,
                  "scrape_configs": [{"job_name": "flowcache",
                                      "static_configs": [{"targets": self.targets}]}]}
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary("prometheus"), f"--config.file={path}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address={HOST}:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_for_port(self.port, timeout=120, proc=self.proc)
        self.wait_for(lambda: self._get("/-/ready", raw=True) is not None, "ready")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def query(self, expr: str) -> dict[frozenset, float]:
        """An instant query's result: value by the series' labels (without __name__)."""
        data = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if data is None:
            return {}
        return {frozenset((k, v) for k, v in row["metric"].items() if k != "__name__"):
                float(row["value"][1]) for row in data["result"]}

    def alerts(self) -> dict[str, str]:
        """Active alerts (pending or firing) by name."""
        data = self._get("/api/v1/alerts") or {"alerts": []}
        return {alert["labels"]["alertname"]: alert["state"] for alert in data["alerts"]}

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = 180) -> Any:
        """Poll ``condition`` until it returns something truthy (generous: a loaded machine
        scrapes late); its last answer and Prometheus' log are in the error otherwise."""
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            answer = condition()
            if answer:
                return answer
            time.sleep(0.5)
        raise TimeoutError(f"prometheus: no {what} after {timeout}s (last answer {answer!r}); "
                           f"log: {self.log.read_text()[-2000:]}")

    def _get(self, path: str, *, raw: bool = False) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                body = response.read()
        except OSError:
            return None
        if raw:
            return body
        reply = json.loads(body)
        return reply["data"] if reply.get("status") == "success" else None


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True,
                          timeout=120)
