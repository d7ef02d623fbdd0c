"""Configuration: the one place the environment and config files are read, into typed values.

The store is described by a chain of tier URLs, fastest first, durable last::

    FLOWCACHE_STORE="memory+redis://127.0.0.1:6379/0+s3://bucket/prefix"

``+`` separates tiers (a ``+`` followed by a scheme or a path starts the next one). Tier options
go in each URL's query string: ``memory://?max_bytes=2GiB``,
``redis://host:6379/0?max_item_bytes=256MiB&prefix=fc:``, ``/var/cache/fc?fsync=false``.
With nothing set, the embedded default needs no server: ``memory`` plus a directory under the
user's cache dir.

Other settings (environment first, then ``[flowcache]`` in ``FLOWCACHE_CONFIG`` or
``~/.config/flowcache/config.toml``):

* ``FLOWCACHE_USER`` (default: the login name): owner and namespace of entries;
* ``FLOWCACHE_SIGNING_KEY`` (64 hex chars) or ``FLOWCACHE_SIGNING_KEY_FILE`` (default
  ``<keys dir>/<user>.key``, created on first use); ``FLOWCACHE_KEYS_DIR`` (default
  ``<config dir>/keys``);
* ``FLOWCACHE_STORAGE_OPTIONS``: JSON ``{"s3": {"endpoint_url": ...}, "gs": {...}}`` passed to
  fsspec for the object tier and for fingerprinting input files;
* ``FLOWCACHE_LOCKS``: ``auto`` (Redis leases when a Redis tier is configured, else file locks),
  ``redis``, ``file`` or ``thread``;
* ``FLOWCACHE_LEDGER``: ``auto`` (a stream in the store's Redis, else SQLite under the cache
  dir), ``sqlite``, ``redis``, a SQLite path, a ``redis://`` URL of its own, or ``off``;
* ``FLOWCACHE_CARBON_BUDGET`` (default ``5s``), ``FLOWCACHE_CARBON_RISK_AWARE`` (default
  true), ``FLOWCACHE_CARBON_TEAM_VIEW`` (default false): see :class:`CarbonSettings`.

Inside one process, ``with flowcache_user("alice"):`` (or ``use_store(store)``) makes another
user's store the default for the code it wraps, e.g. one flow's tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import re
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from flowcache.accounts.ledger import Ledger, RedisBackend, SQLiteBackend
from flowcache.buffers import use_huge_pages
from flowcache.errors import ConfigError, suggestion
from flowcache.identity import Identity, key_from_hex, load_or_create_key, validate_user
from flowcache.keys.fingerprints import Fingerprinter
from flowcache.locks import FileLocks, Locks, RedisLocks
from flowcache.store import TieredStore
from flowcache.tiers.spec import TierSpec, parse_store_spec, split_store_spec
from flowcache.units import parse_duration, parse_size

__all__ = ["SETTINGS", "CarbonSettings", "StoreConfig", "TierSpec", "default_store",
           "flowcache_user", "parse_size", "set_default_store", "split_store_spec",
           "store_for_user", "use_store"]

APP = "flowcache"
#: every setting, by its name in the TOML file (the variable is FLOWCACHE_<NAME upper-cased>)
SETTINGS = ("store", "user", "signing_key", "signing_key_file", "keys_dir", "storage_options",
            "locks", "lock_dir", "lock_lease", "ledger", "huge_pages",
            "carbon_budget", "carbon_risk_aware", "carbon_team_view")
#: variables that are not settings of a store: the config file's path
OTHER_VARIABLES = ("FLOWCACHE_CONFIG",)


@dataclass(frozen=True)
class StoreConfig:
    """Everything needed to build a :class:`TieredStore`, parsed once."""

    tiers: tuple[str, ...]
    user: str
    signing_key: bytes = field(repr=False)
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    locks: str = "auto"
    lock_dir: Path = field(default_factory=lambda: default_cache_dir() / "locks")
    #: how long a Redis lease lasts unrenewed: the longest wait after a producer is killed
    lock_lease: float = 30.0
    ledger: str = "auto"
    keys_dir: Path = field(default_factory=lambda: default_config_dir() / "keys")
    #: advise huge pages for large read buffers (process-wide; see flowcache.buffers)
    huge_pages: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        """The configuration of the environment (then the TOML file), checked strictly: an
        unknown variable or key, a bad value or a store chain that cannot work is a
        :class:`ConfigError` naming it, before anything is built."""
        setting = _settings(env)
        spec = setting("store") or default_store_spec()
        if isinstance(spec, list):
            tiers = tuple(str(text) for text in spec)
        elif isinstance(spec, str):
            tiers = tuple(split_store_spec(spec))
        else:
            raise ConfigError(f"store = {spec!r}: give a string or a list of tier URLs")
        parse_store_spec(tiers)  # fail here, at configuration time, not at the first write
        user = validate_user(setting("user") or _login_name())
        keys_dir = Path(setting("keys_dir") or default_config_dir() / "keys").expanduser()
        key_hex = setting("signing_key")
        if key_hex:
            key = key_from_hex(key_hex)
        else:
            key_file = setting("signing_key_file") or keys_dir / f"{user}.key"
            key = load_or_create_key(Path(key_file).expanduser())
        options = _storage_options(setting("storage_options"))
        locks = str(setting("locks", "auto")).lower()
        if locks not in ("auto", "redis", "file", "thread"):
            raise ConfigError(f"FLOWCACHE_LOCKS={locks!r}: use auto, redis, file or thread "
                              "(e.g. FLOWCACHE_LOCKS=auto)")
        lock_dir = Path(setting("lock_dir") or default_cache_dir() / "locks").expanduser()
        lease = parse_duration(setting("lock_lease", 30.0), "FLOWCACHE_LOCK_LEASE")
        if lease < 1:
            raise ConfigError(f"FLOWCACHE_LOCK_LEASE={setting('lock_lease')!r} is under a "
                              "second: a lease is renewed every third of it; use e.g. 30s")
        ledger = str(setting("ledger", "auto")).strip()
        if ledger.lower() in ("auto", "off", "sqlite", "redis"):
            ledger = ledger.lower()
        elif not ledger:
            raise ConfigError("FLOWCACHE_LEDGER is empty: use auto, off, sqlite, redis, a path "
                              "or a redis:// URL")
        huge_pages = setting("huge_pages", False)
        if not isinstance(huge_pages, bool):
            huge_pages = _boolean(str(huge_pages), "FLOWCACHE_HUGE_PAGES")
        return cls(tiers=tiers, user=user, signing_key=key, storage_options=options,
                   locks=locks, lock_dir=lock_dir, lock_lease=lease, ledger=ledger,
                   keys_dir=keys_dir, huge_pages=huge_pages)

    def for_user(self, user: str, signing_key: bytes | None = None) -> StoreConfig:
        """This configuration as ``user``: their namespace, and their key (or key file)."""
        validate_user(user)
        if signing_key is None:
            signing_key = (self.signing_key if user == self.user
                           else load_or_create_key(self.keys_dir / f"{user}.key"))
        return dataclasses.replace(self, user=user, signing_key=signing_key)

    @property
    def identity(self) -> Identity:
        return Identity(self.user, self.signing_key)

    def fingerprinter(self) -> Fingerprinter:
        return Fingerprinter(self.storage_options)

    def build(self) -> TieredStore:
        use_huge_pages(self.huge_pages)
        tiers = [spec.build(self.storage_options) for spec in parse_store_spec(self.tiers)]
        store = TieredStore(tiers, identity=self.identity, locks=self._locks(tiers),
                            storage_options=self.storage_options)
        store.config = self
        ledger = self.build_ledger(tiers)
        if ledger is not None:
            ledger.attach(store)
        return store

    def build_ledger(self, tiers: list[Any] | None = None) -> Ledger | None:
        """The ledger this configuration names (``tiers``: the store's, to reuse its Redis)."""
        if self.ledger == "off":
            return None
        if tiers is None:
            tiers = [spec.build(self.storage_options) for spec in parse_store_spec(self.tiers)
                     if spec.kind == "redis"]
        redis_tier = next((t for t in tiers if t.name == "redis"), None)
        if self.ledger in ("auto", "redis") and redis_tier is not None:
            return Ledger(RedisBackend(redis_tier.client, prefix=redis_tier.prefix))
        if self.ledger == "redis":
            raise ConfigError("FLOWCACHE_LEDGER=redis needs a redis tier in FLOWCACHE_STORE "
                              "(or give the ledger its own redis:// URL)")
        if self.ledger.split("://", 1)[0] in ("redis", "rediss", "unix"):
            tier = TierSpec.parse(self.ledger, "FLOWCACHE_LEDGER").build()
            return Ledger(RedisBackend(tier.client, prefix=tier.prefix))
        if self.ledger in ("auto", "sqlite"):
            return Ledger(SQLiteBackend(default_cache_dir() / "ledger.sqlite3"))
        path = self.ledger.removeprefix("sqlite://")
        return Ledger(SQLiteBackend(Path(path).expanduser()))

    def _locks(self, tiers: list[Any]) -> Locks | None:
        if self.locks == "thread":
            return None
        files = FileLocks(self.lock_dir)
        redis_tier = next((t for t in tiers if t.name == "redis"), None)
        if self.locks == "redis" and redis_tier is None:
            raise ConfigError("FLOWCACHE_LOCKS=redis needs a redis tier in FLOWCACHE_STORE")
        if redis_tier is not None and self.locks in ("auto", "redis"):
            return RedisLocks(redis_tier.client, prefix=f"{redis_tier.prefix}lock:",
                              lease=self.lock_lease, fallback=files)
        return files


@dataclass(frozen=True)
class CarbonSettings:
    """The operator's settings for carbon-aware work (a runner's own arguments win)."""

    #: wall time all of one flow's carbon decisions may spend waiting for the provider
    #: (and as much again for its flow-end accounting); past it, work runs now at home
    budget: float = 5.0
    #: defer or move work only when its chance of turning out worse than running now is at
    #: most this (True: the default tolerance, 0.25; False: not risk-aware)
    risk_aware: bool | float = True
    #: ``flowcache carbon report --since`` may show every user's records, not only one's own
    team_view: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CarbonSettings:
        setting = _settings(env)
        budget = parse_duration(setting("carbon_budget", cls.budget), "FLOWCACHE_CARBON_BUDGET")
        if budget <= 0:
            raise ConfigError("FLOWCACHE_CARBON_BUDGET must be above zero (e.g. 5s): with no "
                              "time for decisions, use no carbon-aware runner")
        team = setting("carbon_team_view", cls.team_view)
        team = team if isinstance(team, bool) else _boolean(str(team),
                                                            "FLOWCACHE_CARBON_TEAM_VIEW")
        return cls(budget=budget, risk_aware=_risk(setting("carbon_risk_aware", True)),
                   team_view=team)


def _risk(value: Any) -> bool | float:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return _boolean(text, "FLOWCACHE_CARBON_RISK_AWARE")
    try:
        tolerance = float(text)
    except ValueError:
        tolerance = float("nan")
    if not 0.0 < tolerance <= 0.5:
        raise ConfigError(f"FLOWCACHE_CARBON_RISK_AWARE={value!r}: give true, false, or the "
                          "chance of a move turning out worse that is tolerated, above 0 and "
                          "at most 0.5 (e.g. 0.25; 0.05 for the top of the 90 % interval)")
    return tolerance


def _settings(env: Mapping[str, str] | None) -> Any:
    """A reader of settings: the environment first, then the config file; names checked."""
    env = os.environ if env is None else env
    file_settings = _read_config_file(env)
    _check_names(env, file_settings)

    def setting(name: str, default: Any = None) -> Any:
        value = env.get(f"FLOWCACHE_{name.upper()}")
        return value if value is not None else file_settings.get(name, default)

    return setting


def _check_names(env: Mapping[str, str], file_settings: Mapping[str, Any]) -> None:
    """Unknown ``FLOWCACHE_*`` variables and TOML keys are typos: say which, and the fix."""
    known = {f"FLOWCACHE_{name.upper()}" for name in SETTINGS} | set(OTHER_VARIABLES)
    for name in env:
        if name.startswith("FLOWCACHE_") and name not in known:
            raise ConfigError(f"{name} is not a flowcache setting"
                              f"{suggestion(name, sorted(known))}; the settings are "
                              f"{', '.join(sorted(known))}")
    for key in file_settings:
        if key not in SETTINGS:
            raise ConfigError(f"[flowcache] {key} = ... in the config file is not a setting"
                              f"{suggestion(key, SETTINGS)}; the keys are {', '.join(SETTINGS)}")


def _boolean(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} takes true or false (e.g. {name}=false)")


def _storage_options(value: Any) -> dict[str, dict[str, Any]]:
    if not value:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"FLOWCACHE_STORAGE_OPTIONS is not JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError("storage options map a protocol to its options: "
                          '{"s3": {"endpoint_url": ...}}')
    return value


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP))


