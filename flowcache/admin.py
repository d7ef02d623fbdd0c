"""Operators' administration: Redis ACL users, bucket policies, and clearing a user's namespace.

The client's owner and MAC checks (:mod:`flowcache.identity`) are the second line of defence;
the first is the backends, each confining a user's credentials to their prefix (a user's
namespace is their name, the first segment of every entry name):

* Redis: an ACL user per tenant (:func:`tenant_acl_rules`) whose key patterns cover only their
  entry, part, lock and index keys, with an allowlist of the few commands the tiers use (no
  ``KEYS``/``SCAN``, whose results ACLs do not filter; no ``FLUSHALL``, ``CONFIG``, ``DEBUG``,
  ``MONITOR``, pub/sub), plus an append-only selector on their ledger stream;
* S3 and GCS: IAM policies limited to ``<prefix>/<user>/`` (:func:`s3_policy`,
  :func:`gcs_policy`);
* operators clear a namespace by name, without its owner's key (:func:`clear_namespace`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowcache.accounts.ledger import Ledger
from flowcache.errors import ConfigError, TierUnavailable
from flowcache.identity import is_entry_name, validate_user
from flowcache.locks import load_library
from flowcache.tiers.base import Tier
from flowcache.tiers.redis_cluster import is_cluster, node_clients

# -- Redis ACLs ----------------------------------------------------------------------------------
#: what the tiers and locks send: GET/SET/GETRANGE/EXISTS/DEL/PTTL for frames, SADD/SREM/SSCAN
#: for the index, SET NX + FCALL of flowcache's function library (loaded by the operator) for
#: leases, SELECT for a database. Never EVAL: a tenant's endless script would make Redis
#: answer BUSY to every tenant; FCALL runs only the operator's code.
TENANT_COMMANDS = ("ping", "select", "get", "set", "getrange", "exists", "del", "pttl",
                   "pexpire", "sadd", "srem", "sscan", "fcall")
#: what a cluster client needs besides: the slot map (which node serves which keys: no data),
#: the server's command table (redis-py reads it to find each command's keys) and ASKING,
#: sent before a command that follows a slot being moved to another node
CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "command", "asking")
#: the ledger stream is append-only for its tenant: no XDEL, XTRIM or DEL
LEDGER_COMMANDS = ("xadd", "xrange", "xlen")
ACL_USER_PREFIX = "flowcache-"


def acl_username(user: str) -> str:
    """The Redis ACL user of a flowcache user (prefixed: never an unrelated Redis user)."""
    return f"{ACL_USER_PREFIX}{validate_user(user)}"


def tenant_key_patterns(user: str, prefix: str = "flowcache:") -> list[str]:
    """The key patterns of ``user``: entries and parts, leases, and the name index."""
    validate_user(user)
    base = _acl_glob(prefix)
    return [f"{base}{{{user}/*", f"{base}lock:{{{user}/*", f"{base}index:{{{user}}}"]


def tenant_acl_rules(user: str, password_sha256: str, prefix: str = "flowcache:") -> list[str]:
    """``ACL SETUSER`` rules confining ``user`` to their keys and the commands the tiers use.

    ``reset`` first, so re-provisioning replaces every earlier rule; the password goes in as
    its SHA-256 (``#...``), so the plain text never reaches the server's command stream.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", password_sha256):
        raise ConfigError("password_sha256 must be 64 lowercase hex characters")
    ledger = f"~{_acl_glob(prefix)}ledger:{{{user}}}"
    return ["reset", "on", f"#{password_sha256}", "resetchannels",
            *[f"~{pattern}" for pattern in tenant_key_patterns(user, prefix)],
            "-@all", *[f"+{command}" for command in (*TENANT_COMMANDS, *CLUSTER_COMMANDS)],
            f"({ledger} -@all {' '.join(f'+{c}' for c in LEDGER_COMMANDS)})"]


@dataclass(frozen=True)
class RedisTenant:
    """What provisioning made: the ACL user and its (only ever printed once) password."""

    user: str
    acl_user: str
    password: str = field(repr=False)
    rules: tuple[str, ...]
    persisted: bool  # ACL SAVE wrote the server's ACL file (on every node of a cluster)
    nodes: tuple[str, ...] = ()  # the nodes that now have the user (host:port)


def provision_redis_user(client: Any, user: str, *, prefix: str = "flowcache:",
                         password: str | None = None) -> RedisTenant:
    """Create (or reset) ``user``'s Redis ACL user through an admin connection, and load the
    function library its leases call (tenants may FCALL it, never EVAL).

    ACLs are per node: on a cluster the user is set on every node the cluster knows,
    replicas included (a failover makes a replica the one that answers). A node that does
    not answer gets nothing: :class:`TierUnavailable` names it, after every other node was
    provisioned; run :func:`sync_redis_acls` once it is back.
    """
    password = password or secrets.token_urlsafe(32)
    rules = tenant_acl_rules(user, hashlib.sha256(password.encode()).hexdigest(), prefix)
    acl_user = acl_username(user)
    nodes, saved = _on_every_node(client, lambda node: node.execute_command(
        "ACL", "SETUSER", acl_user, *rules), load_functions=True)
    return RedisTenant(user, acl_user, password, tuple(rules), saved, tuple(nodes))


def remove_redis_user(client: Any, user: str) -> bool:
    """Delete ``user``'s ACL user on every node (their keys stay; ``clear_namespace`` removes
    those)."""
    acl_user = acl_username(user)
    removed: list[bool] = []
    _on_every_node(client, lambda node: removed.append(
        bool(node.execute_command("ACL", "DELUSER", acl_user))))
    return any(removed)


def sync_redis_acls(client: Any) -> dict[str, list[str]]:
    """Make every node of a cluster agree on flowcache's ACL users; return what changed per
    node (``{"10.0.0.7:7000": ["+flowcache-alice", ...]}``).

    For a node added to the cluster after its tenants were provisioned (``redis-cli
    --cluster add-node`` copies functions, not users), or one that was down while users were
    added or removed. The majority of nodes decides, user by user: a user most nodes have is
    copied (with their rules and password hash) to the others; one most nodes lack is
    deleted where it lingers. A tie is a :class:`ConfigError` naming the user: provision it
    again (``flowcache admin add-user``) or remove it. Only ``flowcache-*`` users are touched.
    """
    nodes = node_clients(client)
    views = {node.name: _flowcache_users(connection) for node, connection in nodes}
    users = sorted({user for view in views.values() for user in view})
    wanted: dict[str, str | None] = {}
    for user in users:
        votes = Counter(_canonical(view.get(user)) for view in views.values())
        (best, count), *rest = votes.most_common()
        if rest and rest[0][1] == count:
            raise ConfigError(f"Redis nodes disagree about ACL user {user!r} and no version is "
                              "held by most of them: run `flowcache admin add-user "
                              f"{user.removeprefix(ACL_USER_PREFIX)}` (new password) or "
                              "`flowcache admin remove-user` to settle it on every node")
        wanted[user] = next((view[user] for view in views.values()
                             if _canonical(view.get(user)) == best), None)
    changes: dict[str, list[str]] = {}
    for node, connection in nodes:
        for user, rules in wanted.items():
            if _canonical(views[node.name].get(user)) == _canonical(rules):
                continue
            if rules is None:
                connection.execute_command("ACL", "DELUSER", user)
                changes.setdefault(node.name, []).append(f"-{user}")
            else:
                connection.execute_command("ACL", "SETUSER", user, "reset",
                                           *_acl_tokens(rules))
                changes.setdefault(node.name, []).append(f"+{user}")
        if node.name in changes:
            _acl_save(connection)
    if is_cluster(client):
        for _, connection in node_clients(client, primaries_only=True):
            _load_on_primary(connection)
    return changes


def _on_every_node(client: Any, action: Callable[[Any], Any], *,
                   load_functions: bool = False) -> tuple[list[str], bool]:
    """Run ``action`` on each node (one node for a one-server client), then ACL SAVE there;
    raise :class:`TierUnavailable` naming the nodes that did not answer, after the rest."""
    import redis

    if load_functions:
        load_library(client)  # a cluster: redis-py sends FUNCTION LOAD to every primary
    done, saved, missed = [], True, []
    for node, connection in node_clients(client):
        try:
            action(connection)
            saved = _acl_save(connection) and saved
            if load_functions and node.primary and is_cluster(client):
                _load_on_primary(connection)  # a primary without slots yet, too
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            missed.append(f"{node.name} ({exc})")
            continue
        done.append(node.name)
    if missed:
        raise TierUnavailable(f"Redis node(s) {', '.join(missed)} did not answer; the other "
                              f"{len(done)} were updated. When they are back, run `flowcache "
                              "admin sync-acls` so that every node has the same ACL users")
    return done, saved


def _load_on_primary(connection: Any) -> None:
    """Load the library on a node the cluster calls a primary; one that has just become a
    replica (the view was a moment old) gets it by replication instead."""
    import redis

    with contextlib.suppress(redis.exceptions.ReadOnlyError):
        load_library(connection)


def _flowcache_users(connection: Any) -> dict[str, str]:
    """``{acl user: its rules as ACL LIST prints them}`` for flowcache's users on one node."""
    users = {}
    for raw in connection.execute_command("ACL", "LIST"):
        line = raw.decode() if isinstance(raw, bytes) else raw
        _, name, rules = [*line.split(" ", 2), "", ""][:3]
        if name.startswith(ACL_USER_PREFIX):
            users[name] = rules
    return users


def _canonical(rules: str | None) -> tuple | None:
    """Rules as a comparable value: ACL LIST prints a user's commands in an order of its own
    (it differs from node to node), and flowcache's rules only add commands after ``-@all``,
    so their order carries no meaning."""
    if rules is None:
        return None
    tokens = _acl_tokens(rules)
    selectors = sorted(tuple(sorted(_acl_tokens(t[1:-1]))) for t in tokens if t[:1] == "(")
    return tuple(sorted(t for t in tokens if t[:1] != "(")), tuple(selectors)


def _acl_tokens(rules: str) -> list[str]:
    """``ACL LIST``'s rule text as ``ACL SETUSER`` arguments: a selector ``(...)`` is one."""
    tokens, depth, current = [], 0, ""
    for ch in rules:
        if ch == " " and depth == 0:
            if current:
                tokens.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        current += ch
    if current:
        tokens.append(current)
    return tokens


def _acl_save(client: Any) -> bool:
    try:
        client.execute_command("ACL", "SAVE")
    except Exception as exc:  # no aclfile configured: users live until the server restarts
        if "ACL file" not in str(exc) and "aclfile" not in str(exc):
            raise
        return False
    return True


def tenant_store_spec(tiers: Sequence[str], tenant: RedisTenant) -> str:
    """The operator's tier chain with the tenant's Redis credentials and ``index=true``."""
    out = []
    for text in tiers:
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in ("redis", "rediss", "redis+cluster"):
            out.append(text)
            continue
        parts = urlsplit(text)
        host = parts.netloc.rpartition("@")[2]
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "index"] + [("index", "true")]
        out.append(urlunsplit(parts._replace(netloc=f"{tenant.acl_user}:{tenant.password}@{host}",
                                             query=urlencode(query))))
    return "+".join(out)


