"""Accounts: what each user's entries cost and did.

:mod:`~flowcache.accounts.ledger` records events (writes, removals, hits, misses) into a backend
(:mod:`~flowcache.accounts.backends`); :mod:`~flowcache.accounts.billing` folds them into
residencies and byte-seconds; :mod:`~flowcache.accounts.evictions` adds what Redis drops
silently; :mod:`~flowcache.accounts.runstats` keeps one flow run's hit and miss statistics.
"""

from flowcache.accounts.billing import Event, Residency, RunUsage, Usage, run_usage, usage
from flowcache.accounts.ledger import Ledger, LedgerListener, ledger_of
from flowcache.accounts.runstats import RUN_STATS, RunStats

__all__ = ["RUN_STATS", "Event", "Ledger", "LedgerListener", "Residency", "RunStats", "RunUsage",
           "Usage", "ledger_of", "run_usage", "usage"]
