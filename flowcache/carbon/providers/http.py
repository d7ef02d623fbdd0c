"""HTTP for providers: explicit timeouts, retries with backoff, statuses mapped to typed errors.

Every HTTP provider owns one :class:`JsonClient`. It retries what can get better by waiting
(429, 5xx, timeouts, connection errors) with exponential backoff and jitter, honouring
``Retry-After``; it does not retry what cannot (401/403 -> :class:`ProviderAuthError`,
404 -> :class:`RegionNotFound`, other 4xx -> :class:`ProviderError`, a body that is not JSON ->
:class:`MalformedResponse`). The ``httpx.Client`` is injectable (tests pass one with
``httpx.MockTransport``) and so is ``sleep``, so retry tests never wait.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from flowcache.carbon.providers.base import BaseProvider
from flowcache.carbon.regions import RegionMap
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RegionNotFound,
)

log = logging.getLogger("flowcache.carbon.http")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that may succeed later."""

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    #: a Retry-After longer than this is not waited for: the provider is reported unavailable
    max_retry_after: float = 120.0
    jitter: float = 0.1
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504)

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        wait = min(self.max_backoff, self.backoff * 2 ** attempt)
        wait *= 1 + self.jitter * (2 * rand() - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(0.0, wait)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class JsonClient:
    """GET JSON from one provider with the retry and error policy above."""

    def __init__(self, provider: str, base_url: str, *, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float | None = None, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 auth_hint: str = "check the provider's credentials",
                 classify: Callable[[httpx.Response], ProviderError | None] | None = None
                 ) -> None:
        self.provider = provider
        self.classify = classify
        self.base_url = base_url.rstrip("/")
        self.owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout or DEFAULT_TIMEOUT)
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.retry = retry or RetryPolicy()
        self.headers = dict(headers or {})
        self.sleep = sleep
        self.clock = clock
        self.rand = rand
        self.auth_hint = auth_hint
        self.requests = 0  # sent, including retries (tests and rate-limit accounting)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/" \
            f"{path.lstrip('/')}"

    def get(self, path: str, *, params: Any = None, headers: Mapping[str, str] | None = None,
            auth: httpx.Auth | tuple[str, str] | None = None, allow_empty: bool = False) -> Any:
        """The decoded JSON body (None for 204 when ``allow_empty``)."""
        response = self.request("GET", path, params=params, headers=headers, auth=auth)
        if response.status_code == 204 or not response.content.strip():
            if allow_empty:
                return None
            raise MalformedResponse(self.provider, f"empty body from {response.request.url}")
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            snippet = response.text[:120].replace("\n", " ")
            raise MalformedResponse(
                self.provider, f"response from {response.request.url.path} is not JSON "
                f"({exc.msg if isinstance(exc, json.JSONDecodeError) else exc}): {snippet!r}"
            ) from exc

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        last: str = ""
        for attempt in range(self.retry.attempts):
            retry_after: float | None = None
            try:
                self.requests += 1
                response = self.client.request(method, url, headers=headers,
                                               timeout=self.timeout, **kwargs)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"could not connect ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status not in self.retry.statuses:
                    raise self._status_error(response)
                last = f"HTTP {status}"
                retry_after = retry_after_seconds(response.headers.get("retry-after"),
                                                  self.clock())
                if retry_after is not None and retry_after > self.retry.max_retry_after:
                    raise ProviderUnavailable(
                        self.provider, f"{last} with Retry-After {retry_after:.0f}s from "
                        f"{url}; not waiting that long, try again later")
            if attempt + 1 < self.retry.attempts:
                wait = self.retry.delay(attempt, retry_after, self.rand)
                log.info("%s: %s from %s; retry %d/%d in %.2fs", self.provider, last, url,
                         attempt + 1, self.retry.attempts - 1, wait)
                self.sleep(wait)
        raise ProviderUnavailable(
            self.provider, f"{last} from {url} after {self.retry.attempts} attempts; the data "
            "source is down or rate limiting: use a response cache or a fallback profile")

    def _status_error(self, response: httpx.Response) -> ProviderError:
        known = self.classify(response) if self.classify is not None else None
        if known is not None:
            return known
        status = response.status_code
        detail = response.text[:200].replace("\n", " ").strip()
        where = response.request.url.path
        if status in (401, 403):
            return ProviderAuthError(
                self.provider, f"HTTP {status} from {where}: the credentials were refused "
                f"({detail or 'no detail'}); {self.auth_hint}")
        if status == 404:
            return RegionNotFound(self.provider, f"HTTP 404 from {where}: {detail or 'not found'}"
                                  "; check the region name or its entry in the region map")
        return ProviderError(self.provider, f"HTTP {status} from {where}: {detail}")

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


class HttpProvider(BaseProvider):
    """A provider that talks to a JSON API through one :class:`JsonClient`."""

    base_url = ""
    auth_hint = "check the provider's credentials"

    def __init__(self, *, base_url: str | None = None, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, regions: RegionMap | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(regions=regions, clock=clock)
        self.base_url = (base_url or self.base_url).rstrip("/")
        self.http = JsonClient(self.name, self.base_url, client=client, timeout=timeout,
                               retry=retry, headers=headers, sleep=sleep, clock=clock,
                               auth_hint=self.auth_hint, classify=self.classify_error)

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        """The typed error for a status the API gives a meaning of its own (None: the
        generic mapping); called for statuses that are not retried."""
        return None

    def cache_identity(self) -> str:
        return f"{self.name}:{self.signal}:{self.base_url}"

    def close(self) -> None:
        self.http.close()
