"""The ``cache()`` task option: one line that makes a Prefect task "cache me".

::

    @cache(lifetime="flow")          # or keep=True, or lifetime="2h"
    @task(retries=2)
    def align(sample: Path, reference: Path) -> bytes: ...

The decorator goes *above* ``@task`` and returns a Prefect ``Task``, so ``.submit()``, ``.map()``
and ``with_options()`` work as usual. Inside the task run it keys the call by content, returns a
hit without running the body (the run is shown as **Cached**), and on a miss runs the body and
writes the result to the durable tier *before the task run ends*: a failed write fails the run,
so its ``retries`` apply. Stock Prefect would mark the run Completed first and only log a failed
write; that is why this option disables Prefect's own result persistence and cache policy for
the task and does both itself.

Applied to a plain function (no ``@task``), ``cache()`` memoizes it the same way, for use in
Dask or plain Python.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from flowcache.keys.fingerprints import Fingerprinter
from flowcache.lifetimes import Lifetime
from flowcache.memoize import CacheOptions, CallContext, Memoizer
from flowcache.store import TieredStore
from prefect_cache.context import call_context
from prefect_cache.table_hits import as_table_hit_task, parse_hits

if TYPE_CHECKING:
    from prefect import Task

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("prefect_cache")


class CacheDecorator(Protocol):
    """What ``cache(...)`` with options returns: it keeps the decorated task's (or function's)
    signature, so editors and type checkers still see the parameters and the return type."""

    @overload
    def __call__(self, target: Task[P, R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, target: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cache(fn: Task[P, R], /) -> Task[P, R]: ...


@overload
def cache(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cache(*, lifetime: Lifetime | str | float | timedelta | None = None,
          keep: bool | None = None, exclude: Iterable[str] = (),
          key_fn: Callable[..., Any] | None = None, refresh: bool = False,
          store: TieredStore | None = None, version: str | None = None,
          serializer: str | None = None, files: Iterable[str] = (),
          fingerprinter: Fingerprinter | None = None,
          outputs: Iterable[str] = (), hits: str = "task-run") -> CacheDecorator: ...


def cache(fn: Any = None, /, **options: Any) -> Any:
    """Cache a task's (or function's) result by the content of its code and inputs.

    Args:
        lifetime: ``"flow"`` (purged when the flow run ends; add ``purge_intermediates`` to
            the flow's hooks), a TTL (``"2h"``, seconds, a ``timedelta``) or ``"keep"``
            (the default).
        keep: ``keep=True`` is ``lifetime="keep"``.
        exclude: parameters left out of the key (clients, loggers, output paths...).
        key_fn: ``key_fn(**arguments)`` returns what to key on instead of the arguments.
        refresh: recompute and overwrite even when a result is cached.
        store: a ``TieredStore``; default: the one configured by ``FLOWCACHE_STORE``.
        version: bump it to invalidate results when something outside the code changed.
        serializer: ``"cloudpickle"`` (default for non-bytes), ``"pickle"``, ``"raw"``...
        files: ``str`` parameters holding file paths or URLs, keyed by the file's version.
        outputs: parameters holding the paths of files the task writes (or ``"return"``, for
            returned paths). When the task runs, each file's directory manifest records the
            run (see ``flowcache runs DIR``); they are keyed by path, not by content.
        hits: ``"task-run"`` (default: every call is a task run, a hit shows as Cached) or
            ``"table"`` (a hit is answered before Prefect creates a task run and listed in
            the flow's ``flowcache-hits-<flow>`` artifact; see :mod:`prefect_cache.table_hits`).
    """
    hits = parse_hits(options.pop("hits", "task-run"))
    parsed = CacheOptions.parse(**options)

    def apply(target: Any) -> Any:
        from prefect import Task

        if isinstance(target, Task):
            return _cached_task(target, parsed, hits)
        if callable(target):
            return _cached_function(target, parsed)
        raise TypeError(f"cache() decorates a Prefect task or a function, not {target!r}")

    return apply(fn) if fn is not None else apply


def _cached_task(task: Any, options: CacheOptions, hits: str = "task-run") -> Any:
    from prefect.cache_policies import NO_CACHE

    original = task.fn
    memo = Memoizer(original, options)
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            context, in_task = call_context(task.name)
            compute = _on_this_loop(original, args, kwargs)
            result = await asyncio.to_thread(memo.call, args, kwargs, context, compute)
            return _present(result, in_task)
    else:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            context, in_task = call_context(task.name)
            return _present(memo.call(args, kwargs, context), in_task)

    cached = task.with_options(cache_policy=NO_CACHE, persist_result=False)
    cached.fn = wrapper
    cached.flowcache_options = options
    if hasattr(task, "flowcache_carbon"):  # with_options() drops attributes it does not know
        cached.flowcache_carbon = task.flowcache_carbon
    if hits == "table":
        return as_table_hit_task(cached, memo)
    return cached


def _on_this_loop(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Callable[[], Any]:
    """A blocking call that runs the async body on the caller's event loop.

    The store's lookup, lock and write run in a worker thread (they block); the body itself
    goes back to the task's own loop, so loop-bound resources it uses keep working.
    """
    loop = asyncio.get_running_loop()
    return lambda: asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), loop).result()


def _present(result: Any, in_task: bool) -> Any:
    """Return the value; on a hit inside a task run, have Prefect show the run as Cached.

    Prefect names a run "Cached" when its transaction is already committed when the body
    returns (that is how its own cache hits look). Marking the run's transaction committed,
    as Prefect's ``Transaction.begin()`` does for a stored key, gives a hit the same state
    without routing the value through Prefect's result store (which would re-serialize it).
    Nothing is written on commit: the task has no cache policy and does not persist results.
    """
    if result.hit and in_task:
        from prefect.transactions import TransactionState, get_transaction

        transaction = get_transaction()
        if transaction is not None and transaction.state in (
                TransactionState.PENDING, TransactionState.ACTIVE):
            transaction.state = TransactionState.COMMITTED
        log.debug("flowcache hit from the %s tier (key %s)", result.tier, result.key[:12])
    return result.value


def _cached_function(fn: Callable[..., Any], options: CacheOptions) -> Callable[..., Any]:
    memo = Memoizer(fn, options)
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return memo.call(args, kwargs, CallContext(task_name=name)).value

    wrapper.flowcache_options = options  # type: ignore[attr-defined]
    wrapper.memoizer = memo  # type: ignore[attr-defined]
    return wrapper
