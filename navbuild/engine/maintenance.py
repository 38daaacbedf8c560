"""Keeping a store healthy: ``gc`` (what no manifest reaches; a size budget, least recently used
first) and ``fsck`` (re-hash every object, check every manifest, its objects and its output digest
(``engine/binding.py``), and every record; list and repair).

Callers hold the store lock exclusively (``Store.exclusive``): builds hold it shared, so neither
runs while a build writes objects whose manifest is not written yet.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import msgpack

from navbuild.engine import binding
from navbuild.engine.store import Store, manifest_problem
from navbuild.hashing import digest_file, is_digest


def _digests(manifest: dict[str, Any]) -> list[str]:
    """The objects a manifest needs: its files and its log."""
    return list(manifest["files"].values()) + ([manifest["log"]] if manifest.get("log") else [])


def _objects(store: Store) -> Iterator[tuple[Path, str]]:
    for path in store.objects.glob("*/*"):
        yield path, path.parent.name + path.name


# -- gc -----------------------------------------------------------------------------------------
def gc(store: Store, max_size: int | None = None, keep: set[str] = frozenset(),
       dry_run: bool = False) -> dict[str, Any]:
    """Delete objects no manifest reaches and dead processes' temp folders. With ``max_size``,
    then drop the least recently used manifests (never one in ``keep``: the current targets') and
    the objects only they reached, until the objects fit in ``max_size`` bytes. Only files that
    navbuild names are deleted (objects named by their digest); ``dry_run`` counts, deletes nothing."""
    manifests = dict(store.iter_manifests())
    refs = Counter(d for manifest in manifests.values() for d in _digests(manifest))
    sizes = {digest: path.stat().st_size for path, digest in _objects(store) if is_digest(digest)}
    freed = removed = dropped = 0

    def drop(digest: str) -> None:
        nonlocal freed, removed
        freed += sizes.pop(digest)
        removed += 1
        if not dry_run:
            store.drop_object(digest)

    for digest in [d for d in sizes if refs[d] == 0]:
        drop(digest)
    if max_size is not None:
        for key in least_recently_used(store, manifests, keep):
            if sum(sizes.values()) <= max_size:
                break
            if not dry_run:
                store.drop_manifest(key)
            dropped += 1
            for digest in _digests(manifests.pop(key)):
                refs[digest] -= 1
                if refs[digest] == 0 and digest in sizes:
                    drop(digest)
    temp = len(store.dead_temp()) if dry_run else store.remove_dead_temp()
    kept = sum(sizes.values())
    result = {"objects_removed": removed, "bytes_freed": freed, "objects_kept": len(sizes), "bytes_kept": kept,
              "manifests_dropped": dropped, "over_budget": max_size is not None and kept > max_size,
              "temp_removed": temp}
    if dry_run:
        return result
    store.files.forget_missing()
    store.files.save()
    return result


def least_recently_used(store: Store, manifests: dict[str, Any], keep: set[str]) -> list[str]:
    """Keys of ``manifests`` outside ``keep``, the least recently used first (a manifest's mtime is
    its last use: ``Store.get_manifest`` marks it)."""
    used = {}
    for key in manifests:
        if key not in keep:
            try:
                used[key] = store.manifest_path(key).stat().st_mtime
            except OSError:
                continue
    return sorted(used, key=lambda k: (used[k], k))


# -- fsck ---------------------------------------------------------------------------------------
@dataclass
class FsckReport:
    objects: int = 0
    manifests: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)  # damage: corrupt, malformed, dangling, stray
    garbage: list[str] = field(default_factory=list)  # harmless leftovers: orphans, dead temp folders
    repaired: bool = False


def fsck(store: Store, repair: bool = False) -> FsckReport:
    """Every object re-hashed, every manifest and last-build record checked; with ``repair``, what is
    damaged is removed (a removed manifest's target is rebuilt), and so is the garbage."""
    report = FsckReport(repaired=repair)
    present = _check_objects(store, report, repair)
    valid = _check_manifests(store, report, repair, present)
    _check_records(store, report, repair)
    reached = {d for manifest in valid.values() for d in _digests(manifest)}
    orphans = sorted(present - reached)
    if orphans:
        size = sum(store.object_path(d).stat().st_size for d in orphans)
        report.garbage.append(f"{len(orphans)} objects ({size / 1e6:.1f} MB) that no manifest reaches")
        if repair:
            for digest in orphans:
                store.drop_object(digest)
    dead = store.dead_temp()
    if dead:
        report.garbage.append(f"{len(dead)} temp folders or files of dead processes in {store.tmp_root}")
        if repair:
            store.remove_dead_temp()
    return report


def _check_objects(store: Store, report: FsckReport, repair: bool) -> set[str]:
    present = set()
    for path, digest in _objects(store):
        report.objects += 1
        if not is_digest(digest):
            report.problems.append(f"stray file {path.relative_to(store.root)} (not named by a digest)")
            if repair:
                path.unlink(missing_ok=True)
        elif digest_file(path) != digest:
            report.problems.append(f"object {digest} is corrupt (its bytes hash to {digest_file(path)})")
            if repair:
                store.drop_object(digest)
        else:
            present.add(digest)
    return present


def _check_manifests(store: Store, report: FsckReport, repair: bool, present: set[str]) -> dict[str, Any]:
    valid = {}
    for key in list(store.manifest_keys()):
        report.manifests += 1
        path = store.manifest_path(key)
        problem = None
        try:
            manifest = msgpack.unpackb(path.read_bytes(), raw=False)
        except (OSError, ValueError, msgpack.UnpackException) as exc:
            manifest, problem = None, f"does not decode ({type(exc).__name__})"
        if problem is None and not is_digest(key):
            problem = "its file is not named by a key"
        problem = problem or manifest_problem(manifest, key)
        if problem is None:
            missing = [d for d in _digests(manifest) if d not in present]
            if missing:
                problem = f"needs {len(missing)} missing or corrupt objects ({missing[0][:12]}...)"
        if problem is None:
            unbound = binding.problem(manifest)  # manifest -> objects -> output digest
            problem = f"not bound to its files: {unbound}" if unbound else None
        if problem is None:
            valid[key] = manifest
            continue
        target = manifest.get("target") if isinstance(manifest, dict) else None
        report.problems.append(f"manifest {key}{f' ({target})' if target else ''}: {problem}")
        if repair:
            path.unlink(missing_ok=True)
    return valid


def _check_records(store: Store, report: FsckReport, repair: bool) -> None:
    for path in sorted(store.targets.iterdir()) if store.targets.exists() else []:
        report.records += 1
        try:
            record = msgpack.unpackb(path.read_bytes(), raw=False)
        except (OSError, ValueError, msgpack.UnpackException):
            record = None
        if isinstance(record, dict) and is_digest(record.get("key")) and isinstance(record.get("material"), dict):
            continue
        report.problems.append(f"last-build record {path.name} is malformed")
        if repair:
            path.unlink(missing_ok=True)
