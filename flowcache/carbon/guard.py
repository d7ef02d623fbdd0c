"""A provider on a budget: carbon awareness may save emissions, it may never stall a flow.

A carbon API that hangs would otherwise cost every carbon-aware task its timeouts and retries,
one task after another. :class:`GuardedProvider` wraps the provider a flow's decisions use:

* **a time budget**: every call runs on a helper thread and is waited for at most what is left
  of the flow's budget (``budget`` seconds of wall time for all of the flow's decisions); once
  it is spent, calls fail at once and every later decision is "run now at home";
* **a breaker**: a provider that failed or did not answer in time is not asked again for
  ``retry_after`` seconds; the decisions meanwhile go without it, at once.

Failures come out as :class:`~flowcache.errors.ProviderUnavailable`, which the advisor turns
into "run now at home" with the reason recorded. A call the caller stopped waiting for finishes
(or hangs) on its daemon thread; nothing waits for it, not even the interpreter's exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import TimeLike
from flowcache.errors import ForecastNotSupported, ProviderUnavailable, RegionNotFound

log = logging.getLogger("flowcache.carbon.guard")

#: answers that say something about the request, not about the provider's health
_NOT_A_FAILURE = (ForecastNotSupported, RegionNotFound)


class GuardedProvider:
    """``inner`` with a time budget and a breaker (see the module docstring)."""

    def __init__(self, inner: IntensityProvider, *, budget: float = 5.0,
                 retry_after: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.budget = float(budget)
        self.retry_after = float(retry_after)
        self.clock = clock
        self.spent = 0.0
        self.failed_at: float | None = None
        self.failure = ""
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def signal(self) -> Signal:
        return self.inner.signal

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.spent)

    def renew(self, budget: float) -> None:
        """A new budget for another stretch of work (the flow-end accounting has its own)."""
        with self._lock:
            self.budget, self.spent = float(budget), 0.0

    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._call("history", region, start, end)

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._call("forecast", region, start, end)

    def _call(self, method: str, *args: Any) -> IntensitySeries:
        with self._lock:
            if self.failed_at is not None and self.clock() - self.failed_at < self.retry_after:
                raise ProviderUnavailable(self.name, f"not asked again in this flow for "
                                                     f"{self.retry_after:g}s: {self.failure}")
            wait = self.remaining
        if wait <= 0:
            raise ProviderUnavailable(self.name, f"the flow's carbon decision budget of "
                                                 f"{self.budget:g}s is spent")
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = getattr(self.inner, method)(*args)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        started = self.clock()
        threading.Thread(target=run, daemon=True, name=f"flowcache-carbon-{method}").start()
        answered = done.wait(wait)
        with self._lock:
            self.spent += self.clock() - started
        if not answered:
            self._trip(f"no answer within {wait:.1f}s (the rest of the flow's budget)")
            raise ProviderUnavailable(self.name, self.failure)
        error = box.get("error")
        if error is None:
            return box["value"]
        if isinstance(error, _NOT_A_FAILURE):
            raise error
        self._trip(f"{type(error).__name__}: {error}")
        if isinstance(error, Exception) and not isinstance(error, ProviderUnavailable):
            raise ProviderUnavailable(self.name, self.failure) from error
        raise error

    def _trip(self, why: str) -> None:
        with self._lock:
            first = self.failed_at is None
            self.failed_at, self.failure = self.clock(), why
        if first:
            log.warning("carbon provider %s failed (%s); decisions go without it for %gs",
                        self.name, why, self.retry_after)
