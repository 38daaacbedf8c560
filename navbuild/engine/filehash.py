"""Digests of files that are not re-read while unchanged: the store's objects, materialized outputs
and the project's sources are hashed once, then trusted by their stat signature."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import msgpack

from navbuild.engine.atomic import atomic_write
from navbuild.hashing import digest_file


class FileHashCache:
    """Digests of files keyed by (size, mtime_ns, ctime_ns, inode), as git's index does: an unchanged
    file is never re-read. ctime is in the key because no one can set it back: a file rewritten with
    its old mtime restored is re-hashed. An entry is not trusted when the file changed within the
    last two seconds of its hashing, since a write in the same clock tick could leave the stat
    unchanged ("racy git")."""

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path, tmp_dir: Callable[[], Path] | None = None) -> None:
        self.path = path
        self.tmp_dir = tmp_dir
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError, msgpack.UnpackException):
            entries = msgpack.unpackb(path.read_bytes(), raw=False)
            if isinstance(entries, dict):
                self.entries = entries

    @staticmethod
    def signature(stat: os.stat_result) -> list[int]:
        return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]

    def digest(self, path: Path) -> str:
        stat = path.stat()
        signature = self.signature(stat)
        entry = self.entries.get(str(path))
        if entry and entry[:4] == signature and len(entry) == 5:
            return entry[4]
        value = digest_file(path)
        self.remember(path, value, stat)
        return value

    def remember(self, path: Path, digest: str, stat: os.stat_result | None = None) -> None:
        stat = stat or path.stat()
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > self.RACY_NS:
            self.entries[str(path)] = [*self.signature(stat), digest]
            self.dirty = True

    def forget(self, path: Path) -> None:
        if self.entries.pop(str(path), None) is not None:
            self.dirty = True

    def forget_missing(self) -> None:
        """Drop the entries of files that no longer exist (``gc``)."""
        kept = {name: entry for name, entry in self.entries.items() if os.path.exists(name)}
        self.dirty = self.dirty or len(kept) != len(self.entries)
        self.entries = kept

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):  # a cache: losing it costs a re-hash, never a wrong answer
                tmp = self.tmp_dir() if self.tmp_dir else None
                atomic_write(self.path, msgpack.packb(self.entries, use_bin_type=True), tmp, durable=False)
            self.dirty = False
