"""The carbon dispatcher: decide, hold, release and account carbon-aware work, for any engine.

The Prefect runner and the Dask placer do the same four things with a piece of carbon-aware
work, and differ only in what a future is. So the four live here, once:

* **decide**: the :class:`~flowcache.carbon.advisor.CarbonAdvisor` picks a start and a region
  (or "run now at home", with the reason, whenever carbon data cannot be had);
* **hold**: work whose start is later than ``min_deferral`` from now, or whose inputs are still
  held, waits in a heap served by one timer thread (:mod:`flowcache.carbon.deferral`), never in
  a worker; a held piece can be cancelled and then never runs;
* **release**: the engine's ``submit(region)`` is called when the time has come and every
  input it waits for is done; its actual start, region and end are noted;
* **account**: at the end, every placement that ran becomes a
  :class:`~flowcache.carbon.records.DecisionRecord` (realised and counterfactual grams), logged
  in one line and kept in the flowcache store under the run's id.

An engine adapts only its futures: anything with ``add_done_callback(fn)`` (Prefect and Dask
futures both have it) can be launched, and held work can wait on it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from flowcache.carbon.advisor import CarbonAdvisor, Placement
from flowcache.carbon.clocks import Clock, WallClock
from flowcache.carbon.deferral import ReleaseScheduler
from flowcache.carbon.impact import publish_impact
from flowcache.carbon.options import CarbonOptions
from flowcache.carbon.records import DecisionRecord
from flowcache.carbon.report import save_records, summary_line

log = logging.getLogger("flowcache.carbon.dispatch")


class Waitable(Protocol):
    """An engine's future, as far as the dispatcher needs one."""

    def add_done_callback(self, fn: Callable[[Any], None]) -> None: ...


F = TypeVar("F", bound=Waitable)


class Hold:
    """One piece of held work: released (its ``release`` ran) or cancelled, or still held."""

    def __init__(self, label: str, at: float) -> None:
        self.label = label
        self.at = at
        self.released = threading.Event()
        self.cancelled = False

    def __repr__(self) -> str:
        status = "cancelled" if self.cancelled else "released" if self.released.is_set() \
            else "held"
        return f"<Hold {self.label} {status}>"


