"""Identity: users, their signing keys, and the names their entries have in every tier.

Every frame carries its owner's name and a blake3 MAC keyed with the owner's 32-byte signing key.
A reader checks the owner and the MAC before anything is unpickled, so bytes planted in a bucket
by someone without the key are rejected, never executed (DESIGN invariant 4).

A user's namespace is their name, the first segment of every name they store. Names are made
here and nowhere else, from a validated user and a validated key or run id, so no text a user
typed ever reaches a tier as a path of its own making (no ``..``, no ``/`` inside a segment):

* an entry: ``<namespace>/<first two hex digits of the key>/<key>``;
* a flow run's records: ``<namespace>/_runs/<run id>/<key>`` (a marker per flow-scoped entry)
  and ``<namespace>/_runs/<run id>/_proc-<host>-<pid>`` (a process's heartbeat).

This is the ground floor: it imports nothing of flowcache but its errors.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from flowcache.errors import ConfigError, ForeignNamespace, InvalidName

KEY_BYTES = 32
RUNS = "_runs"
PROCESS_PREFIX = "_proc-"
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_PROCESS = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True)
class Identity:
    """A user: a name (also their namespace in every tier) and a signing key."""

    user: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        validate_user(self.user)
        if len(self.key) != KEY_BYTES:
            raise ConfigError(f"a signing key must be {KEY_BYTES} bytes, got {len(self.key)}")

    @property
    def namespace(self) -> str:
        return self.user


def validate_user(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name) or ".." in name:
        raise ConfigError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (and no '..')"
        )
    return name


# -- names ---------------------------------------------------------------------------------------
def validate_key(key: str) -> str:
    """A content key: 64 lowercase hex digits (a blake3 digest), nothing else."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidName(f"{key!r} is not a content key (64 lowercase hex digits); keys come "
                          "from flowcache.keys (content_key, KeyRecipe), never from free text")
    return key


def validate_run_id(run_id: str) -> str:
    """A flow run id (a Prefect UUID, ``dask-<client id>``): one safe path segment."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise InvalidName(f"{run_id!r} is not a usable run id: use 1-128 letters, digits, "
                          "'_', '.', ':' or '-', starting with a letter or digit (and no '..')")
    return run_id


def entry_name(namespace: str, key: str) -> str:
    """Where ``key`` of ``namespace`` lives in every tier: ``<namespace>/<2 hex>/<key>``."""
    validate_user(namespace)
    validate_key(key)
    return f"{namespace}/{key[:2]}/{key}"


def is_entry_name(name: str) -> bool:
    """Whether ``name`` is an entry's (not a run record, a lock or a temporary file)."""
    parts = name.split("/")
    return len(parts) == 3 and parts[2][:2] == parts[1] and bool(_KEY.match(parts[2]))


def key_of(name: str) -> str:
    """The key of an entry name (its last segment)."""
    return name.rpartition("/")[2]


def namespace_of(name: str) -> str:
    """The namespace (owner) of any stored name: its first segment."""
    return name.partition("/")[0]


def runs_prefix(namespace: str) -> str:
    """The prefix under which ``namespace`` keeps its flow runs' records."""
    return f"{validate_user(namespace)}/{RUNS}/"


def run_prefix(namespace: str, run_id: str) -> str:
    """The prefix of one run's records: ``<namespace>/_runs/<run id>/``."""
    return f"{runs_prefix(namespace)}{validate_run_id(run_id)}/"


def run_marker_name(namespace: str, run_id: str, key: str) -> str:
    """The marker saying entry ``key`` is an intermediate of ``run_id``."""
    return f"{run_prefix(namespace, run_id)}{validate_key(key)}"


def process_record_name(namespace: str, run_id: str, process: str) -> str:
    """A process's heartbeat record in a run (``process`` is ``<host>-<pid>``)."""
    if not _PROCESS.match(process) or ".." in process:
        raise InvalidName(f"{process!r} is not a usable process name")
    return f"{run_prefix(namespace, run_id)}{PROCESS_PREFIX}{process}"


def check_namespace(name: str, identity: Identity) -> str:
    """``name`` if it lies in ``identity``'s namespace, else :class:`ForeignNamespace`."""
    if namespace_of(name) != identity.namespace or "/" not in name:
        raise ForeignNamespace(name, identity.user)
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidName(f"{name!r} has an empty, '.' or '..' segment")
    return name


# -- signing keys --------------------------------------------------------------------------------
def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def key_from_hex(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError("a signing key must be 64 hexadecimal characters") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"a signing key must be {KEY_BYTES} bytes (64 hex characters)")
    return key


def load_or_create_key(path: Path) -> bytes:
    """Read a hex key file, creating it (mode 0600) on first use.

    The embedded default keeps one key per user in their config directory, so a single-user
    setup signs its frames without any set-up; shared stores configure keys explicitly.
    """
    try:
        return key_from_hex(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_key_file(path, new_key())
    try:
        os.link(tmp, path)  # another process may have created it meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return key_from_hex(path.read_text())


def write_key(path: Path, key: bytes, *, replace: bool = False) -> Path:
    """Write ``key`` as a hex key file (mode 0600); refuse to replace one unless asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} already holds a signing key; pass replace=True to rotate "
                              "it (frames signed with the old key then read as corrupt)")
    os.replace(_write_key_file(path, key), path)
    return path


def _write_key_file(path: Path, key: bytes) -> Path:
    """A new temporary key file (mode 0600) beside ``path``."""
    tmp = path.with_suffix(f".tmp-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return tmp
