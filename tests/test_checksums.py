"""Backend checksums: the claims we recognise and the sums we recompute, over chunks."""

from __future__ import annotations

import base64
import hashlib

from flowcache.checksums import checksum_claim, compute_checksum


def test_claims_are_recognised_by_what_the_backend_reports():
    assert checksum_claim({"crc32c": "4waSgw=="}) == ("crc32c", "4waSgw==")
    assert checksum_claim({"md5Hash": "kAFQmDzST7DWlj99KOF/cg=="}) == (
        "md5-base64", "kAFQmDzST7DWlj99KOF/cg==")
    assert checksum_claim({"ETag": '"900150983CD24FB0D6963F7D28E17F72"'}) == (
        "md5-hex", "900150983cd24fb0d6963f7d28e17f72")
    assert checksum_claim({"ETag": '"9b2cf535f27731c974343645a3985328-2"'}) is None  # multipart
    assert checksum_claim({}) is None


def test_sums_over_chunks_equal_the_sums_of_the_whole():
    chunks = [b"12345", memoryview(b"6789")]
    assert compute_checksum("crc32c", chunks) == "4waSgw=="  # CRC-32C check value 0xE3069283
    whole = hashlib.md5(b"123456789", usedforsecurity=False)
    assert compute_checksum("md5-hex", iter(chunks)) == whole.hexdigest()
    assert compute_checksum("md5-base64", chunks) == base64.b64encode(whole.digest()).decode()
