"""Fixtures for the carbon tests: the fake API, recorded sleeps and HTTP provider options."""

from __future__ import annotations

from typing import Any

import pytest

from flowcache.carbon.providers.http import RetryPolicy
from tests.carbon.fakes import FakeAPI


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def http_options(api: FakeAPI, sleeps: list[float]) -> dict[str, Any]:
    """Options every HTTP provider takes: the fake API's client, recorded sleeps, no jitter."""
    return {"client": api.client(), "sleep": sleeps.append,
            "retry": RetryPolicy(attempts=3, backoff=1.0, jitter=0.0)}

