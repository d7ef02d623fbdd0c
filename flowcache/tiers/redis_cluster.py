"""The nodes behind a Redis Cluster client, each as a plain connection of its own.

Some state is per node and never travels through the cluster: ACL users (so a tenant's user
must exist on every node, replicas included, or the tenant is refused wherever a failover or a
resharding sends it) and anything an operator configures. redis-py's ``RedisCluster`` knows
only the nodes ``CLUSTER SLOTS`` lists, which leaves out a master added without slots yet; so
the nodes here come from ``CLUSTER NODES`` as the cluster itself sees them, asked afresh on
every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowcache.tiers.redis_urls import LazyCluster

#: ``CLUSTER NODES`` flags of a node nobody can (or should) talk to now
_GONE = {"fail", "noaddr", "handshake"}


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's ``RedisCluster`` or one made on first use (not a
    one-server ``Redis``); answered without connecting."""
    from redis.cluster import RedisCluster

    return isinstance(client, (RedisCluster, LazyCluster))


def seed_names(client: Any) -> str:
    """``host:port,...``: the seed nodes of a cluster client, without asking the cluster
    (it may be down: this names it in the message saying so)."""
    if isinstance(client, LazyCluster):
        return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                        for host, port in client.seeds)
    return ",".join(node.name for node in client.nodes_manager.startup_nodes.values())


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    primary: bool
    suspect: bool  # flagged ``fail?``: this node's view is that it may be down

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def cluster_nodes(client: Any) -> list[NodeAddress]:
    """Every node the cluster knows (primaries and replicas), as one live node reports them
    (``CLUSTER NODES``); nodes marked failed, address-less or still handshaking are left out."""
    import redis

    text, failure = None, None
    for node in client.get_nodes():  # the first that answers (a killed master will not)
        try:
            reply = node.redis_connection.execute_command("CLUSTER", "NODES")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            failure = exc
            continue
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        break
    if text is None:
        raise redis.exceptions.ConnectionError(f"no node of the cluster answers: {failure}")
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        flags = set(fields[2].split(","))
        if flags & _GONE:
            continue
        address = fields[1].split("@", 1)[0]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            continue
        nodes.append(NodeAddress(host.strip("[]"), int(port), "master" in flags,
                                 "fail?" in flags))
    return nodes


def node_clients(client: Any, *, primaries_only: bool = False) -> list[tuple[NodeAddress, Any]]:
    """A plain ``redis.Redis`` to each node of ``client``'s cluster, with the cluster
    client's own credentials and timeouts; for a one-server client, that client itself."""
    import redis

    if not is_cluster(client):
        kwargs = getattr(client.connection_pool, "connection_kwargs", {})
        return [(NodeAddress(str(kwargs.get("host", "?")), int(kwargs.get("port", 0) or 0),
                             True, False), client)]
    template = client.get_default_node().redis_connection.connection_pool.connection_kwargs
    kwargs = {key: template[key] for key in _CARRIED if template.get(key) is not None}
    for key in ("socket_timeout", "socket_connect_timeout"):
        kwargs.setdefault(key, template.get(f"orig_{key}", 5.0))
    return [(node, redis.Redis(host=node.host, port=node.port, **kwargs))
            for node in cluster_nodes(client) if node.primary or not primaries_only]


#: what a node connection takes from the cluster client's: who we are, how long to wait
_CARRIED = ("username", "password", "credential_provider", "socket_timeout",
            "socket_connect_timeout", "socket_keepalive", "protocol", "client_name")
