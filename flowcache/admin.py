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

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowcache.accounts.ledger import Ledger
from flowcache.errors import ConfigError
from flowcache.identity import is_entry_name, validate_user
from flowcache.locks import load_library
from flowcache.tiers.base import Tier

# -- Redis ACLs ----------------------------------------------------------------------------------
#: what the tiers and locks send: GET/SET/GETRANGE/EXISTS/DEL/PTTL for frames, SADD/SREM/SSCAN
#: for the index, SET NX + FCALL of flowcache's function library (loaded by the operator) for
#: leases, SELECT for a database. Never EVAL: a tenant's endless script would make Redis
#: answer BUSY to every tenant; FCALL runs only the operator's code.
TENANT_COMMANDS = ("ping", "select", "get", "set", "getrange", "exists", "del", "pttl",
                   "pexpire", "sadd", "srem", "sscan", "fcall")
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
            "-@all", *[f"+{command}" for command in TENANT_COMMANDS],
            f"({ledger} -@all {' '.join(f'+{c}' for c in LEDGER_COMMANDS)})"]


@dataclass(frozen=True)
class RedisTenant:
    """What provisioning made: the ACL user and its (only ever printed once) password."""

    user: str
    acl_user: str
    password: str = field(repr=False)
    rules: tuple[str, ...]
    persisted: bool  # ACL SAVE wrote the server's ACL file


def provision_redis_user(client: Any, user: str, *, prefix: str = "flowcache:",
                         password: str | None = None) -> RedisTenant:
    """Create (or reset) ``user``'s Redis ACL user through an admin connection, and load the
    function library its leases call (tenants may FCALL it, never EVAL)."""
    load_library(client)
    password = password or secrets.token_urlsafe(32)
    rules = tenant_acl_rules(user, hashlib.sha256(password.encode()).hexdigest(), prefix)
    acl_user = acl_username(user)
    client.execute_command("ACL", "SETUSER", acl_user, *rules)
    return RedisTenant(user, acl_user, password, tuple(rules), _acl_save(client))


def remove_redis_user(client: Any, user: str) -> bool:
    """Delete ``user``'s ACL user (their keys stay; ``clear_namespace`` removes those)."""
    removed = bool(client.execute_command("ACL", "DELUSER", acl_username(user)))
    _acl_save(client)
    return removed


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
