"""The content-addressed store: objects by content digest, an action cache, per-key locks.

Layout under the store root (``.navbuild/`` by default)::

    objects/ab/cdef...     file contents, named by their xxh3-128 digest (read-only once written)
    actions/ab/cdef...     action key -> manifest (msgpack)
    targets/<target>       the last key and key material of each target (status, explain)
    cache/<rule>/<device>  caches that rules keep between builds (timing caches, compile caches)
    locks/, tmp/           per-key build locks; staging space on the same file system

Every write is temp file + fsync + rename, so a crash or a full disk never leaves a partial object
or manifest under its final name, and several processes (or machines on a shared file system) can
use one store. The store, not doit's dependency file, decides what is built.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import msgpack

from navbuild.hashing import copy_with_digest, digest_bytes, digest_file, is_digest

MANIFEST_SCHEMA = 1


class CorruptObject(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(dest: Path, data: bytes, tmp_dir: Path | None = None, durable: bool = True) -> None:
    """Write ``dest`` whole or not at all; ``durable`` also survives a power cut (fsync)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(dest.parent)


def safe_name(target: str) -> str:
    return target.replace(":", "--").replace("/", "_")


class FileHashCache:
    """Digests of files keyed by (size, mtime_ns, inode), as git's index does: an unchanged file is
    never re-read. An entry is not trusted when the file changed within the last two seconds of its
    hashing, since a write in the same clock tick could leave the stat unchanged ("racy git")."""

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError, msgpack.UnpackException):
            self.entries = msgpack.unpackb(path.read_bytes(), raw=False)

    def digest(self, path: Path) -> str:
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        key = str(path)
        entry = self.entries.get(key)
        if entry and entry[:3] == signature:
            return entry[3]
        value = digest_file(path)
        self.remember(path, value, stat)
        return value

    def remember(self, path: Path, digest: str, stat: os.stat_result | None = None) -> None:
        stat = stat or path.stat()
        if time.time_ns() - stat.st_mtime_ns > self.RACY_NS:
            self.entries[str(path)] = [stat.st_size, stat.st_mtime_ns, stat.st_ino, digest]
            self.dirty = True

    def forget(self, path: Path) -> None:
        if self.entries.pop(str(path), None) is not None:
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):  # a cache: losing it costs a re-hash, never a wrong answer
                atomic_write(self.path, msgpack.packb(self.entries, use_bin_type=True), durable=False)
            self.dirty = False


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.actions = self.root / "actions"
        self.targets = self.root / "targets"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        for folder in (self.objects, self.actions, self.targets, self.tmp, self.locks):
            folder.mkdir(parents=True, exist_ok=True)
        self.files = FileHashCache(self.root / "filehash.msgpack")

    # -- objects --------------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def put_file(self, path: Path) -> str:
        """Copy a file in; returns its digest. An object already present is not rewritten."""
        digest = digest_file(path)
        dest = self.object_path(digest)
        if not self._object_ok(dest, digest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="obj-")
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.chmod(tmp, 0o444)
                if digest_file(Path(tmp)) != digest:  # the source changed while we copied it
                    raise RuntimeError(f"{path} changed while it was being stored")
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.files.forget(dest)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        dest = self.object_path(digest)
        if not self._object_ok(dest, digest):
            atomic_write(dest, data, self.tmp)
            self.files.forget(dest)
        return digest

    def _object_ok(self, path: Path, digest: str) -> bool:
        try:
            return self.files.digest(path) == digest
        except FileNotFoundError:
            return False

    def has_object(self, digest: str) -> bool:
        """Present and intact; a changed object is deleted so that it is rebuilt, never served."""
        path = self.object_path(digest)
        try:
            actual = self.files.digest(path)
        except FileNotFoundError:
            return False
        if actual != digest:
            self.drop_object(digest)
            return False
        return True

    def drop_object(self, digest: str) -> None:
        path = self.object_path(digest)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o644)
            path.unlink()
        self.files.forget(path)

    def read_object(self, digest: str) -> bytes:
        data = self.object_path(digest).read_bytes()
        if digest_bytes(data) != digest:
            self.drop_object(digest)
            raise CorruptObject(f"store object {digest} is corrupt; it was removed")
        return data

    def copy_object(self, digest: str, dest: Path) -> None:
        """Materialize an object at ``dest`` (atomically), verifying its content on the way."""
        source = self.object_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            if digest_file(Path(tmp)) != digest:
                self.drop_object(digest)
                raise CorruptObject(f"store object {digest} is corrupt; it was removed")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.files.remember(dest, digest)

    # -- action cache ---------------------------------------------------------------------------
    def manifest_path(self, key: str) -> Path:
        return self.actions / key[:2] / key[2:]

    def get_manifest(self, key: str) -> dict[str, Any] | None:
        try:
            data = self.manifest_path(key).read_bytes()
        except FileNotFoundError:
            return None
        try:
            manifest = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException):
            self.manifest_path(key).unlink(missing_ok=True)
            return None
        return manifest if isinstance(manifest, dict) else None

    def put_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "schema": MANIFEST_SCHEMA, "key": key}
        atomic_write(self.manifest_path(key), msgpack.packb(manifest, use_bin_type=True), self.tmp)

    def drop_manifest(self, key: str) -> None:
        self.manifest_path(key).unlink(missing_ok=True)

    def manifest_intact(self, manifest: dict[str, Any]) -> bool:
        return all(self.has_object(d) for d in manifest.get("files", {}).values())

    def iter_manifests(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for path in self.actions.glob("*/*"):
            key = path.parent.name + path.name
            manifest = self.get_manifest(key)
            if manifest is not None:
                yield key, manifest

    # -- last state of each target ------------------------------------------------------------------
    def target_record_path(self, target: str) -> Path:
        return self.targets / safe_name(target)

    def get_target_record(self, target: str) -> dict[str, Any] | None:
        try:
            return msgpack.unpackb(self.target_record_path(target).read_bytes(), raw=False)
        except (FileNotFoundError, ValueError, msgpack.UnpackException):
            return None

    def put_target_record(self, target: str, record: dict[str, Any]) -> None:
        atomic_write(self.target_record_path(target), msgpack.packb(record, use_bin_type=True), self.tmp)

    # -- locks and caches -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock per action key, across processes (flock), so nothing is built twice."""
        path = self.locks / key[:2] / key[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def rule_cache_dir(self, rule: str, device_digest: str) -> Path:
        path = self.root / "cache" / rule / device_digest[:16]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))

    @contextlib.contextmanager
    def staging(self) -> Iterator["Staging"]:
        """Objects from an untrusted source, held apart until every one is verified (``Staging``)."""
        folder = self.scratch("staging-")
        try:
            yield Staging(self, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- garbage collection ---------------------------------------------------------------------
    def gc(self) -> dict[str, int]:
        """Delete objects no manifest reaches and stale temporary files; returns counts and bytes."""
        reachable: set[str] = set()
        for _, manifest in self.iter_manifests():
            reachable.update(manifest.get("files", {}).values())
            if manifest.get("log"):
                reachable.add(manifest["log"])
        removed = freed = 0
        for path in self.objects.glob("*/*"):
            digest = path.parent.name + path.name
            if digest not in reachable:
                freed += path.stat().st_size
                self.drop_object(digest)
                removed += 1
        stale_before = time.time() - 3600
        for path in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < stale_before:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.files.entries = {k: v for k, v in self.files.entries.items() if os.path.exists(k)}
        self.files.dirty = True
        self.files.save()
        return {"objects_removed": removed, "bytes_freed": freed, "objects_kept": len(reachable)}


class Staging:
    """Objects streamed into a private folder with a running digest; ``commit`` moves them into
    ``objects/`` only once all were added, so bytes that do not match their digest never enter."""

    def __init__(self, store: Store, folder: Path) -> None:
        self.store, self.folder = store, folder

    def add(self, stream: BinaryIO, expected: str, limit: int, label: str) -> None:
        if not is_digest(expected):
            raise CorruptObject(f"{label}: {expected!r} is not a digest")
        dest = self.folder / expected
        if dest.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    actual = copy_with_digest(stream, out, limit)
                except ValueError as exc:
                    raise CorruptObject(f"{label}: {exc}") from None
                out.flush()
                os.fsync(out.fileno())
            if actual != expected:
                raise CorruptObject(f"{label} has digest {actual}, but {expected} is recorded")
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def commit(self) -> None:
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith("."):
                continue
            dest = self.store.object_path(path.name)
            if not self.store._object_ok(dest, path.name):
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                self.store.files.forget(dest)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
