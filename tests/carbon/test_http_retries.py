"""The shared HTTP policy: what is retried, how long it waits, and which error comes out."""

import httpx
import pytest

from flowcache.carbon.providers.http import JsonClient, RetryPolicy, retry_after_seconds
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RegionNotFound,
)
from tests.carbon.fakes import FakeAPI, raw, timeout


def make(api: FakeAPI, sleeps: list[float], attempts: int = 4) -> JsonClient:
    return JsonClient("test", "https://api.example", client=api.client(), sleep=sleeps.append,
                      clock=lambda: 1_000_000.0, retry=RetryPolicy(attempts=attempts, backoff=0.5,
                                                                   jitter=0.0))


def test_backoff_doubles_between_retries_and_success_returns_the_body(api, sleeps):
    api.on("/x", httpx.Response(503), httpx.Response(502), timeout, {"ok": 1})
    assert make(api, sleeps).get("/x") == {"ok": 1}
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(api.requests) == 4


def test_retry_after_seconds_and_http_dates_are_honoured(api, sleeps):
    api.on("/x", httpx.Response(429, headers={"Retry-After": "7"}), {"ok": 1})
    assert make(api, sleeps).get("/x") == {"ok": 1}
    assert sleeps == [7.0]
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    assert retry_after_seconds("soon", now=0.0) is None


def test_a_very_long_retry_after_is_not_waited_for(api, sleeps):
    api.on("/x", httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(ProviderUnavailable, match="Retry-After 3600s"):
        make(api, sleeps).get("/x")
    assert sleeps == []


def test_giving_up_names_the_last_failure_and_the_way_out(api, sleeps):
    api.on("/x", timeout)
    with pytest.raises(ProviderUnavailable, match=r"timed out .* after 3 attempts.*fallback"):
        make(api, sleeps, attempts=3).get("/x")
    assert len(api.requests) == 3


def test_connection_errors_are_retried(api, sleeps):
    def refused(request):
        raise httpx.ConnectError("connection refused", request=request)

    api.on("/x", refused, {"ok": 2})
    assert make(api, sleeps).get("/x") == {"ok": 2}


@pytest.mark.parametrize(("status", "error"), [(401, ProviderAuthError), (403, ProviderAuthError),
                                               (404, RegionNotFound), (400, ProviderError)])
def test_client_errors_are_not_retried(api, sleeps, status, error):
    api.on("/x", httpx.Response(status, text="nope"))
    with pytest.raises(error, match=f"HTTP {status}"):
        make(api, sleeps).get("/x")
    assert len(api.requests) == 1
    assert sleeps == []


def test_a_body_that_is_not_json_is_malformed_not_a_decode_traceback(api, sleeps):
    api.on("/x", raw("<html>maintenance</html>"))
    with pytest.raises(MalformedResponse, match=r"not JSON.*maintenance"):
        make(api, sleeps).get("/x")


def test_an_empty_body_is_malformed_unless_allowed(api, sleeps):
    api.on("/x", httpx.Response(204))
    client = make(api, sleeps)
    assert client.get("/x", allow_empty=True) is None
    with pytest.raises(MalformedResponse, match="empty body"):
        client.get("/x")
