"""A Prefect future for a submission the carbon-aware runner is still holding.

The runner returns one at once for every carbon-aware submission: the decision is made on the
dispatcher's decision thread, so the flow's thread never waits for a carbon provider. Until the
runner releases it, the future stands for a task run that will exist; once released it
delegates to the real future of the runner that ran it. Waiting on it (a dependent task, the
flow, ``.result()``) waits for the release and then for the run, exactly like any Prefect future;
cancelling the flow cancels it before it ever runs.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from prefect.futures import PrefectFuture
from prefect.states import Cancelled, Scheduled, State


class DeferredFuture(PrefectFuture[Any]):
    def __init__(self, placeholder_id: uuid.UUID, planned_start: float, label: str) -> None:
        self._placeholder_id = placeholder_id
        self._final_state: State[Any] | None = None
        self.planned_start = planned_start
        self.label = label
        self._inner: PrefectFuture[Any] | None = None
        self._cancelled = False
        self._released = threading.Event()
        self._callbacks: list[Callable[[PrefectFuture[Any]], None]] = []
        self._lock = threading.Lock()

    # -- the runner's side --------------------------------------------------------------------
    def bind(self, inner: PrefectFuture[Any]) -> bool:
        """The held submission was released and is now ``inner``; False (and the future
        stays cancelled) if it was cancelled meanwhile."""
        with self._lock:
            if self._cancelled:
                return False
            self._inner = inner
            callbacks, self._callbacks = self._callbacks, []
        self._released.set()
        for callback in callbacks:
            inner.add_done_callback(lambda _done, cb=callback: cb(self))
        return True

    def cancel(self, message: str = "cancelled before its planned start") -> bool:
        with self._lock:
            if self._inner is not None or self._cancelled:
                return False
            self._cancelled = True
            self._final_state = Cancelled(message=f"{self.label}: {message}")
            callbacks, self._callbacks = self._callbacks, []
        self._released.set()
        for callback in callbacks:
            callback(self)
        return True

    @property
    def cancelled(self) -> bool:
        """Whether the work was cancelled before it was released (it never runs)."""
        return self._cancelled

    @property
    def placeholder_id(self) -> uuid.UUID:
        """The id the future stands under until it is released (its placeholder's id)."""
        return self._placeholder_id

    @property
    def released(self) -> bool:
        return self._inner is not None

    @property
    def inner(self) -> PrefectFuture[Any] | None:
        return self._inner

    def done(self) -> bool:
        if self._cancelled:
            return True
        inner = self._inner
        if inner is None:
            return False
        state = getattr(inner, "_final_state", None)
        if state is not None:
            return True
        wrapped = getattr(inner, "wrapped_future", None)
        return bool(wrapped is not None and getattr(wrapped, "done", lambda: False)())

    # -- the PrefectFuture interface ---------------------------------------------------------
    @property
    def task_run_id(self) -> uuid.UUID:
        inner = self._inner
        return inner.task_run_id if inner is not None else self._placeholder_id

    @property
    def state(self) -> State[Any]:
        if self._final_state is not None:
            return self._final_state
        inner = self._inner
        if inner is None:
            from datetime import UTC, datetime

            return Scheduled(scheduled_time=datetime.fromtimestamp(self.planned_start, UTC),
                             message=f"deferred by the carbon-aware runner: {self.label}")
        return inner.state

    def wait(self, timeout: float | None = None) -> None:
        if not self._released.wait(timeout):
            return
        if self._inner is not None:
            self._inner.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        if not self._released.wait(timeout):
            raise TimeoutError(f"{self.label} was not released within {timeout} seconds")
        if self._inner is None:
            assert self._final_state is not None
            return self._final_state.result(raise_on_failure=raise_on_failure, _sync=True)
        return self._inner.result(timeout=timeout, raise_on_failure=raise_on_failure)

    def add_done_callback(self, fn: Callable[[PrefectFuture[Any]], None]) -> None:
        with self._lock:
            inner = self._inner
            if inner is None and not self._cancelled:
                self._callbacks.append(fn)
                return
        if inner is not None:
            inner.add_done_callback(lambda _done: fn(self))
        else:
            fn(self)

    def __repr__(self) -> str:
        status = "cancelled" if self._cancelled else "released" if self._inner else "held"
        return f"<DeferredFuture {self.label} {status}>"
