"""A Prefect ``CachePolicy`` keyed like the ``cache()`` option: code, helpers, inputs, files.

::

    @task(cache_policy=CONTENT, result_storage=FlowcacheStorage.load("team"))

Compared with Prefect's ``INPUTS + TASK_SOURCE``: helper functions the task calls are part of
its identity, inputs are hashed canonically (deterministic across processes, no pickles), and
``Path``/``FileRef`` inputs are keyed by the file's version, so an edited input file misses.
It composes with Prefect's policies (``CONTENT + RUN_ID``) and narrows with ``-`` (``CONTENT -
"client"``) like any other policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from prefect.cache_policies import CachePolicy

from flowcache.config import default_fingerprinter
from flowcache.errors import UnhashableInput
from flowcache.keys.canonical import content_key, hash_inputs
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef


@dataclass
class ContentKey(CachePolicy):
    exclude: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    version: str | None = None

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        fn = task_ctx.task.fn
        values = {name: (FileRef(value) if name in self.files and isinstance(value, str)
                         else value)
                  for name, value in (inputs or {}).items() if name not in self.exclude}
        try:
            digest = hash_inputs(values, fingerprinter=default_fingerprinter())
        except UnhashableInput as exc:
            raise UnhashableInput(exc.param, exc.value_type, task=task_ctx.task.name,
                                  reason=exc.reason) from None
        return content_key(namespace="prefect", identity=function_identity(fn),
                           inputs_digest=digest, version=self.version)

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract parameter names from key policies.")
        return replace(self, exclude=[*self.exclude, other])


CONTENT = ContentKey()
