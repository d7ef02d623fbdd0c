"""Backend checksums: what an object store reports for an object, and the same sum of our bytes.

A write is confirmed by comparing the two (after the size): S3's ETag of a single-part upload
is the MD5 of the bytes, GCS reports MD5 (base64) and CRC32C. Backends that report nothing we
can recompute (multipart or SSE-KMS ETags) are confirmed by reading back instead.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


def checksum_claim(info: Mapping[str, Any]) -> tuple[str, str] | None:
    """The checksum a backend reports for an object, if we know how to recompute it."""
    crc = info.get("crc32c")
    if crc:
        return "crc32c", str(crc)
    md5 = info.get("md5Hash")
    if md5:
        return "md5-base64", str(md5)
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and all(ch in "0123456789abcdef" for ch in etag.lower()):
        return "md5-hex", etag.lower()  # single-part S3 upload without SSE-KMS
    return None


def compute_checksum(algorithm: str, chunks: Iterable[bytes | memoryview]) -> str:
    """``algorithm`` (as :func:`checksum_claim` names it) over the bytes of ``chunks``."""
    if algorithm == "crc32c":
        import google_crc32c

        crc = google_crc32c.Checksum()
        for chunk in chunks:
            crc.update(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
        return base64.b64encode(crc.digest()).decode()
    md5 = hashlib.md5(usedforsecurity=False)
    for chunk in chunks:
        md5.update(chunk)
    if algorithm == "md5-base64":
        return base64.b64encode(md5.digest()).decode()
    return md5.hexdigest()