def _acl_glob(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# -- object-store policies -----------------------------------------------------------------------
_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                   "s3:ListMultipartUploadParts"]


def _split_location(location: str, scheme: str) -> tuple[str, str]:
    text = location.split("://", 1)[1] if "://" in location else location
    bucket, _, prefix = text.partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,62}", bucket):
        raise ConfigError(f"{location!r} does not start with a valid bucket name "
                          f"(give {scheme}BUCKET/PREFIX)")
    return bucket, prefix.strip("/")


def user_prefix(user: str, prefix: str) -> str:
    """Where ``user``'s objects live under a store's prefix: ``<prefix>/<user>``."""
    validate_user(user)
    return f"{prefix}/{user}" if prefix else user


def s3_policy(user: str, location: str, *, principal: str | None = None) -> dict[str, Any]:
    """An IAM policy confining ``user``'s credentials to ``s3://BUCKET/PREFIX/<user>/``.

    Without ``principal``: an identity policy, to attach to the user's IAM user or role (IAM
    denies by default, so the two Allow statements are all they can do). With ``principal``
    (an ARN): a bucket policy that also denies that principal everything outside its prefix,
    whatever else its identity policies allow.
    """
    bucket, prefix = _split_location(location, "s3://")
    base = user_prefix(user, prefix)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    own = f"{bucket_arn}/{base}/*"
    listed = [base, f"{base}/", f"{base}/*"]
    who = {"Principal": {"AWS": principal}} if principal else {}
    statements: list[dict[str, Any]] = [
        {"Sid": "FlowcacheListOwnPrefix", "Effect": "Allow", **who, "Action": "s3:ListBucket",
         "Resource": bucket_arn, "Condition": {"StringLike": {"s3:prefix": listed}}},
        {"Sid": "FlowcacheOwnObjects", "Effect": "Allow", **who, "Action": _OBJECT_ACTIONS,
         "Resource": own},
    ]
    if principal:
        statements += [
            {"Sid": "FlowcacheDenyOtherObjects", "Effect": "Deny", **who,
             "Action": _OBJECT_ACTIONS, "NotResource": own},
            {"Sid": "FlowcacheDenyListingOthers", "Effect": "Deny", **who,
             "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringNotLike": {"s3:prefix": listed}}},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def gcs_policy(user: str, location: str, *, member: str | None = None) -> dict[str, Any]:
    """A GCS IAM binding (policy version 3) limited by an IAM condition to ``user``'s prefix.

    The condition confines reads, writes and deletes. GCS checks ``storage.objects.list`` on the
    bucket, which no object-name condition matches, so listing (needed by purge and gc) comes
    from a managed folder per user instead: see :func:`gcs_managed_folder_commands`.
    """
    bucket, prefix = _split_location(location, "gs://")
    base = user_prefix(user, prefix)
    member = member or f"serviceAccount:flowcache-{user}@PROJECT_ID.iam.gserviceaccount.com"
    expression = f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{base}/")'
    return {"version": 3, "bindings": [{
        "role": "roles/storage.objectUser", "members": [member],
        "condition": {"title": f"flowcache-{user}",
                      "description": f"flowcache user {user}: objects under {base}/ only",
                      "expression": expression}}]}


