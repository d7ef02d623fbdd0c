"""Content keys: how a call becomes the key its result is stored under.

:mod:`~flowcache.keys.canonical` hashes values canonically (blake3, type-tagged), numpy and
pandas values by content rather than memory layout (:mod:`~flowcache.keys.arrays`,
:mod:`~flowcache.keys.tables`);
:mod:`~flowcache.keys.code` gives a function's identity (its source and the project helpers it
calls); :mod:`~flowcache.keys.fingerprints` identifies a file's version without reading it;
:mod:`~flowcache.keys.provenance` chains a downstream key to an upstream result's key.
"""

from flowcache.keys.canonical import KeyBuilder, content_key, hash_inputs, register_hasher
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef, Fingerprinter

__all__ = ["FileRef", "Fingerprinter", "KeyBuilder", "content_key", "function_identity",
           "hash_inputs", "register_hasher"]
