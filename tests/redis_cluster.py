"""A real Redis Cluster on loopback for the tests: ``redis-server --cluster-enabled yes`` nodes
on free ports, joined by ``redis-cli --cluster create``, with the operations the fault tests
need (kill a master, restart it as a replica, add a node, move a slot by hand).

Every wait is on a condition the nodes report (``CLUSTER INFO``, ``CLUSTER NODES``) with a
generous deadline, never a fixed sleep: a loaded 2-core machine must not make a test flaky.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import time
from collections.abc import Callable

import redis

from tests.servers import HOST, RedisServer, free_port

#: fast failover for tests: a master is marked failing after 2 s without an answer
NODE_TIMEOUT_MS = 2000
DEADLINE = 90.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still not true after {timeout}s")
        time.sleep(0.1)


_handed_out: set[int] = set()


def _unused_port() -> int:
    """A free port not handed to another node of this session (free_port alone may repeat)."""
    while True:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _cli(*args: str) -> str:
    """Run ``redis-cli``; its own words on failure (it prints errors on stdout)."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed (it comes with redis-server / "
                           "redis-tools); run `make servers`")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server; its ``nodes.conf`` survives ``kill()``/``start()``,
    so a restarted node rejoins the cluster it left."""

    def __init__(self) -> None:
        super().__init__(_unused_port())
        self._choose_ports(self.port)

    def _choose_ports(self, port: int) -> None:
        self.port = port
        self.workdir = self.workdir.with_name(f"fc-redis-{port}")
        #: the cluster bus on a free port of its own: the default (port + 10000) may not exist
        self.bus_port = _unused_port()
        self.extra = ("--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                      "--cluster-config-file", f"nodes-{port}.conf",
                      "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                      # a replica always stands for election, however long ago it last heard
                      # its master: on a loaded machine (a stalled sync, a slow test) the
                      # default factor can leave a killed master's slots with nobody to serve
                      "--cluster-replica-validity-factor", "0",
                      "--logfile", str(self.workdir / "redis.log"))

    def start(self) -> ClusterNode:
        """Start, and make sure the server answering on the port is this process: another
        program (other tests run beside these) may have taken a port picked as free. A
        restarted node keeps its ports (its ``nodes.conf`` names them)."""
        first = self.proc is None and not (self.workdir / f"nodes-{self.port}.conf").exists()
        for _ in range(5):
            try:
                super().start()
                with self.client() as client:
                    if client.info("server")["process_id"] == self.proc.pid:
                        return self
            except (RuntimeError, redis.exceptions.RedisError):
                pass
            self.kill()
            if not first:
                break
            self._choose_ports(_unused_port())
        raise RuntimeError(f"could not start a cluster node ({self.address})")

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) admin connection to this node alone."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=10,
                           socket_connect_timeout=5)

    def info(self) -> dict[str, str]:
        with self.client() as client:
            text = client.execute_command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else text
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def node_id(self) -> str:
        with self.client() as client:
            return _text(client.execute_command("CLUSTER", "MYID"))

    def replication(self) -> dict:
        with self.client() as client:
            return client.info("replication")

    def role(self) -> str:
        with self.client() as client:
            return _text(client.execute_command("ROLE")[0])


class RedisClusterFixture:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.nodes = [ClusterNode() for _ in range(masters * (1 + replicas))]
        self.masters = masters
        self.replicas = replicas

    # -- life ------------------------------------------------------------------------------
    def start(self) -> RedisClusterFixture:
        for node in self.nodes:
            node.start()
        _cli("--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes")
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_healthy(self, timeout: float = DEADLINE) -> None:
        """Every running node says ``cluster_state:ok``, knows every running node, and agrees
        on who serves each slot."""
        running = [node for node in self.nodes if node.running]

        def healthy() -> bool:
            try:
                if any(node.info().get("cluster_state") != "ok" for node in running):
                    return False
                views = [self._slot_owners(node) for node in running]
                known = [self._known(node) for node in running]
                roles = {node.node_id(): node.role() for node in running}
                # a replica that never synced cannot take over: its master's death is then
                # an outage of its slots, not a failover
                if any(node.replication().get("master_link_status", "up") != "up"
                       for node in running):
                    return False
            except redis.exceptions.RedisError:
                return False
            return (all(view == views[0] for view in views) and len(views[0]) == 16384
                    and all(view.items() >= roles.items() for view in known))

        wait_until(healthy, "the Redis cluster is healthy", timeout)

    # -- topology ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The store's spelling: several seed nodes, so that losing one is no outage."""
        seeds = ",".join(node.address for node in self.nodes[:self.masters])
        return f"redis+cluster://{seeds}"

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.running() if node.role() == "master"]

    def owner(self, slot: int) -> ClusterNode:
        """The running master that serves ``slot``."""
        return self.owners()[slot]

    def owners(self) -> dict[int, ClusterNode]:
        """``{slot: the running master serving it}``, asked once (cheaper than ``owner``
        slot by slot)."""
        by_id = {node.node_id(): node for node in self.running()}
        return {slot: by_id[node_id]
                for slot, node_id in self._slot_owners(self.running()[0]).items()}

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        master_id = master.node_id()
        for node in self.running():
            with node.client() as client:
                for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines():
                    fields = line.split()
                    if "myself" in fields[2] and fields[3] == master_id:
                        return node
        raise LookupError(f"{master.address} has no replica")

    # -- faults and changes ------------------------------------------------------------------
    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: no goodbye to the other nodes, which must notice and fail over."""
        node.kill()

    def wait_promoted(self, replica: ClusterNode) -> None:
        try:
            wait_until(lambda: replica.role() == "master", f"{replica.address} promoted")
        except TimeoutError as error:  # say what the cluster looked like, for whoever reads it
            with replica.client() as client:
                nodes = _text(client.execute_command("CLUSTER", "NODES"))
            raise TimeoutError(f"{error}; the replica's CLUSTER NODES:\n{nodes}") from None
        self.wait_healthy()

    def add_node(self) -> ClusterNode:
        """A new, empty master joined with ``redis-cli --cluster add-node`` (no slots yet)."""
        node = ClusterNode().start()
        self.nodes.append(node)
        _cli("--cluster", "add-node", node.address, self.primaries()[0].address)
        self.wait_healthy()
        return node

    def move_slot(self, slot: int, target: ClusterNode, *,
                  between: Callable[[list[bytes]], None] | None = None) -> int:
        """Reshard ``slot`` to ``target`` the way ``redis-cli --cluster reshard`` does: mark it
        IMPORTING/MIGRATING, MIGRATE its keys in small batches (``between(keys)`` runs after
        each batch: readers then meet ASK redirections), then give it to ``target``
        everywhere. Returns how many keys moved."""
        source = self.owner(slot)
        source_id, target_id = source.node_id(), target.node_id()
        moved = 0
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 3)
                if not keys:
                    break
                src.execute_command("MIGRATE", HOST, target.port, "", 0, 10_000,
                                    "REPLACE", "KEYS", *keys)
                moved += len(keys)
                if between is not None:
                    between(keys)
            # the new owner first (its epoch wins), then the rest; a source left without
            # slots may turn itself into a replica meanwhile (replica migration): skip it
            for node in [target, source, *self.primaries()]:
                with node.client() as client:
                    try:
                        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                    except redis.exceptions.ResponseError:
                        if node.role() == "master":
                            raise
        wait_until(lambda: all(self._slot_owners(node)[slot] == target_id
                               for node in self.running()), f"slot {slot} moved everywhere")
        return moved

    def flush(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _known(node: ClusterNode) -> dict[str, str]:
        """``{node id: "master" or "slave"}`` as ``node`` sees the live nodes."""
        with node.client() as client:
            lines = _text(client.execute_command("CLUSTER", "NODES")).splitlines()
        known = {}
        for line in lines:
            node_id, _, flags = line.split()[:3]
            if "fail" not in flags and "handshake" not in flags:
                known[node_id] = "master" if "master" in flags else "slave"
        return known

    @staticmethod
    def _slot_owners(node: ClusterNode) -> dict[int, str]:
        with node.client() as client:
            reply = client.execute_command("CLUSTER", "SLOTS")
        owners = {}
        for start, end, master, *_ in reply:
            node_id = _text(master[2])
            for slot in range(int(start), int(end) + 1):
                owners[slot] = node_id
        return owners


@functools.cache
def shared_cluster() -> RedisClusterFixture:
    """The test session's 3+3 cluster, started once for every module that uses one (a
    session fixture imported into two modules would start two) and stopped at exit."""
    cluster = RedisClusterFixture(masters=3, replicas=1).start()
    atexit.register(cluster.stop)
    return cluster


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
