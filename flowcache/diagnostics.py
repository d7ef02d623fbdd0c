"""Diagnostics: what ``flowcache doctor`` checks, so an operator sees a broken setup before a
flow does (a missing bucket, a Redis that does not answer, a key file nobody can read).

Each check is a :class:`Check`: ``ok`` (it works), ``warn`` (it works, but look: Redis's
``default`` user has no password, a credential cannot see its bucket) or ``fail`` (a flow would
fail or lose its cache here). Checks never raise: a check that cannot run says why.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flowcache.accounts.ledger import ledger_of
from flowcache.config import StoreConfig
from flowcache.lifetimes import TTL
from flowcache.store import TieredStore

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(config: StoreConfig, env: dict[str, str] | None = None) -> list[Check]:
    """Every check of a configuration, in the order an operator would go through them."""
    checks = [Check("user", OK, config.user),
              Check("signing key", OK, _key_source(config, env or {}))]
    started = time.perf_counter()
    try:
        store = config.build()
    except Exception as exc:
        return [*checks, Check("store", FAIL, f"cannot build {'+'.join(config.tiers)}: "
                                              f"{type(exc).__name__}: {exc}",
                               time.perf_counter() - started)]
    checks.append(Check("store", OK, store.describe(), time.perf_counter() - started))
    for index, tier in enumerate(store.tiers):
        checks.append(_timed(f"tier {index} ({tier.name})", tier.health, tier.describe()))
    checks.append(_timed("signed round trip", lambda: _round_trip(store),
                         "a signed test entry written, read back verified, deleted"))
    ledger = ledger_of(store)
    checks.append(Check("ledger", OK, ledger.backend.describe() if ledger is not None else
                        "off (FLOWCACHE_LEDGER=off): nothing is billed"))
    outer = store.locks.outer
    checks.append(Check("locks", OK, f"{type(outer).__name__ if outer else 'threads only'}"
                                     f"{f', lease {config.lock_lease:g}s' if outer else ''}"))
    store.close()
    return checks


def _timed(name: str, probe: Callable[[], list[str] | None], detail: str) -> Check:
    started = time.perf_counter()
    try:
        warnings = probe() or []
    except Exception as exc:
        return Check(name, FAIL, f"{detail}: {type(exc).__name__}: {exc}",
                     time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if warnings:
        return Check(name, WARN, f"{detail}: {'; '.join(warnings)}", seconds)
    return Check(name, OK, detail, seconds)


def _round_trip(store: TieredStore) -> list[str]:
    key = secrets.token_hex(32)
    payload = secrets.token_bytes(64)
    store.put(key, payload, lifetime=TTL(300), meta={"task": "flowcache doctor"})
    try:
        if store.get(key) != payload:
            raise RuntimeError("the entry read back differs from what was written")
    finally:
        store.delete(key)
    return []


def _key_source(config: StoreConfig, env: dict[str, str]) -> str:
    if env.get("FLOWCACHE_SIGNING_KEY"):
        return "FLOWCACHE_SIGNING_KEY (from the environment)"
    path = env.get("FLOWCACHE_SIGNING_KEY_FILE") or config.keys_dir / f"{config.user}.key"
    return f"key file {path}"
