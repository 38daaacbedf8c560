"""The remote cache: a target's action key looked up in a cache that several machines share.

Before a target is built, ``restore`` asks the cache for its key's entry and downloads the objects
that the local store lacks; after it is built, ``publish`` uploads the objects and then the entry
(in that order, so no reader finds an entry whose objects are missing). The cache is untrusted:
an entry is size-limited JSON whose shape, names and digests are checked before anything is
written; every object is streamed into the store's ``tmp/`` while its SHA-256 and xxh3 digests
and its size are computed, and enters the store only when all three match; the output digest is
recomputed from the files. Anything wrong is refused, reported, and the target built here.

A network failure, a refused connection or a timeout turns the cache off for the rest of the run
with one warning; the build goes on locally. ``publish`` and ``restore`` take any local store, so
a worker process (or a Ray node) that builds and uploads and the machine that collects and
restores are the same two calls on two machines.

A target whose build runs the model's code has a key that holds its discovered sources
(``engine/discovery.py``): a machine that never built it cannot know that key before it knows the
list. So ``publish`` also writes the list under the declared key, and ``restore``, when the key it
was given has no entry, reads that list, hashes those files here and asks for the key they give:
a hit needs every discovered file (and library version) to be the same here. The entry repeats the
list with its digests, and a restore checks it against the local files again.

Layout (Bazel's HTTP cache layout, so bazel-remote or nginx with WebDAV can serve it)::

    ac/<sha256("navbuild-remote/1" NUL action key)>   the entry (JSON), see ``entry_for``
    ac/<sha256("navbuild-remote/1" NUL "discovered:" declared key)>   the discovered list (JSON)
    cas/<sha256 of the content>                       an object
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import xxhash

from navbuild.engine import binding
from navbuild.engine.digests import output_digest
from navbuild.engine.discovery import Found, declared, found_in
from navbuild.engine.graph import Target
from navbuild.engine.remote_backends import Backend, RemoteUnavailable, WriteRejected, open_backend
from navbuild.engine.remote_settings import RemoteSettings
from navbuild.engine.store import Store
from navbuild.hashing import digest_value

ENTRY_FORMAT = "navbuild-remote/1"
DISCOVERED = "discovered:"  # the name of a declared key's discovered list, before the key
MAX_ENTRY_BYTES = 4 << 20
MAX_FILES = 10_000
MAX_OBJECT_BYTES = 1 << 40
XXH3 = re.compile(r"[0-9a-f]{32}")
SHA256 = re.compile(r"[0-9a-f]{64}")
OUTPUT_DIGEST = re.compile(r"c?[0-9a-f]{31,32}")
NAME_PART = re.compile(r"[^\x00-\x1f\\/]{1,255}")


class Refused(Exception):
    """What the cache sent is not what its entry promised (or the entry is malformed)."""


def entry_name(key: str) -> str:
    """The ``ac/`` name of an action key: 64 hex digits as Bazel's caches expect; the format tag is
    folded in, so a client speaking another entry format finds another name, not a body it misreads."""
    return hashlib.sha256(f"{ENTRY_FORMAT}\0{key}".encode()).hexdigest()


class RemoteCache:
    """One run's use of a remote cache: off for the rest of the run after the first failure."""

    def __init__(self, settings: RemoteSettings, warn: Callable[[str], None] | None = None,
                 backend: Backend | None = None) -> None:
        self.settings = settings
        self.warn = warn if warn is not None else _warn
        self._backend = backend
        self.off: str | None = None  # why the cache is no longer used in this run
        self.writes_off: str | None = "read-only mode" if settings.read_only else None
        self._sha256: dict[str, str] = {}  # xxh3 -> sha256 of objects hashed in this run
        self._bad: set[str] = set()  # sha256 names whose remote copy was refused: upload them again

    def __repr__(self) -> str:
        mode = "read-only" if self.settings.read_only else "read-write"
        return f"RemoteCache({self.settings.display_url!r}, {mode})"

    # -- restore --------------------------------------------------------------------------------
    def restore(self, store: Store, target: Target, key: str, material: dict[str, Any],
                rekey: Callable[[Found], dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The manifest of ``key`` restored from the cache into ``store``, or None (a miss, a refused
        entry, or the cache is off); never raises for what the cache does. ``rekey(found)``: the key
        material of a discovered list here (its files hashed here), for a key that holds one: the
        manifest returned then records the key found that way."""
        if self.off:
            return None
        try:
            data = self._backend_().read_entry(f"ac/{entry_name(key)}", MAX_ENTRY_BYTES)
            if data is None and rekey is not None and "discovered" in material:
                key, material, data = self._by_discovered(store, material, rekey, key)
            if data is None:
                return None
            entry = parse_entry(data, key, _rule_name(target))
            if entry.get("discovered", material.get("discovered")) != material.get("discovered"):
                raise Refused("its discovered sources are not those of this project's files")
            for relative, obj in _objects(entry).items():
                if not store.has_object(obj["xxh3"]):
                    self._fetch(store, relative, obj)
            files = {name: obj["xxh3"] for name, obj in entry["files"].items()}
            _check_output_digest(store, target, files, entry["digest"], material)
        except RemoteUnavailable as exc:
            self._turn_off(str(exc))
            return None
        except OSError as exc:  # the local store could not take it (a full disk): the build will say more
            self.warn(f"navbuild: warning: remote cache: {target.name}: not restored ({exc})")
            return None
        except Refused as exc:
            self.warn(f"navbuild: warning: remote cache: {target.name}: {exc}; refused, building it here")
            return None
        manifest = {"target": target.name, "rule": entry["rule"], "rule_version": entry["rule_version"],
                    "files": files, "digest": entry["digest"], **binding.bytes_field(entry["digest"], files),
                    "log": entry["log"]["xxh3"] if entry["log"] else None,
                    "seconds": entry["seconds"], "metadata": entry["metadata"], "material": material,
                    "status": "ok", "remote": True}
        store.put_manifest(key, manifest)
        return {**manifest, "key": key}

    def _by_discovered(self, store: Store, material: dict[str, Any], rekey: Callable[[Found], dict[str, Any]],
                       key: str) -> tuple[str, dict[str, Any], bytes | None]:
        """The entry of the key that the cache's discovered list gives with this machine's files."""
        declared_key = digest_value(declared(material))
        data = self._backend_().read_entry(f"ac/{entry_name(DISCOVERED + declared_key)}", MAX_ENTRY_BYTES)
        found = parse_discovered(data, declared_key) if data is not None else None
        if found is None:
            return key, material, None
        material = rekey(found)
        found_key = digest_value(material)
        if found_key == key:
            return key, material, None
        store.put_discovered(declared_key, found)  # the next up-to-date check here knows the list
        return found_key, material, self._backend_().read_entry(f"ac/{entry_name(found_key)}", MAX_ENTRY_BYTES)

    def _fetch(self, store: Store, relative: str, obj: dict[str, Any]) -> None:
        """Stream one object into the store's tmp/, verify it, then move it into place."""
        sha256, xxh3, size = hashlib.sha256(), xxhash.xxh3_128(), [0]
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="remote-")
        try:
            with os.fdopen(fd, "wb") as handle:
                def sink(chunk: bytes) -> None:
                    sha256.update(chunk)
                    xxh3.update(chunk)
                    size[0] += len(chunk)
                    handle.write(chunk)

                if not self._backend_().download(f"cas/{obj['sha256']}", sink, obj["size"]):
                    raise Refused(f"object {relative} ({obj['sha256'][:12]}) is missing from the cache")
                if (size[0], sha256.hexdigest(), xxh3.hexdigest()) != (obj["size"], obj["sha256"], obj["xxh3"]):
                    self._bad.add(obj["sha256"])
                    raise Refused(f"object {relative} ({obj['sha256'][:12]}) does not match its digest")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o444)
            dest = store.object_path(obj["xxh3"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            store.files.forget(dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- publish --------------------------------------------------------------------------------
    def publish(self, store: Store, target: Target, key: str, manifest: dict[str, Any]) -> bool:
        """Upload a manifest's objects, then its entry; False when nothing was (or could be) uploaded."""
        if self.off or self.writes_off:
            return False
        try:
            backend = self._backend_()
            objects = {}
            for relative, digest in _manifest_objects(manifest).items():
                path = store.object_path(digest)
                obj = {"xxh3": digest, "sha256": self._sha256_of(path, digest), "size": path.stat().st_size}
                if obj["sha256"] in self._bad or not backend.has(f"cas/{obj['sha256']}"):
                    backend.upload(f"cas/{obj['sha256']}", path, obj["size"])
                objects[relative] = obj
            backend.write_entry(f"ac/{entry_name(key)}", entry_for(key, manifest, objects))
            found = found_in(manifest.get("material") or {})
            if found is not None:  # after the entry: a reader that finds the list finds what it leads to
                declared_key = digest_value(declared(manifest["material"]))
                backend.write_entry(f"ac/{entry_name(DISCOVERED + declared_key)}",
                                    discovered_entry(declared_key, found))
        except WriteRejected as exc:
            self.writes_off = str(exc)
            self.warn(f"navbuild: warning: remote cache {self.settings.display_url} refused an upload ({exc}); "
                      "nothing more is uploaded in this run")
            return False
        except RemoteUnavailable as exc:
            self._turn_off(str(exc))
            return False
        except OSError as exc:  # a local object went missing: this target is not shared, the build is fine
            self.warn(f"navbuild: warning: remote cache: {target.name}: not uploaded ({exc})")
            return False
        return True

    def _sha256_of(self, path: Path, digest: str) -> str:
        if digest not in self._sha256:
            hasher = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hasher.update(chunk)
            self._sha256[digest] = hasher.hexdigest()
        return self._sha256[digest]

    # -- state ----------------------------------------------------------------------------------
    def _backend_(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.settings)
        return self._backend

    def _turn_off(self, reason: str) -> None:
        if self.off is None:
            self.off = reason
            self.warn(f"navbuild: warning: remote cache {self.settings.display_url} unavailable ({reason}); "
                      "building locally without it for the rest of this run")


def _warn(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _rule_name(target: Target) -> str:
    return target.rule.name if target.rule is not None else target.kind


# -- the entry --------------------------------------------------------------------------------------
def _manifest_objects(manifest: dict[str, Any]) -> dict[str, str]:
    """relative name -> xxh3 of every object a manifest needs (its log under an empty name)."""
    objects = dict(manifest["files"])
    if manifest.get("log"):
        objects[""] = manifest["log"]
    return objects


def entry_for(key: str, manifest: dict[str, Any], objects: dict[str, dict[str, Any]]) -> bytes:
    """The JSON held under ``ac/``: what a restore needs, and no time, path or credential (the
    discovered sources are paths relative to the project root, with their digests)."""
    entry = {"format": ENTRY_FORMAT, "key": key, "target": manifest["target"], "rule": manifest["rule"],
             "rule_version": str(manifest["rule_version"]), "status": "ok", "digest": manifest["digest"],
             "files": {name: obj for name, obj in objects.items() if name},
             "log": objects.get(""), "seconds": round(float(manifest.get("seconds", 0.0)), 3),
             "metadata": manifest.get("metadata", {})}
    discovered = (manifest.get("material") or {}).get("discovered")
    if discovered is not None:
        entry["discovered"] = discovered
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


def discovered_entry(declared_key: str, found: Found) -> bytes:
    """The JSON of a discovered list under its declared key: paths and library names, no digest."""
    entry = {"format": ENTRY_FORMAT, "declared_key": declared_key, "discovered": found.to_dict()}
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


def parse_discovered(data: bytes, declared_key: str) -> Found | None:
    """A discovered list read from the cache; None when it is not one (a malformed one is a miss)."""
    try:
        entry = json.loads(data) if len(data) <= MAX_ENTRY_BYTES else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT or entry.get("declared_key") != declared_key:
        return None
    return Found.from_dict(entry.get("discovered"))


def parse_entry(data: bytes, key: str, rule: str) -> dict[str, Any]:
    """An entry read from the cache, checked field by field; raises Refused."""
    if len(data) > MAX_ENTRY_BYTES:
        raise Refused(f"its entry is larger than {MAX_ENTRY_BYTES} bytes")
    try:
        entry = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Refused("its entry is not JSON") from None
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        raise Refused(f"its entry is not a {ENTRY_FORMAT} entry")
    if entry.get("key") != key:
        raise Refused("its entry belongs to another action key")
    if entry.get("status") != "ok":
        raise Refused("its entry does not record a successful build")
    if entry.get("rule") != rule or not isinstance(entry.get("rule_version"), str):
        raise Refused(f"its entry names rule {str(entry.get('rule'))[:40]!r}, not {rule!r}")
    if not isinstance(entry.get("digest"), str) or not OUTPUT_DIGEST.fullmatch(entry["digest"]):
        raise Refused("its entry has no valid output digest")
    files = entry.get("files")
    if not isinstance(files, dict) or not 0 < len(files) <= MAX_FILES:
        raise Refused("its entry lists no files, or too many")
    for name, obj in files.items():
        check_relative_name(name)
        check_object(obj, name)
    entry.setdefault("log", None)
    if entry["log"] is not None:
        check_object(entry["log"], "the build log")
    seconds = entry.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise Refused("its entry has no valid build time")
    if not isinstance(entry.get("metadata"), dict):
        raise Refused("its entry's metadata is not an object")
    if "discovered" in entry and not isinstance(entry["discovered"], dict):
        raise Refused("its entry's discovered sources are not an object")
    return entry


def check_relative_name(name: Any) -> None:
    """A file name inside a target's folder: relative, no ``..``, no control characters."""
    if not isinstance(name, str) or len(name) > 1024 or name.startswith("/"):
        raise Refused(f"its entry names a file outside the target's folder: {str(name)[:80]!r}")
    for part in name.split("/"):
        if part in (".", "..") or not NAME_PART.fullmatch(part):
            raise Refused(f"its entry names a file outside the target's folder: {name[:80]!r}")


def check_object(obj: Any, name: str) -> None:
    if not isinstance(obj, dict) or set(obj) != {"xxh3", "sha256", "size"}:
        raise Refused(f"its entry describes {name} badly")
    if not (isinstance(obj["xxh3"], str) and XXH3.fullmatch(obj["xxh3"])
            and isinstance(obj["sha256"], str) and SHA256.fullmatch(obj["sha256"])
            and isinstance(obj["size"], int) and not isinstance(obj["size"], bool)
            and 0 <= obj["size"] <= MAX_OBJECT_BYTES):
        raise Refused(f"its entry describes {name} badly")


def _objects(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    objects = dict(entry["files"])
    if entry["log"]:
        objects["build log"] = entry["log"]
    return objects


def _check_output_digest(store: Store, target: Target, files: dict[str, str], digest: str,
                         material: dict[str, Any]) -> None:
    """The output digest, recomputed from the restored files as a local build computes it."""
    scratch = store.scratch("remote-check-")
    try:
        for relative, xxh3 in files.items():
            dest = scratch / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(store.object_path(xxh3), dest)  # the store and its scratch share a file system
            except OSError:
                shutil.copyfile(store.object_path(xxh3), dest)
        actual = output_digest(target, scratch, files, material)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if actual != digest:
        raise Refused(f"its files give output digest {actual[:12]}, not the recorded {digest[:12]}")
