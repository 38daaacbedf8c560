"""The content-addressed store: objects by content digest, an action cache, per-key locks.

Layout under the store root (``.navbuild/`` by default)::

    objects/ab/cdef...     file contents, named by their xxh3-128 digest (read-only once written)
    actions/ab/cdef...     action key -> manifest (msgpack)
    targets/<target>       the last key and key material of each target (status, explain)
    failures/ab/cdef...    action key -> record of the build that failed under it (reason, log)
    discovered/ab/cdef...  declared key -> the lists of files and libraries its builds found the model's
                           code reading (engine/discovery.py), the latest first
    cache/<rule>/<device>  caches that rules keep between builds (timing caches, compile caches)
    locks/                 per-key build locks, the store lock, one owner lock per live process
    tmp/<pid>-<token>/     each process's staging space on the same file system

Every write is temp file + fsync + rename, so a crash or a full disk never leaves a partial object
or manifest under its final name, and several processes (or machines on a shared file system) can
use one store. The store, not doit's dependency file, decides what is built.

Checks (docs/architecture.md, "What is checked when"): every manifest read is shape-checked (a bad
one is absent, and reported); files are trusted by their stat signature (size, mtime, ctime,
inode) and re-hashed when it changed; ``navbuild fsck`` re-hashes everything. A process's temp
folder is tied to a lock it holds while alive, so a later build removes the folders of dead
processes. Builds hold the store lock shared, ``gc`` and ``fsck --repair`` exclusive.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import msgpack

from navbuild.engine import binding
from navbuild.engine.atomic import atomic_write
from navbuild.engine.discovery import MAX_LISTS, Found
from navbuild.engine.filehash import FileHashCache
from navbuild.hashing import copy_with_digest, digest_bytes, digest_file, is_digest, is_output_digest

MANIFEST_SCHEMA = 2  # 2: a digest that is not its files' tree digest has ``bytes`` beside it (engine/binding.py)
_TEMP_NAME = re.compile(r"\d+-[0-9a-f]{8}")  # a process's temp folder (Store.tmp): the only names in tmp/
USE_RESOLUTION_S = 3600  # a manifest used as current is marked used at most once an hour (gc --max-size)


class CorruptObject(RuntimeError):
    pass


def safe_name(target: str) -> str:
    return target.replace(":", "--").replace("/", "_")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.actions = self.root / "actions"
        self.targets = self.root / "targets"
        self.tmp_root = self.root / "tmp"
        self.locks = self.root / "locks"
        for folder in (self.objects, self.actions, self.targets, self.tmp_root, self.locks):
            folder.mkdir(parents=True, exist_ok=True)
        self.files = FileHashCache(self.root / "filehash.msgpack", lambda: self.tmp)
        self.problems: list[str] = []  # what the self-checks found (reported once each)
        self._owned_tmp: Path | None = None
        self._owner_lock: Any = None
        self._store_lock: Any = None
        self._guard = threading.Lock()

    # -- this process's temp folder -------------------------------------------------------------
    @property
    def tmp(self) -> Path:
        """This process's temp folder, made on first use and tied to a lock held while it lives."""
        with self._guard:
            if self._owned_tmp is None or not self._owned_tmp.is_dir():
                name = f"{os.getpid()}-{secrets.token_hex(4)}"
                owners = self.locks / "owners"
                owners.mkdir(parents=True, exist_ok=True)
                handle = open(owners / name, "a+")
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                folder = self.tmp_root / name
                folder.mkdir(parents=True, exist_ok=True)
                self._release_tmp()
                self._owned_tmp, self._owner_lock = folder, handle
            return self._owned_tmp

    def _release_tmp(self) -> None:
        if self._owned_tmp is not None:
            shutil.rmtree(self._owned_tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.locks / "owners" / self._owned_tmp.name).unlink()
            self._owned_tmp = None
        if self._owner_lock is not None:
            self._owner_lock.close()
            self._owner_lock = None

    def dead_temp(self) -> list[Path]:
        """Temp folders of processes that died (their owner lock is free), and other entries of tmp/
        named as navbuild names them (left by an older navbuild) once they are an hour old."""
        try:
            entries = list(os.scandir(self.tmp_root))
        except FileNotFoundError:
            return []
        dead = []
        for entry in entries:
            path = Path(entry.path)
            if path == self._owned_tmp:
                continue
            lock = self.locks / "owners" / entry.name
            if lock.exists():
                if _owner_is_dead(lock):
                    dead.append(path)
                continue
            with contextlib.suppress(OSError):
                old = entry.stat(follow_symlinks=False).st_mtime < time.time() - 3600
                if old and _TEMP_NAME.fullmatch(entry.name):
                    dead.append(path)
        return dead

    def remove_dead_temp(self) -> int:
        """A build calls it: what killed processes left in tmp/ goes; returns how many entries."""
        dead = self.dead_temp()
        for path in dead:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else \
                path.unlink(missing_ok=True)
            (self.locks / "owners" / path.name).unlink(missing_ok=True)
        return len(dead)

    def close(self) -> None:
        """Save the stat cache, remove this process's temp folder, release the store lock."""
        self.files.save()
        with self._guard:
            self._release_tmp()
        if self._store_lock is not None:
            self._store_lock.close()
            self._store_lock = None

    # -- the store lock: builds share it, gc and fsck --repair take it alone -----------------------
    def hold_shared(self) -> None:
        """Held by a build until ``close``: gc waits for it (idempotent)."""
        if self._store_lock is None:
            handle = open(self.locks / "store", "a+")
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            self._store_lock = handle

    @contextlib.contextmanager
    def exclusive(self, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """No build runs on this store while it is held; ``waiting`` is called if builds must end first."""
        with open(self.locks / "store", "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

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
        """The manifest under ``key``, or None. One that does not decode or has the wrong shape is
        treated as absent (and reported once); its use marks it recently used (``gc --max-size``)."""
        path = self.manifest_path(key)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
                used = os.fstat(handle.fileno()).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self.report(f"manifest {key} cannot be read ({exc.strerror}); ignored")
            return None
        try:
            manifest = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException):
            path.unlink(missing_ok=True)  # torn or truncated: never a complete write
            return None
        problem = manifest_problem(manifest, key)
        if problem:
            self.report(f"manifest {key} is malformed ({problem}); ignored, it is rebuilt "
                         f"(`navbuild fsck --repair` removes it)")
            return None
        if used < time.time() - USE_RESOLUTION_S:
            with contextlib.suppress(OSError):
                os.utime(path)
        return manifest

    def report(self, problem: str) -> None:
        """Say a problem found in the store, once per run."""
        if problem not in self.problems:
            self.problems.append(problem)
            sys.stderr.write(f"navbuild: store {self.root}: {problem}\n")

    def has_manifest(self, key: str) -> bool:
        """Whether a manifest is stored under ``key`` (not read: ``get_manifest`` checks it)."""
        return self.manifest_path(key).is_file()

    def put_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "schema": MANIFEST_SCHEMA, "key": key}
        atomic_write(self.manifest_path(key), msgpack.packb(manifest, use_bin_type=True), self.tmp)

    def drop_manifest(self, key: str) -> None:
        self.manifest_path(key).unlink(missing_ok=True)

    def manifest_intact(self, manifest: dict[str, Any]) -> bool:
        """Every file it names present and intact, and its digest bound to their digests (a manifest
        pointed at other objects is reported and treated as absent: its target is rebuilt)."""
        unbound = binding.problem(manifest)
        if unbound:
            self.report(f"manifest {manifest.get('key')} ({manifest.get('target')}) is not bound to its files: "
                         f"{unbound}; ignored, it is rebuilt (`navbuild fsck --repair` removes it)")
            return False
        return all(self.has_object(d) for d in manifest.get("files", {}).values())

    def manifest_keys(self) -> Iterator[str]:
        for path in self.actions.glob("*/*"):
            yield path.parent.name + path.name

    def iter_manifests(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self.manifest_keys():
            manifest = self.get_manifest(key)
            if manifest is not None:
                yield key, manifest

    # -- failures ---------------------------------------------------------------------------------
    def failure_path(self, key: str) -> Path:
        return self.root / "failures" / key[:2] / key[2:]

    def get_failure(self, key: str) -> dict[str, Any] | None:
        """The record of a build that failed under ``key`` (its reason and log), if one was kept."""
        try:
            record = msgpack.unpackb(self.failure_path(key).read_bytes(), raw=False)
        except (FileNotFoundError, ValueError, msgpack.UnpackException):
            return None
        return record if isinstance(record, dict) else None

    def put_failure(self, key: str, record: dict[str, Any]) -> None:
        atomic_write(self.failure_path(key), msgpack.packb(record, use_bin_type=True), self.tmp, durable=False)

    def drop_failure(self, key: str) -> None:
        self.failure_path(key).unlink(missing_ok=True)

    # -- discovered sources: what builds of a declared key read (engine/discovery.py) --------------------
    def discovered_path(self, declared_key: str) -> Path:
        return self.root / "discovered" / declared_key[:2] / declared_key[2:]

    def get_discovered(self, declared_key: str) -> list[Found]:
        """The lists that builds under ``declared_key`` found, the latest first (malformed ones left out)."""
        try:
            lists = msgpack.unpackb(self.discovered_path(declared_key).read_bytes(), raw=False)
        except (OSError, ValueError, msgpack.UnpackException):
            return []
        found = [Found.from_dict(item) for item in lists] if isinstance(lists, list) else []
        return [item for item in found if item is not None]

    def put_discovered(self, declared_key: str, found: Found) -> None:
        """``found`` first among the lists of ``declared_key`` (a few are kept: ccache's manifests)."""
        lists = [found, *(item for item in self.get_discovered(declared_key) if item != found)][:MAX_LISTS]
        data = msgpack.packb([item.to_dict() for item in lists], use_bin_type=True)
        atomic_write(self.discovered_path(declared_key), data, self.tmp, durable=False)

    # -- last state of each target ------------------------------------------------------------------
    def target_record_path(self, target: str) -> Path:
        return self.targets / safe_name(target)

    def get_target_record(self, target: str) -> dict[str, Any] | None:
        try:
            record = msgpack.unpackb(self.target_record_path(target).read_bytes(), raw=False)
        except (OSError, ValueError, msgpack.UnpackException):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("material", {}), dict):
            self.report(f"the last-build record of {target} is malformed; ignored")
            return None
        return record

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


