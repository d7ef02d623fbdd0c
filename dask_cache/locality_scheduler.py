"""LocalitySchedulerPlugin: places a task on the node whose node tier holds the entry it reads.

Workers report the entries their node tier gained and lost
(:mod:`dask_cache.locality_worker`); this plugin keeps ``entry -> nodes`` and, as a graph
arrives (``update_graph``, before any of its tasks is scheduled), gives each task whose
flowcache entries sit on some node *loose* worker restrictions to that node's workers. Why so:

* **Restrictions, not a scheduling policy of our own.** Dask keeps choosing the least busy of
  the allowed workers, and a loose restriction falls back to any worker when none of the allowed
  ones is alive, so a dead host never leaves a task waiting. A restricted task is no longer
  queued as a root task: it is assigned at once, within its host. The cost of being wrong is
  only a read from Redis or the bucket, the same as without the plugin.
* **Which entries a task reads.** A graph-cache load (:func:`dask_cache.tasks.load`, what
  :func:`dask_cache.compute` makes of a task whose result is stored) reads its own entry, named
  in its arguments; any task may list entries in a ``flowcache_keys`` annotation. A task that
  computes from such loads follows them by Dask's own rule (it goes where its inputs are in
  memory), so restricting the loads places their consumers too.
* **Never stall the event loop.** ``update_graph`` does one dict lookup per task and key; reports
  are applied in O(keys reported). Nothing here reads storage.
* **Bounded.** :class:`EntryNodes` is an LRU of at most ``max_entries`` entries (default
  100,000): each costs about ``BYTES_PER_ENTRY`` bytes (the key as 32 raw bytes in an ordered
  dict; the node sets are shared objects). The least recently reported entries are forgotten
  first; a forgotten entry is only placed like any task.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

from distributed import SchedulerPlugin

from dask_cache.locality_worker import OP
from dask_cache.tasks import load

log = logging.getLogger("dask_cache.locality")
#: what one remembered entry costs (measured in tests/test_locality.py, CPython 3.11)
BYTES_PER_ENTRY = 200
DEFAULT_MAX_ENTRIES = 100_000
#: the task annotation listing the flowcache keys a task reads
KEYS_ANNOTATION = "flowcache_keys"


class EntryNodes:
    """``entry key -> node ids``, an LRU bounded to ``max_entries``."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries}: keep at least one entry")
        self.max_entries = max_entries
        self._nodes: OrderedDict[bytes, frozenset[int]] = OrderedDict()
        self._sets: dict[frozenset[int], frozenset[int]] = {}  # one object per distinct set
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._nodes)

    def _shared(self, nodes: frozenset[int]) -> frozenset[int]:
        return self._sets.setdefault(nodes, nodes)

    def add(self, key: bytes, node: int) -> None:
        held = self._nodes.get(key, frozenset())
        self._nodes[key] = held if node in held else self._shared(held | {node})
        self._nodes.move_to_end(key)
        while len(self._nodes) > self.max_entries:
            self._nodes.popitem(last=False)
            self.forgotten += 1

    def discard(self, key: bytes, node: int) -> None:
        held = self._nodes.get(key)
        if held is None or node not in held:
            return
        if len(held) == 1:
            del self._nodes[key]
        else:
            self._nodes[key] = self._shared(held - {node})

    def nodes(self, key: bytes) -> frozenset[int]:
        return self._nodes.get(key, frozenset())

    def count_by_node(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for held in self._nodes.values():
            counts.update(held)
        return counts


def raw_key(key: Any) -> bytes | None:
    """A flowcache key (64 hex characters) as 32 bytes; None for anything else."""
    if not isinstance(key, str) or len(key) != 64:
        return None
    try:
        return bytes.fromhex(key)
    except ValueError:
        return None


def task_entries(ts: Any) -> list[str]:
    """The flowcache keys task ``ts`` reads: its ``flowcache_keys`` annotation, or the entry a
    graph-cache load names."""
    listed = (ts.annotations or {}).get(KEYS_ANNOTATION)
    if listed:
        return [listed] if isinstance(listed, str) else list(listed)
    spec = ts.run_spec
    if getattr(spec, "func", None) is load and spec.args:
        return [spec.args[0]]
    return []


class LocalitySchedulerPlugin(SchedulerPlugin):
    name = "flowcache-locality"
    idempotent = True

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, *, place: bool = True) -> None:
        self.max_entries = max_entries
        self.place = place
        self.entries = EntryNodes(max_entries)
        self.node_ids: dict[str, int] = {}
        self.node_labels: list[str] = []
        self.node_workers: list[set[str]] = []
        self.worker_node: dict[str, int] = {}
        self.placed = 0
        self.unplaced = 0
        self.reports = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"max_entries": self.max_entries, "place": self.place}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_entries"], place=state["place"])

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.handlers[OP] = self.report

    async def close(self) -> None:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None and scheduler.handlers.get(OP) == self.report:
            del scheduler.handlers[OP]  # workers then get no answer and stop reporting

    # -- what workers report ----------------------------------------------------------------
    def report(self, worker: str, node: str, gained: Iterable[str] = (),
               lost: Iterable[str] = (), listing: bool = False) -> dict[str, int]:
        """A worker's batch: its node tier gained ``gained`` and lost ``lost``."""
        node_id = self._join(worker, node)
        for key in gained:
            raw = raw_key(key)
            if raw is not None:
                self.entries.add(raw, node_id)
        for key in lost:
            raw = raw_key(key)
            if raw is not None:
                self.entries.discard(raw, node_id)
        self.reports += 1
        return {"entries": len(self.entries)}

    def _join(self, worker: str, node: str) -> int:
        node_id = self.node_ids.get(node)
        if node_id is None:
            node_id = self.node_ids[node] = len(self.node_labels)
            self.node_labels.append(node)
            self.node_workers.append(set())
        previous = self.worker_node.get(worker)
        if previous != node_id:
            if previous is not None:
                self.node_workers[previous].discard(worker)
            if worker in self.scheduler.workers:  # not one that left meanwhile
                self.worker_node[worker] = node_id
                self.node_workers[node_id].add(worker)
        return node_id

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        node_id = self.worker_node.pop(worker, None)
        if node_id is not None:
            self.node_workers[node_id].discard(worker)

    # -- placing ------------------------------------------------------------------------------
    def update_graph(self, scheduler: Any, *, tasks: Iterable[Any] = (), **kwargs: Any) -> None:
        if not self.place or not self.entries:
            return
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or ts.state != "released" or ts.worker_restrictions \
                    or ts.host_restrictions or ts.resource_restrictions:
                continue  # running already, or placed by the user: theirs wins
            entries = task_entries(ts)
            if not entries:
                continue
            workers = self._workers_holding(entries)
            if workers:
                ts.worker_restrictions = workers
                ts.loose_restrictions = True
                self.placed += 1
            else:
                self.unplaced += 1

    def _workers_holding(self, entries: list[str]) -> set[str]:
        """The live workers of the node(s) holding most of ``entries``."""
        if len(entries) == 1:
            raw = raw_key(entries[0])
            nodes: Iterable[int] = self.entries.nodes(raw) if raw is not None else ()
        else:
            counts: Counter[int] = Counter()
            for key in entries:
                raw = raw_key(key)
                if raw is not None:
                    counts.update(self.entries.nodes(raw))
            best = max(counts.values(), default=0)
            nodes = [node for node, count in counts.items() if count == best]
        workers: set[str] = set()
        for node in nodes:
            workers |= self.node_workers[node]
        return workers

    def nodes_of(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The node labels holding each key (an empty list for unknown keys)."""
        found = {}
        for key in keys:
            raw = raw_key(key)
            held = self.entries.nodes(raw) if raw is not None else frozenset()
            found[key] = sorted(self.node_labels[node] for node in held)
        return found

    def stats(self) -> dict[str, Any]:
        """What the plugin knows and did (O(entries): for diagnostics, not for a hot path)."""
        counts = self.entries.count_by_node()
        return {"entries": len(self.entries), "max_entries": self.max_entries,
                "forgotten": self.entries.forgotten, "placed": self.placed,
                "unplaced": self.unplaced, "reports": self.reports, "place": self.place,
                "nodes": {label: {"workers": sorted(self.node_workers[node_id]),
                                  "entries": counts.get(node_id, 0)}
                          for node_id, label in enumerate(self.node_labels)}}
