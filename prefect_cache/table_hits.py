"""Hits without task runs: ``cache(hits="table")`` answers a hit before Prefect creates a run.

Every call of a Prefect task creates a task run in the API (a few requests, a row, a state
history) even when the cache answers it at once; a warm flow of thousands of cached tasks then
spends its time, and the API's database, on bookkeeping for work that never ran. With
``hits="table"`` the task looks the call up *before* Prefect sees it (``task(...)``,
``task.submit(...)``, ``task.map(...)``): a hit returns the value (or a finished
:class:`HitFuture`) and creates no task run; a miss goes to Prefect exactly as before. Every hit
is still shown: the flow-end hooks publish one table artifact, ``flowcache-hits-<flow>``, with a
row per hit (task, arguments, key, size, compute time it replaced), and count them in the
flow-end line.

What the UI shows: the flow run, a task run for each miss, and the hits artifact; no task run
per hit (so no Cached run to click). Calls whose arguments are futures, and ``map`` with
``allow_failure``/``quote`` arguments or variadic parameters, are not looked up early: they run
as task runs and hit inside the run (shown as Cached), as with the default ``hits="task-run"``.
The option needs the flow's hooks (``@flow(**cache_hooks())``): without them the table would
never be published, so a flow without them is refused with a ``ConfigError``.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.states import Completed, State
from prefect.tasks import Task

from flowcache.accounts.runstats import RUN_STATS
from flowcache.errors import ConfigError
from flowcache.keys.canonical import PROVENANCE
from flowcache.memoize import Memoizer
from flowcache.units import format_size
from prefect_cache.context import call_context

HITS_KEY = "flowcache-hits"
HIT_MODES = ("task-run", "table")
_ARGUMENT_TEXT = 80


def parse_hits(value: str) -> str:
    if value not in HIT_MODES:
        raise ConfigError(f"cache(hits={value!r}): use hits='task-run' (every call is a task "
                          "run; a hit shows as Cached) or hits='table' (a hit creates no task "
                          "run and is listed in the flow's flowcache-hits artifact)")
    return value


@dataclass
class HitTable:
    """The hits of one flow run answered without a task run, one row each."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows.append(row)


class HitTables:
    """The hit tables of the flow runs active in this process, by run id."""

    def __init__(self) -> None:
        self._tables: dict[str, HitTable] = {}
        self._lock = threading.Lock()

    def for_run(self, run_id: str) -> HitTable:
        with self._lock:
            return self._tables.setdefault(run_id, HitTable())

    def pop(self, run_id: str) -> HitTable | None:
        with self._lock:
            return self._tables.pop(run_id, None)


HIT_TABLES = HitTables()


class HitFuture(PrefectFuture[Any]):
    """A finished future for a call the cache answered without a task run."""

    def __init__(self, value: Any, label: str) -> None:
        self._task_run_id = uuid.uuid4()  # stands for no run in the API
        self._final_state: State[Any] = Completed(data=value,
                                                  message=f"flowcache hit ({label})")
        self._value = value
        self.label = label

    @property
    def task_run_id(self) -> uuid.UUID:
        return self._task_run_id

    @property
    def state(self) -> State[Any]:
        return self._final_state

    def wait(self, timeout: float | None = None) -> None:
        return None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        return self._value

    def add_done_callback(self, fn: Callable[[PrefectFuture[Any]], None]) -> None:
        fn(self)

    def __repr__(self) -> str:
        return f"<HitFuture {self.label}>"


