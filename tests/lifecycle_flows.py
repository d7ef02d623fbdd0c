"""Flows that end badly, run in their own processes by tests/test_prefect_lifecycle.py.

    python tests/lifecycle_flows.py killed   # writes intermediates, then SIGKILLs itself
    python tests/lifecycle_flows.py serve    # serves `waits` for a runner to cancel
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, task

from prefect_cache import cache, cache_hooks


@cache(lifetime="flow")
@task
def step(i: int) -> bytes:
    return b"x" * 1000 + bytes([i])


@cache(keep=True)
@task
def kept() -> bytes:
    return b"kept"


@task
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task
def wait_to_be_cancelled() -> None:
    for _ in range(600):
        time.sleep(0.1)


@flow(name="flowcache-killed", **cache_hooks())
def killed() -> None:
    kept()
    for i in range(3):
        step(i)
    die()


@flow(name="flowcache-cancelled", **cache_hooks())
def waits() -> None:
    kept()
    for i in range(3):
        step(i)
    wait_to_be_cancelled()


if __name__ == "__main__":
    if sys.argv[1] == "killed":
        killed()
    elif sys.argv[1] == "serve":
        waits.serve(name="cancel-me", limit=1)