def manifest_problem(manifest: Any, key: str | None = None) -> str | None:
    """What is wrong with a manifest's shape (None when it can be used): checked on every read."""
    if not isinstance(manifest, dict):
        return f"a {type(manifest).__name__}, not a map"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return f"files is {type(files).__name__}, not a map of files"
    for name, digest in files.items():
        if not _safe_relative(name):
            return f"file name {str(name)[:80]!r} is not a relative path"
        if not is_digest(digest):
            return f"file {name} has digest {str(digest)[:40]!r}"
    if not is_output_digest(manifest.get("digest")):
        return f"digest {str(manifest.get('digest'))[:40]!r} is not a digest"
    if manifest.get("log") is not None and not is_digest(manifest["log"]):
        return f"log {str(manifest['log'])[:40]!r} is not a digest"
    if not isinstance(manifest.get("status"), str):
        return "status is missing"
    if not isinstance(manifest.get("metadata", {}), dict):
        return "metadata is not a map"
    if key is not None and manifest.get("key", key) != key:
        return f"it records key {str(manifest.get('key'))[:40]!r}"
    return None


def _safe_relative(name: Any) -> bool:
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _owner_is_dead(lock: Path) -> bool:
    """The process that made a temp folder holds its owner lock while it lives."""
    try:
        with open(lock, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class Staging:
    """Objects streamed into a private folder with a running digest; ``commit`` moves them into
    ``objects/`` only once all were added, so bytes that do not match their digest never enter."""

    def __init__(self, store: Store, folder: Path) -> None:
        self.store, self.folder = store, folder
        self._views = 0

    def add(self, stream: BinaryIO, expected: str, limit: int, label: str) -> bool:
        """Stage ``stream``'s bytes, which must hash to ``expected``; False when that object was
        already staged (the stream is then not read)."""
        if not is_digest(expected):
            raise CorruptObject(f"{label}: {expected!r} is not a digest")
        dest = self.folder / expected
        if dest.exists():
            return False
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
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def view(self, files: dict[str, str]) -> Path:
        """A folder holding the staged objects ``files`` names under their names (links where the file
        system allows), for a scan to read before anything is committed."""
        self._views += 1
        folder = self.folder / f".view-{self._views}"  # dot names: commit passes them by
        for name, digest in files.items():
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = self.folder / digest
            if not source.exists():  # staged by an earlier import, or already in the store
                source = self.store.object_path(digest)
            try:
                os.link(source, dest)
            except OSError:
                shutil.copyfile(source, dest)
        return folder

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
