"""Digests: xxh3-128 of bytes, files and canonical msgpack encodings of key material."""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import xxhash

CHUNK = 1 << 20
DIGEST_CHARS = frozenset("0123456789abcdef")


def is_digest(value: object) -> bool:
    """32 lowercase hex digits: what every digest and key navbuild writes looks like."""
    return isinstance(value, str) and len(value) == 32 and DIGEST_CHARS.issuperset(value)


OUTPUT_DIGEST_KINDS = "cm"  # a rule's canonical digest, or one with the model's identity mixed in


def is_output_digest(value: object) -> bool:
    """A target's output digest: a digest, or ``c``/``m`` and 31 hex digits (``engine/digests.py``)."""
    if isinstance(value, str) and len(value) == 32 and value[:1] in OUTPUT_DIGEST_KINDS:
        return DIGEST_CHARS.issuperset(value[1:])
    return is_digest(value)


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_file(path: Path) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def copy_with_digest(source: BinaryIO, dest: BinaryIO, limit: int) -> str:
    """Copy a stream while hashing it; ValueError once more than ``limit`` bytes came."""
    hasher = xxhash.xxh3_128()
    copied = 0
    while chunk := source.read(CHUNK):
        copied += len(chunk)
        if copied > limit:
            raise ValueError(f"more than {limit} bytes")
        hasher.update(chunk)
        dest.write(chunk)
    return hasher.hexdigest()


_PLAIN = (str, int, float, bool, type(None), bytes)


def _canonical(value: Any) -> Any:
    """Sorted dicts, tuples as lists, paths as posix text: one encoding per meaning."""
    kind = type(value)
    if kind in _PLAIN:  # the common case first: every key of every target is encoded on a no-op
        return value
    if kind is dict and all(type(k) is str for k in value):
        return [[k, _canonical(value[k])] for k in sorted(value)]
    if isinstance(value, dict):
        return [[str(k), _canonical(value[k])] for k in sorted(value, key=str)]
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, float) and value.is_integer():
        return value  # keep 1.0 and 1 distinct: msgpack encodes them differently anyway
    return value


def canonical_bytes(value: Any) -> bytes:
    return msgpack.packb(_canonical(value), use_bin_type=True)


def digest_value(value: Any) -> str:
    """The key of a structure: xxh3-128 over its canonical msgpack encoding."""
    return digest_bytes(canonical_bytes(value))


def tree_digest(files: dict[str, str]) -> str:
    """One digest for a set of output files (relative name -> content digest)."""
    return digest_value(sorted(files.items()))
