"""A Prefect ``CachePolicy`` keyed exactly like the ``cache()`` option: by flowcache's key recipe.

::

    @task(cache_policy=CONTENT, result_storage=FlowcacheStorage.load("team"))

Compared with Prefect's ``INPUTS + TASK_SOURCE``: helper functions the task calls are part of
its identity, inputs are hashed canonically (deterministic across processes, no pickles), and
``Path``/``FileRef`` inputs (and ``files=`` parameters) are keyed by the file's version, so an
edited input file misses. The key is the one ``cache()`` and Dask graph caching give the same
call (one :class:`~flowcache.keys.recipe.KeyRecipe`, the store's namespace and its storage
options). It composes with Prefect's policies (``CONTENT + RUN_ID``) and narrows with ``-``
(``CONTENT - "client"``) like any other policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prefect.cache_policies import CachePolicy

from flowcache.config import default_store
from flowcache.keys.recipe import KeyRecipe
from flowcache.store import TieredStore
from prefect_cache.storage import FlowcacheStorage

#: the fix an unhashable argument's error names on this path
CONTENT_REMEDY = ("leave it out with CONTENT - {param!r} (or ContentKey(exclude=[{param!r}])) "
                  "or give the policy a key_fn=")


@dataclass
class ContentKey(CachePolicy):
    exclude: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    key_fn: Callable[..., Any] | None = None
    version: str | None = None

    def recipe(self) -> KeyRecipe:
        return KeyRecipe.parse(exclude=self.exclude, files=self.files, outputs=self.outputs,
                               key_fn=self.key_fn, version=self.version, remedy=CONTENT_REMEDY)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        task = task_ctx.task
        store = _store_of(task)
        return self.recipe().key(task.fn, inputs or {}, namespace=store.namespace,
                                 fingerprinter=store.fingerprinter, task=task.name)

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract parameter names from key policies.")
        return replace(self, exclude=[*self.exclude, other])


def _store_of(task: Any) -> TieredStore:
    """The flowcache store the task's results go to (its ``FlowcacheStorage``), else the
    configured one: its namespace and storage options are the key's."""
    storage = getattr(task, "result_storage", None)
    if isinstance(storage, FlowcacheStorage):
        return storage.tiered_store()
    return default_store()


CONTENT = ContentKey()
