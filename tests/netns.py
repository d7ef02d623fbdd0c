"""Network namespaces for the several-host harness (tests/hosts.py): one bridge in the root
namespace, one namespace per host wired to it by a veth pair, no route out.

Names carry the creating process's pid (and a counter), so parallel runs never collide, and
:func:`sweep_stale` removes what a run that died without cleaning up left behind (its pid is
gone). A file lock keeps two runs from taking the same subnet.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from flowcache.processes import pid_alive

SUBNET = "10.231"  # 10.231.<s>.0/24, one <s> per harness; unlikely to be a real network here
_SEQUENCE = itertools.count()
_LOCK_FILE = Path(tempfile.gettempdir()) / "flowcache-hosts-netns.lock"


def command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


    return True


def netns_refusal() -> str | None:
    """Why network namespaces cannot be used here (None when they can): tries one."""
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"fch-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made = command("ip", "netns", "add", probe)
    if made.returncode != 0:
        return f"the kernel refused `ip netns add`: {made.stderr.strip()}"
    command("ip", "netns", "del", probe)
    return None


class Bridge:
    """The netns mode's network: one bridge in the root namespace, one namespace per host."""

    def __init__(self) -> None:
        pid, seq = os.getpid(), next(_SEQUENCE)
        self.tag = f"{pid:x}g{seq:x}"
        self.prefix = f"fch-{pid}-{seq}"
        self.bridge = f"fcb{self.tag}"
        self.namespaces: list[str] = []
        self.subnet = ""

    @property
    def address(self) -> str:
        return f"{self.subnet}.1"

    def open(self) -> Bridge:
        sweep_stale()
        with open(_LOCK_FILE, "w") as lock:  # two runs never take the same subnet
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = command("ip", "-o", "addr", "show").stdout
            start = os.getpid() % 250
            for step in range(250):
                candidate = f"{SUBNET}.{(start + step) % 250 + 1}"
                if f" {candidate}." not in used:
                    self.subnet = candidate
                    break
            else:
                raise RuntimeError(f"every {SUBNET}.x.0/24 subnet is in use")
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace wired to the bridge: ``(namespace, its address)``."""
        netns = f"{self.prefix}-{index}"
        outer, inner = f"fc{self.tag}r{index}", f"fc{self.tag}n{index}"
        address = f"{self.subnet}.{10 + index}"
        self._ip("netns", "add", netns)
        self.namespaces.append(netns)
        self._ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self._ip("link", "set", outer, "master", self.bridge, "up")
        self._ip("link", "set", inner, "netns", netns)
        self._ip("-n", netns, "addr", "add", f"{address}/24", "dev", inner)
        self._ip("-n", netns, "link", "set", inner, "up")
        self._ip("-n", netns, "link", "set", "lo", "up")
        return netns, address

    def close(self) -> None:
        for netns in self.namespaces:  # deleting a namespace deletes its veth pair
            command("ip", "netns", "del", netns)
        self.namespaces.clear()
        command("ip", "link", "del", self.bridge)

    @staticmethod
    def _ip(*argv: str) -> None:
        done = command("ip", *argv)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def sweep_stale() -> None:
    """Remove namespaces and bridges left by harness runs whose process is gone."""
    for line in command("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if name.startswith("fch-") and len(parts) >= 2 and parts[1].isdigit() \
                and not pid_alive(int(parts[1])):
            command("ip", "netns", "del", name)
    for line in command("ip", "-o", "link", "show").stdout.splitlines():
        fields = line.split(":")
        name = fields[1].strip().split("@")[0] if len(fields) > 1 else ""
        if name.startswith("fcb") and "g" in name[3:]:
            with contextlib.suppress(ValueError):
                if not pid_alive(int(name[3:].split("g")[0], 16)):
                    command("ip", "link", "del", name)
