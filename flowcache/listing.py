"""Listing a user's durable entries with their unverified headers, for sweeps and operators.

``gc``, ``clear --older-than`` and ``ls`` decide from headers alone (a lifetime, a creation
time, a flow), reading a few hundred bytes per entry instead of whole objects. A header is only
believed when the stored object can hold what it claims: one that does not parse, or whose
payload size does not match the object's real size (a truncated write, a crafted frame), is
reported as unreadable, so a sweep removes it instead of keeping it forever.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowcache.errors import CorruptEntry
from flowcache.frames import HEADER_PROBE_BYTES, TAIL_BYTES, Header, header_length, peek_header
from flowcache.identity import is_entry_name
from flowcache.tiers.base import Tier


def entry_headers(durable: Tier, namespace: str, prefix: str = ""
                  ) -> Iterator[tuple[str, Header | None]]:
    """(name, unverified header) of each entry of ``namespace`` under ``prefix``; None for an
    unreadable one. Nothing is deserialized from these headers."""
    for name, size in durable.scan_sizes(f"{namespace}/{prefix}"):
        if not is_entry_name(name):
            continue
        head = durable.head(name, HEADER_PROBE_BYTES)
        if head is None:
            continue  # deleted since the listing
        try:
            needed = header_length(head)
            if needed > len(head):  # a long header (much metadata): read all of it
                head = durable.head(name, needed) or head
            header = peek_header(head)
        except CorruptEntry:
            yield name, None
            continue
        if size is not None and size != needed + header.size + TAIL_BYTES:
            yield name, None  # truncated, padded or a crafted size: never trusted
            continue
        yield name, header