def gcs_managed_folder_commands(user: str, location: str, *, member: str | None = None
                                ) -> list[str]:
    """gcloud commands giving ``member`` its own managed folder (listing included)."""
    bucket, prefix = _split_location(location, "gs://")
    base = user_prefix(user, prefix)
    member = member or f"serviceAccount:flowcache-{user}@PROJECT_ID.iam.gserviceaccount.com"
    return [f"gcloud storage managed-folders create gs://{bucket}/{base}/",
            f"gcloud storage managed-folders add-iam-policy-binding gs://{bucket}/{base}/ "
            f"--member={member} --role=roles/storage.objectUser"]


# -- operators -----------------------------------------------------------------------------------
@dataclass
class NamespaceClearReport:
    user: str
    entries: int = 0  # durable entries removed
    hot: dict[str, int] = field(default_factory=dict)  # tier -> entries removed
    records: int = 0  # run markers and heartbeats removed


def clear_namespace(tiers: Sequence[Tier], user: str, *,
                    ledger: Ledger | None = None) -> NamespaceClearReport:
    """Remove every entry of ``user`` from ``tiers`` (durable last), by name only.

    For operators: nothing is read or deserialized, so no signing key is needed; each tier's
    ``purge_namespace`` removes what it keeps for the user (Redis: leases and the name index
    too). Each removal ends its residency in ``ledger`` (reason ``cleared``).
    """
    validate_user(user)
    report = NamespaceClearReport(user)
    durable = tiers[-1]
    for name in durable.purge_namespace(user):
        if is_entry_name(name):
            report.entries += 1
            if ledger is not None:
                ledger.removed(user, durable.name, name, "cleared")
        else:
            report.records += 1
    for tier in tiers[:-1]:
        names = [name for name in tier.purge_namespace(user) if is_entry_name(name)]
        report.hot[tier.name] = report.hot.get(tier.name, 0) + len(names)
        if ledger is not None:
            for name in names:
                ledger.removed(user, tier.name, name, "cleared")
    return report