class TableHitTask(Task):
    """A cached Prefect task whose hits are answered before a task run is created."""

    flowcache_memo: Memoizer | None = None

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None,
                 **kwargs: Any) -> Any:
        if not return_state and wait_for is None:
            found = self._early_hit(args, kwargs)
            if found is not None:
                return found[0]
        return super().__call__(*args, return_state=return_state, wait_for=wait_for, **kwargs)

    def submit(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> Any:
        if wait_for is None:
            found = self._early_hit(args, kwargs)
            if found is not None:
                return HitFuture(found[0], self.name)
        return super().submit(*args, wait_for=wait_for, **kwargs)

    def map(self, *args: Any, return_state: bool = False, wait_for: Any = None,
            deferred: bool = False, **kwargs: Any) -> Any:
        calls = None if (return_state or wait_for is not None or deferred) else \
            self._expand(args, kwargs)
        if calls is None:
            return super().map(*args, return_state=return_state, wait_for=wait_for,
                               deferred=deferred, **kwargs)
        mapped, static, count = calls
        futures: list[PrefectFuture[Any] | None] = [None] * count
        missed: list[int] = []
        for i in range(count):
            call = {**static, **{name: values[i] for name, values in mapped.items()}}
            found = self._early_hit((), call)
            if found is None:
                missed.append(i)
            else:
                futures[i] = HitFuture(found[0], self.name)
        if missed:
            from prefect import unmapped

            rest = super().map(**{name: [values[i] for i in missed]
                                  for name, values in mapped.items()},
                               **{name: unmapped(value) for name, value in static.items()})
            for i, future in zip(missed, rest, strict=True):
                futures[i] = future
        return PrefectFutureList(futures)

    # -- helpers ------------------------------------------------------------------------------
    def _expand(self, args: tuple, kwargs: dict
                ) -> tuple[dict[str, list[Any]], dict[str, Any], int] | None:
        """The mapped and static parameters of a plain ``map`` call, or None when it has
        futures, annotations or variadic parameters (Prefect's own ``map`` handles those)."""
        from prefect import unmapped
        from prefect.utilities.annotations import BaseAnnotation
        from prefect.utilities.callables import get_call_parameters
        from prefect.utilities.collections import isiterable

        signature = inspect.signature(self.fn)
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in signature.parameters.values()):
            return None
        parameters = get_call_parameters(self.fn, args, kwargs, apply_defaults=False)
        mapped: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in parameters.items():
            if isinstance(value, unmapped):
                static[name] = value.value
            elif isinstance(value, (PrefectFuture, BaseAnnotation)):
                return None
            elif isiterable(value):
                mapped[name] = list(value)
            else:
                static[name] = value
            if any(isinstance(v, PrefectFuture) for v in mapped.get(name, ())):
                return None
        lengths = {len(values) for values in mapped.values()}
        if len(lengths) != 1:
            return None  # nothing to map, or a length mismatch: Prefect says which
        return mapped, static, lengths.pop()

    def _early_hit(self, args: tuple, kwargs: dict) -> tuple[Any] | None:
        """``(value,)`` when the store holds this call's result, else None."""
        memo = self.flowcache_memo
        if memo is None or memo.options.refresh:
            return None
        if any(isinstance(v, PrefectFuture) for v in (*args, *kwargs.values())):
            return None
        context, _ = call_context(self.name)
        if context.run_id is None:
            return None  # outside a flow run: no table to list the hit in
        _check_hooks()
        store = memo.options.resolve_store()
        key = memo.key_for(args, kwargs, context, store)
        entry = store.get_entry(key)
        if entry is None:
            return None
        value = entry.load()
        PROVENANCE.remember(value, key)
        computed = float(entry.header.meta.get("compute_seconds", 0.0))
        RUN_STATS.for_run(context.run_id).record_hit(self.name, compute_seconds=computed,
                                                     hit_seconds=0.0)
        HIT_TABLES.for_run(context.run_id).add({
            "task": self.name, "arguments": _arguments_text(memo, args, kwargs),
            "key": key[:16], "size": format_size(entry.header.size),
            "compute time replaced": f"{computed:.3f} s"})
        return (value,)


def _arguments_text(memo: Memoizer, args: tuple, kwargs: dict) -> str:
    try:
        bound = memo.arguments(args, kwargs)
    except TypeError:
        return ""
    text = ", ".join(f"{name}={value!r}" for name, value in bound.items())
    return text if len(text) <= _ARGUMENT_TEXT else text[:_ARGUMENT_TEXT - 3] + "..."


def _check_hooks() -> None:
    """A ``hits="table"`` task in a flow without flowcache's hooks: its hits would be listed
    nowhere, so say how to fix it instead of hiding them."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow = getattr(context, "flow", None)
    if flow is None:
        return
    hooks = getattr(flow, "on_completion_hooks", None) or []
    if not any(getattr(hook, "flowcache_reports", False) for hook in hooks):
        raise ConfigError(
            f"cache(hits='table') in flow {flow.name!r}, which has no flowcache hooks: the "
            "hits would be listed nowhere. Use @flow(**cache_hooks()) (or "
            "on_completion=[report_cache_stats]), or hits='task-run'")


def as_table_hit_task(task: Task, memo: Memoizer) -> Task:
    """``task`` (already wrapped by ``cache()``) answering hits before a task run exists."""
    if not isinstance(task, TableHitTask):
        base = type(task)
        task.__class__ = TableHitTask if base is Task else type(
            f"TableHit{base.__name__}", (TableHitTask, base), {})
    task.flowcache_memo = memo
    return task
