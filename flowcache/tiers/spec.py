"""Store specs: a chain of tier URLs, parsed and checked strictly before anything is built.

::

    memory+redis://127.0.0.1:6379/0?max_item_bytes=256MiB+s3://bucket/prefix

``+`` separates tiers (a ``+`` followed by a scheme or a path starts the next one). Each tier is
a registered scheme (``memory``, ``node``, ``redis://``... or one added with ``register_tier``),
an fsspec URL of an object store (``s3://BUCKET/prefix``, ``gs://``, ``file://``...) or a local
path (absolute, ``~/...``, ``./...``). Each tier's query string sets the options its class
declares (``url_options``), plus those its backend takes as they are (``url_passthrough``,
e.g. redis-py's ``socket_keepalive``).

A typo must stop the run, not move the data: an unknown scheme, a bare word that is neither a
tier nor a path (``memroy``), an object store URL without a bucket (``s3://``, which would
otherwise become a local folder named ``s3:``), an unknown option or a bad value, a chain
without a durable tier or with it anywhere but last: each is a
:class:`~flowcache.errors.ConfigError` naming the setting, the bad value and a correct example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fsspec.registry import known_implementations, registry

from flowcache.errors import ConfigError, suggestion
from flowcache.tiers import TIER_REGISTRY, is_registered, tier_class
from flowcache.tiers.base import Tier
from flowcache.units import parse_duration, parse_size

_SPLIT = re.compile(r"\+(?=[A-Za-z][A-Za-z0-9.-]*(?:://|\?|\+|$)|[/~.])")
_CLUSTER = "redis+cluster://"
_CLUSTER_STAND_IN = "redis-cluster.flowcache-spec://"
EXAMPLE = "FLOWCACHE_STORE='memory+redis://127.0.0.1:6379/0+s3://bucket/prefix'"


def split_store_spec(spec: str, setting: str = "FLOWCACHE_STORE") -> list[str]:
    """The tier URLs of a spec, fastest first."""
    # the one scheme with a '+' in it, hidden behind a scheme-shaped stand-in while splitting
    # (so that the '+' before it still starts a new tier: memory+redis+cluster://...)
    protected = spec.strip().replace(_CLUSTER, _CLUSTER_STAND_IN)
    parts = [part.strip().replace(_CLUSTER_STAND_IN, _CLUSTER)
             for part in _SPLIT.split(protected) if part.strip()]
    if not parts:
        raise ConfigError(f"{setting} is empty; give a chain of tiers, e.g. {EXAMPLE}")
    return parts


@dataclass(frozen=True)
class TierSpec:
    """One tier of a store spec: the scheme that picks its class, its URL and its options."""

    scheme: str  # a registered scheme ("memory", "redis", "node"...) or "object"
    url: str  # the URL handed to the backend, our options removed
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The tier's class name in words: ``memory``, ``node``, ``redis``, ``object``..."""
        return tier_class(self.scheme).name

    @property
    def tier_class(self) -> type[Tier]:
        return tier_class(self.scheme)

    @property
    def durable(self) -> bool:
        return bool(self.tier_class.durable)

    @classmethod
    def parse(cls, text: str, setting: str = "FLOWCACHE_STORE") -> TierSpec:
        scheme = _scheme_of(text, setting)
        tier = tier_class(scheme)
        base, _, query = text.partition("?")
        try:
            tier.check_url(base)
        except ConfigError as exc:
            raise ConfigError(f"{setting}: {exc}") from None
        allowed: Mapping[str, str] = tier.url_options
        passthrough = getattr(tier, "url_passthrough", frozenset())
        ours: dict[str, Any] = {}
        rest: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in allowed:
                ours[name] = _convert(value, allowed[name], f"{setting}: {base} option {name}")
            elif name in passthrough:
                rest.append((name, value))
            else:
                known = sorted([*allowed, *passthrough])
                hint = suggestion(name, known)
                raise ConfigError(
                    f"{setting}: {base} has no option {name!r}{hint}; its options are "
                    f"{', '.join(known) or 'none'} (e.g. memory?max_bytes=2GiB, "
                    "redis://host:6379/0?max_item_bytes=64MiB)")
        url = base + (f"?{urlencode(rest)}" if rest else "")
        return cls(scheme, url, ours)

    def build(self, storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> Tier:
        """The tier this spec names, with the store's storage options (per protocol)."""
        return self.tier_class.from_url(self.url, storage_options=storage_options or {},
                                        **self.options)


def parse_store_spec(spec: str | Sequence[str], setting: str = "FLOWCACHE_STORE"
                     ) -> list[TierSpec]:
    """Every tier of a spec, checked: one durable tier, and it comes last."""
    texts = split_store_spec(spec, setting) if isinstance(spec, str) else list(spec)
    if not texts:
        raise ConfigError(f"{setting} is empty; give a chain of tiers, e.g. {EXAMPLE}")
    specs = [TierSpec.parse(text, setting) for text in texts]
    durable = [spec for spec in specs if spec.durable]
    if not durable:
        raise ConfigError(f"{setting}={'+'.join(texts)!r} has no durable tier: end the chain "
                          f"with a directory or an object store, e.g. {EXAMPLE}")
    if len(durable) > 1 or not specs[-1].durable:
        raise ConfigError(f"{setting}={'+'.join(texts)!r}: exactly one durable tier (a "
                          "directory or object store) and it must come last, after the hot "
                          f"tiers, e.g. {EXAMPLE}")
    return specs


def _scheme_of(text: str, setting: str) -> str:
    """The registry scheme that builds ``text``'s tier (``object`` for fsspec's stores)."""
    base = text.partition("?")[0]
    if "://" in base:
        scheme = base.split("://", 1)[0].lower()
        if scheme == "memory" and urlsplit(base).path not in ("", "/"):
            return "object"  # memory://bucket/path is fsspec's in-memory filesystem
        if is_registered(scheme):
            return scheme
        if scheme in known_implementations or scheme in registry:
            return "object"
        known = sorted({*TIER_REGISTRY, "file", "s3", "gs"})
        raise ConfigError(f"{setting}: unknown tier scheme {scheme!r} in {base!r}"
                          f"{suggestion(scheme, known)}; use one of {', '.join(known)} "
                          f"(or any fsspec protocol), e.g. {EXAMPLE}")
    word = base.strip()
    if is_registered(word.lower()):
        return word.lower()
    if word.startswith(("/", "~", ".")) or "/" in word:
        return "object"  # a local directory
    hint = suggestion(word.lower(), sorted(TIER_REGISTRY))
    raise ConfigError(f"{setting}: {word!r} is neither a tier ({', '.join(sorted(TIER_REGISTRY))})"
                      f" nor a path{hint}; for a directory here write ./{word}, e.g. {EXAMPLE}")


def _convert(value: str, kind: str, name: str) -> Any:
    if kind == "size":
        return parse_size(value, name)
    if kind == "duration":
        return parse_duration(value, name)
    if kind == "bool":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} takes true or false, not {value!r}")
    if kind in ("int", "float"):
        try:
            number = int(value) if kind == "int" else float(value)
        except ValueError:
            raise ConfigError(f"{name} takes a number, not {value!r}") from None
        if number < 0:
            raise ConfigError(f"{name} must not be negative, got {value!r}")
        return number
    if kind == "str":
        return value
    raise ConfigError(f"{name}: unknown option kind {kind!r} (a tier class's url_options)")