class CarbonDispatcher:
    """Decides, holds, releases and accounts carbon-aware work (see the module docstring)."""

    def __init__(self, advisor: CarbonAdvisor | None, *, clock: Clock | None = None,
                 min_deferral: float = 60.0, name: str = "flowcache-release") -> None:
        self.advisor = advisor
        self.clock = clock or WallClock()
        self.min_deferral = min_deferral
        self.name = name
        self.holds: list[Hold] = []
        self._scheduler: ReleaseScheduler | None = None
        self._decisions: queue.Queue[Callable[[], None] | None] | None = None
        self._decider: threading.Thread | None = None
        #: the counter line and the week's rows, after :meth:`report`
        self.impact: tuple[str, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> CarbonDispatcher:
        if self._scheduler is None:
            self._scheduler = ReleaseScheduler(self.clock, name=self.name)
        return self

    def stop(self) -> int:
        """Cancel what is still held and end the timer and decision threads; returns how many
        were held."""
        scheduler, self._scheduler = self._scheduler, None
        with self._lock:
            decisions, decider = self._decisions, self._decider
            self._decisions = self._decider = None
        if decisions is not None and decider is not None:
            decisions.put(None)
            decider.join(60)  # decisions are bounded by the provider's budget
        return scheduler.stop() if scheduler is not None else 0

    def decide_later(self, work: Callable[[], None]) -> None:
        """Run ``work`` (a decision and what follows from it) on the dispatcher's decision
        thread, in submission order: the submitting thread never waits for a provider."""
        with self._lock:
            if self._decisions is None:
                self._decisions = queue.Queue()
                self._decider = threading.Thread(target=self._decide_forever,
                                                 args=(self._decisions,), daemon=True,
                                                 name=f"{self.name}-decider")
                self._decider.start()
            self._decisions.put(work)

    @staticmethod
    def _decide_forever(decisions: queue.Queue[Callable[[], None] | None]) -> None:
        while (work := decisions.get()) is not None:
            try:
                work()
            except Exception:  # the work's own fallback failed: say so, keep deciding
                log.exception("a carbon decision failed")

    @property
    def pending(self) -> int:
        return self._scheduler.pending if self._scheduler is not None else 0

    # -- deciding -----------------------------------------------------------------------------
    def decide(self, options: CarbonOptions, label: str, *, duration: float | None = None,
               note: str = "") -> Placement:
        """Where and when ``label`` should run (the advisor's placement)."""
        if self.advisor is None:
            raise RuntimeError("this dispatcher has no carbon advisor (no provider)")
        placement = self.advisor.place(options, label, duration=duration, duration_note=note)
        return placement

    def should_hold(self, start: float) -> bool:
        """Whether work planned for ``start`` is worth holding (not just a few seconds)."""
        return start - self.clock.now() >= self.min_deferral

    # -- releasing ----------------------------------------------------------------------------
    def launch(self, submit: Callable[[str], F], region: str,
               placement: Placement | None = None) -> F:
        """``submit(region)`` now, noting when and where the work started and when it ended."""
        if placement is not None:
            placement.started(self.clock.now(), region)
        future = submit(region)
        if placement is not None:
            future.add_done_callback(lambda _done: placement.finished(self.clock.now()))
        return future

    def hold(self, release: Callable[[], None], *, at: float, label: str,
             after: Sequence[Waitable] = (),
             on_cancel: Callable[[], None] | None = None) -> Hold:
        """Call ``release()`` once ``at`` has come and every future in ``after`` is done.

        One timer thread and the futures' own callbacks do the waiting: no thread of the
        engine blocks. ``on_cancel`` runs instead if the hold is cancelled first.
        """
        if self._scheduler is None:
            raise RuntimeError("the carbon dispatcher must be started before holding work")
        hold = Hold(label, at)
        remaining = [1 + len(after)]
        gate = threading.Lock()

        def arrive(*_: Any) -> None:
            with gate:
                remaining[0] -= 1
                if remaining[0] or hold.cancelled:
                    return
            try:
                release()
            finally:
                hold.released.set()

        def cancelled() -> None:
            hold.cancelled = True
            hold.released.set()
            if on_cancel is not None:
                on_cancel()

        with self._lock:
            self.holds.append(hold)
        self._scheduler.at(at, arrive, on_cancel=cancelled, label=label)
        for upstream in after:
            upstream.add_done_callback(arrive)
        return hold

    def cancel_all(self) -> int:
        """Cancel every held piece of work (they never run)."""
        return self._scheduler.cancel_all() if self._scheduler is not None else 0

    def wait_released(self, timeout: float | None = None) -> bool:
        """Wait until every held piece was released or cancelled."""
        return all(hold.released.wait(timeout) for hold in list(self.holds))

    # -- accounting ---------------------------------------------------------------------------
    def outcomes(self) -> list[DecisionRecord]:
        """A record for every placement that started (empty without an advisor)."""
        if self.advisor is None or not self.advisor.placements:
            return []
        return self.advisor.outcomes()

    def report(self, store: Any, run_id: str | None, *, flow: str = "",
               team_view: bool = False) -> list[DecisionRecord]:
        """The run's records: logged in one line, kept in ``store`` under ``run_id``, and
        added to the impact log, whose counter line (this week's shifts and savings) is
        logged too and kept in :attr:`impact`."""
        records = self.outcomes()
        if not records:
            return records
        log.info(summary_line(records))
        if store is not None and run_id is not None:
            try:
                save_records(store, run_id, records, meta={"flow": flow} if flow else None)
                self.impact = publish_impact(store, run=run_id, flow=flow, records=records,
                                             now=self.clock.now(), team_view=team_view)
                log.info(self.impact[0])
            except Exception as exc:  # the run's own results matter more than its report
                log.warning("could not keep the carbon records of run %s: %s", run_id, exc)
        return records
