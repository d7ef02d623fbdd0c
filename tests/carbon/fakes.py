"""Test doubles for the carbon tests: a recorded-response HTTP API on httpx.MockTransport.

Every provider test serves JSON in the shape the real API documents (the shapes are written out
in the tests) and lets the provider's real parsing and unit-conversion code run. Nothing leaves
the process; retries "sleep" into a list instead of waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from flowcache.carbon.series import IntensitySeries
from flowcache.errors import ProviderUnavailable

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response] | dict[str, Any] | list[Any]


class FakeAPI:
    """Routes path -> a queue of replies (the last one repeats); records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, path: str, *replies: Reply) -> FakeAPI:
        self.routes[path] = list(replies)
        return self

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        queue = self.routes.get(path)
        if queue is None:
            prefix = next((p for p in self.routes if p.endswith("*")
                           and path.startswith(p[:-1])), None)
            queue = self.routes.get(prefix) if prefix else None
        if not queue:
            return httpx.Response(404, json={"error": f"no route {path}"})
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json=reply)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


def raw(body: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body.encode(), headers={"content-type":
                                                                   "application/json"})


def hourly(values: list[float | None], start: float = 1_654_041_600.0, **kw: Any
           ) -> IntensitySeries:
    """A history series on an hourly grid starting 2022-06-01T00:00Z."""
    return IntensitySeries(start, 3600.0, np.array([np.nan if v is None else v for v in values],
                                                   dtype=float), **kw)


class Hanging:
    """A provider that hangs until ``release`` is set, then fails (as an API that timed out).
    Counts calls and those in flight."""

    name = "hanging"
    signal = "average"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        self.in_flight = 0
        self.lock = threading.Lock()

    def forecast(self, region, start, end):
        with self.lock:
            self.calls += 1
            self.in_flight += 1
        self.entered.set()
        try:
            self.release.wait(600)
            raise ProviderUnavailable(self.name, "the API timed out (test)")
        finally:
            with self.lock:
                self.in_flight -= 1

    history = forecast