def default_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def default_store_spec() -> str:
    return f"memory+{default_cache_dir() / 'store'}"


def _login_name() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "default"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "default"


def _read_config_file(env: Mapping[str, str]) -> dict[str, Any]:
    path = Path(env.get("FLOWCACHE_CONFIG") or default_config_dir() / "config.toml").expanduser()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if env.get("FLOWCACHE_CONFIG"):
            raise ConfigError(f"FLOWCACHE_CONFIG points to {path}, which does not exist") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return dict(data.get("flowcache", {}))


_DEFAULT: TieredStore | None = None
_DEFAULT_LOCK = threading.Lock()


def default_store() -> TieredStore:
    """The store in effect: ``use_store``'s, else the process-wide one built from the
    environment (built once, on first use)."""
    global _DEFAULT
    current = _CURRENT.get()
    if current is not None:
        return current
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = StoreConfig.from_env().build()
    return _DEFAULT


def set_default_store(store: TieredStore | None) -> None:
    """Replace (or with None, forget) the process-wide store."""
    global _DEFAULT
    _DEFAULT = store


_CURRENT: ContextVar[TieredStore | None] = ContextVar("flowcache_store", default=None)
_USER_STORES: dict[tuple[str, bytes, tuple[str, ...]], TieredStore] = {}


