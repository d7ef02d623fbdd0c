"""Identities: who owns an entry, and the key that signs (and so authenticates) their frames.

Every frame carries its owner's name and a blake3 MAC keyed with the owner's 32-byte signing key.
A reader checks the owner and the MAC before anything is unpickled, so bytes planted in a bucket
by someone without the key are rejected, never executed (DESIGN invariant 4).
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from flowcache.errors import ConfigError

KEY_BYTES = 32
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    if not _USER_NAME.match(name):
        raise ConfigError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


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
    key = new_key()
    tmp = path.with_suffix(f".tmp-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    try:
        os.link(tmp, path)  # another process may have created it meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return key_from_hex(path.read_text())
