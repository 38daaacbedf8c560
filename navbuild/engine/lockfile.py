"""navbuild.lock: each target's action key and output digest at its last build, as text that diffs well.

Like DVC's ``dvc.lock``: navbuild.toml says what to build, the lock says what the last build gave.
Every build rewrites it (only when an entry changed): a target the run built or found cached gets
its entry, one that it did not reach (not selected, skipped, failed) keeps the entry it had, and
targets no longer in the graph are dropped. Artifacts and checks are locked; profiles are not
(timings are never the same twice). No time, path or machine name goes in, so two machines that
build the same thing write the same lock, and ``navbuild verify`` compares a rebuild with it.

The format is TOML, one small table per target, sorted by name::

    version = 1

    ["cnn:onnx"]
    rule = "onnx"
    key = "3f0c..."       # the action key (xxh3-128 of the key material)
    digest = "9a1b..."    # the output digest that downstream keys use
    bytes = "77d2..."     # only where the digest is a rule's canonical digest: the files' own digest
    imported = "model.nav (package 1c2d...)"  # only where the build came from a package, not proven here
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from navbuild.engine.atomic import atomic_write
from navbuild.engine.graph import ARTIFACT, CHECK, Graph
from navbuild.engine.records import BUILT, CACHED, IMPORTED, Record

LOCK_NAME = "navbuild.lock"
VERSION = 1
HEADER = ("# navbuild.lock: the action key and output digest of every target at its last build.\n"
          "# Written by navbuild after each build; commit it. `navbuild verify` rebuilds and compares.\n")
LOCKED_KINDS = (ARTIFACT, CHECK)


class LockError(ValueError):
    pass


@dataclass(frozen=True)
class LockEntry:
    target: str
    rule: str
    key: str
    digest: str
    bytes: str | None = None  # the files' tree digest where ``digest`` is a rule's canonical digest
    imported: str | None = None  # where the build came from, when a package brought it (records.origin_text)


def path_for(root: Path) -> Path:
    return Path(root) / LOCK_NAME


def read(path: Path) -> dict[str, LockEntry]:
    """The lock's entries by target; an absent lock is empty; a malformed one raises LockError."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: not a valid lock file ({exc}); delete it and run navbuild all") from None
    if data.get("version") != VERSION:
        raise LockError(f"{path}: lock version {data.get('version')!r}, this navbuild writes {VERSION}; "
                        "run navbuild all to rewrite it")
    entries = {}
    for target, table in data.items():
        if target == "version":
            continue
        if not isinstance(table, dict) or not all(isinstance(table.get(k), str) for k in ("rule", "key", "digest")):
            raise LockError(f"{path}: [{json.dumps(target)}] needs rule, key and digest")
        entries[target] = LockEntry(target, table["rule"], table["key"], table["digest"], table.get("bytes"),
                                    table.get("imported") if isinstance(table.get("imported"), str) else None)
    return entries


def render(entries: Iterable[LockEntry]) -> str:
    lines = [HEADER + f"version = {VERSION}\n"]
    for entry in sorted(entries, key=lambda e: e.target):
        block = (f"\n[{json.dumps(entry.target)}]\nrule = {json.dumps(entry.rule)}\n"
                 f"key = {json.dumps(entry.key)}\ndigest = {json.dumps(entry.digest)}\n")
        if entry.bytes:
            block += f"bytes = {json.dumps(entry.bytes)}\n"
        if entry.imported:
            block += f"imported = {json.dumps(entry.imported)}\n"
        lines.append(block)
    return "".join(lines)


def entry_of(graph: Graph, record: Record, files_digest: str | None = None) -> LockEntry | None:
    """The lock entry a run's record gives, or None when the record says nothing to lock."""
    target = graph.targets.get(record.target)
    if target is None or target.kind not in LOCKED_KINDS or record.status not in (BUILT, CACHED):
        return None
    if not record.key or not record.digest:
        return None
    rule = target.rule.name if target.rule is not None else target.kind
    imported = record.metadata.get("imported") if record.origin == IMPORTED else None
    return LockEntry(record.target, rule, record.key, record.digest,
                     files_digest if files_digest and files_digest != record.digest else None, imported)


def record_run(path: Path, graph: Graph, records: Iterable[Record], files_digest: Callable[[Record], str | None],
               partial: bool = False) -> bool:
    """A run's records into the lock at ``path`` (``update``); ``files_digest(record)`` gives the
    files' own digest of a target whose digest is a rule's canonical one (it starts with ``c``)."""
    entries = []
    for record in records:
        files = files_digest(record) if record.digest and record.digest.startswith("c") else None
        entry = entry_of(graph, record, files)
        if entry is not None:
            entries.append(entry)
    return update(path, graph, entries, partial=partial)


def update(path: Path, graph: Graph, entries: Iterable[LockEntry], partial: bool = False) -> bool:
    """Merge this run's entries into the lock at ``path``; True when the file changed. Entries of
    targets the graph no longer has are dropped; with ``partial`` (a graph of some models of a
    larger whole: the Python API), only those of the graph's own models."""
    try:
        merged = read(path)
    except LockError:
        merged = {}  # a broken lock is rewritten whole from what this run knows
    models = {name.split(":", 1)[0] for name in graph.targets}
    merged = {name: entry for name, entry in merged.items()
              if name in graph.targets or (partial and name.split(":", 1)[0] not in models)}
    for entry in entries:
        merged[entry.target] = entry
    text = render(merged.values())
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, text.encode(), durable=False)
    return True