@contextlib.contextmanager
def use_store(store: TieredStore) -> Iterator[TieredStore]:
    """Make ``store`` the default (what ``cache()`` uses) for the code inside the block.

    A context variable: it follows the code into Prefect's task threads and asyncio tasks
    started inside the block, and leaves other threads and flows alone.
    """
    token = _CURRENT.set(store)
    try:
        yield store
    finally:
        _CURRENT.reset(token)


def store_for_user(user: str, *, signing_key: bytes | None = None,
                   config: StoreConfig | None = None) -> TieredStore:
    """The environment's store as ``user`` (their namespace and key), built once per user."""
    base = config or getattr(default_store(), "config", None) or StoreConfig.from_env()
    wanted = base.for_user(user, signing_key)
    slot = (wanted.user, wanted.signing_key, wanted.tiers)
    with _DEFAULT_LOCK:
        store = _USER_STORES.get(slot)
        if store is None:
            store = _USER_STORES[slot] = wanted.build()
    return store


@contextlib.contextmanager
def flowcache_user(user: str, *, signing_key: bytes | None = None) -> Iterator[TieredStore]:
    """Cache as ``user`` inside the block: ``with flowcache_user("alice"): pipeline()``.

    The key is ``signing_key`` or ``<keys dir>/<user>.key``; the tiers and their credentials
    stay the environment's. A tenant confined by Redis ACLs runs with their own
    ``FLOWCACHE_STORE`` instead (per deployment: see docs/operators.md).
    """
    with use_store(store_for_user(user, signing_key=signing_key)) as store:
        yield store
