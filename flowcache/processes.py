"""Processes: who this process is, and whether another one on this host is still alive.

Two things outlive a process and must be ended for it when it dies without saying so: its
heartbeat in a flow run (``flowcache gc`` purges a run whose every process is gone) and its
memory-tier copies in the billing ledger. Both name a process ``<host>:<pid>`` and ask the
kernel whether that pid still runs.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return socket.gethostname()


def this_process() -> str:
    """``<host>:<pid>``: how records name the process that wrote them."""
    return f"{hostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def started_at(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from ``/proc``): with the pid, it names
    one process, not whichever later reuses the number. None where ``/proc`` cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # after the command name, which may hold ')'
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def same_process_alive(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs on this host."""
    if not pid_alive(pid):
        return False
    return started is None or started_at(pid) in (None, started)


def process_gone(process: str) -> bool:
    """Whether ``<host>:<pid>`` is a process of this host that has ended (another host's
    processes cannot be checked from here: they are never reported gone)."""
    host, _, pid = process.rpartition(":")
    if host != hostname():
        return False
    try:
        return not pid_alive(int(pid or 0))
    except ValueError:
        return False
