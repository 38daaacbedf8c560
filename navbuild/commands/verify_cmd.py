"""``navbuild verify [--sample N] [--seed S] [targets]``: rebuild targets in a scratch store and
compare their digests with navbuild.lock.

Every selected target (all the lock holds, or the named ones, or N of them chosen at random) is
rebuilt from nothing, with what it needs, in a scratch store that neither the project's store nor
the remote cache can answer from. Each rebuilt target that the lock holds is then one of:

    reproducible      same key, same digest (an artifact the lock says was imported from a package is
                      then proven: the store keeps this project's build of it from now on)
    NOT reproducible  same key, another digest: its rule is not deterministic (named in the summary)
    imported, differs same key, another digest than the one a package brought: the package's bytes are
                      not what this project builds (its build replaces them in the store)
    input differs     another key because an upstream rebuilt here gave another digest
    key differs       another key for another reason (sources, tools or device changed since the
                      lock was written: the last build's key material says which)
    skipped, failed   as in a build

Exit code 0 when every compared target is reproducible (or skipped), 1 otherwise, 2 when there is
no lock to compare with.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
from dataclasses import dataclass, replace

from navbuild.engine import keys, lockfile
from navbuild.engine.options import Options
from navbuild.engine.project import open_project
from navbuild.engine.records import FAILED, SKIPPED, Record
from navbuild.engine.remote_settings import RemoteSettings
from navbuild.engine.scheduler import Scheduler
from navbuild.engine.session import Session
from navbuild.hashing import tree_digest
from navbuild.view.console import console

REPRODUCIBLE, NOT_REPRODUCIBLE, INPUT_DIFFERS, KEY_DIFFERS, IMPORT_DIFFERS = (
    "reproducible", "NOT reproducible", "input differs", "key differs", "imported, differs")
BAD = (NOT_REPRODUCIBLE, INPUT_DIFFERS, KEY_DIFFERS, IMPORT_DIFFERS, FAILED)


@dataclass
class Verdict:
    target: str
    rule: str
    outcome: str
    detail: str = ""


COMMANDS = {"verify": "rebuild targets in a scratch store and compare with navbuild.lock"}


def add_options(parser: argparse.ArgumentParser) -> None:
    verify = parser.add_argument_group("verify")
    verify.add_argument("--sample", type=int, metavar="N", help="rebuild only N targets chosen at random")
    verify.add_argument("--seed", type=int, help="the seed that chooses the sample")


def main(args: argparse.Namespace) -> int:
    session = open_project(args.config, Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config))
    out = console()
    path = lockfile.path_for(session.project.root)
    try:
        lock = lockfile.read(path)
    except lockfile.LockError as exc:
        return _usage_error(str(exc))
    if not lock:
        return _usage_error(f"{path} is missing or empty; run `navbuild all` first to write it")
    chosen = choose(session, lock, args.words[1:], args.sample, args.seed)
    if not chosen:
        return _usage_error(f"{path} holds none of the selected targets")
    if not args.quiet:
        out.print(f"verify: rebuilding {len(chosen)} of {len(lock)} locked targets in a scratch store", highlight=False)
    verdicts = verify(session, lock, chosen)
    print_verdicts(out, verdicts, args.quiet)
    return 1 if any(v.outcome in BAD for v in verdicts) else 0


def _usage_error(message: str) -> int:
    print(f"navbuild: error: {message}", file=sys.stderr)
    return 2


def choose(session: Session, lock: dict[str, lockfile.LockEntry], words: list[str], sample: int | None,
           seed: int | None) -> list[str]:
    """The locked targets to rebuild: the named ones (aliases allowed) or all, then a sample of them."""
    names = [n for n in session.graph.resolve(words)] if words else list(session.graph.targets)
    names = sorted(n for n in names if n in lock)
    if sample is not None and sample < len(names):
        seed = random.SystemRandom().randrange(1 << 30) if seed is None else seed
        names = sorted(random.Random(seed).sample(names, max(sample, 0)))
        console().print(f"verify: sample of {len(names)} chosen with --seed {seed}", highlight=False)
    return names


def verify(session: Session, lock: dict[str, lockfile.LockEntry], chosen: list[str]) -> list[Verdict]:
    """Build ``chosen`` (and what they need) in a scratch store; compare each locked one with the lock."""
    scratch_root = session.store.scratch("verify-")
    try:
        project = replace(session.project, store=scratch_root / "store", out=scratch_root / "out",
                          remote=RemoteSettings())
        scratch = Session(project, session.registry, session.graph, Options(quiet=True))
        scratch.remote = None  # a rebuild answered by a cache would prove nothing
        scratch.keys.forget_lock()  # the lock is compared with afterwards, never used to refuse a rebuild
        records = Scheduler(scratch).build(chosen)  # no lock written: the lock is what it is compared with
        closure = session.graph.closure(chosen)
        verdicts: list[Verdict] = []
        differs: set[str] = set()
        for name in closure:
            if name in lock:
                verdict = _compare(session, scratch, lock[name], records.get(name), differs)
                if verdict.outcome != REPRODUCIBLE:
                    differs.add(name)
                if lock[name].imported and verdict.outcome in (REPRODUCIBLE, IMPORT_DIFFERS):
                    _keep_own_build(session, scratch, name, lock[name].key)
                verdicts.append(verdict)
        scratch.close()
        return verdicts
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def _compare(session: Session, scratch: Session, entry: lockfile.LockEntry, record: Record | None,
             differs: set[str]) -> Verdict:
    name = entry.target
    if record is None or record.status == FAILED:
        reason = record.reason if record else "not built (a dependency failed)"
        return Verdict(name, entry.rule, FAILED, reason or "")
    if record.status == SKIPPED:
        return Verdict(name, entry.rule, SKIPPED, record.reason or "")
    if record.key == entry.key:
        if record.digest == entry.digest:
            if entry.imported:
                return Verdict(name, entry.rule, REPRODUCIBLE, f"imported from {entry.imported}: proven, this "
                                                               f"project builds the same digest")
            return Verdict(name, entry.rule, REPRODUCIBLE, _bytes_note(scratch, name, entry))
        if entry.imported:  # the package's bytes, not a rule that is not deterministic
            return Verdict(name, entry.rule, IMPORT_DIFFERS,
                           f"imported from {entry.imported} with digest {entry.digest[:12]}; this project builds "
                           f"{str(record.digest)[:12]}: the package's artifact is not this project's build, which "
                           f"now replaces it in the store")
        return Verdict(name, entry.rule, NOT_REPRODUCIBLE,
                       f"rule {entry.rule} gave digest {str(record.digest)[:12]}, the lock has {entry.digest[:12]}")
    upstream = [dep for dep in session.graph.targets[name].deps if dep in differs]
    if upstream:
        return Verdict(name, entry.rule, INPUT_DIFFERS, f"{', '.join(upstream)} rebuilt differently")
    return Verdict(name, entry.rule, KEY_DIFFERS, _why_key_differs(session, scratch, name, entry))


def _keep_own_build(session: Session, scratch: Session, name: str, key: str) -> None:
    """An imported build that verify rebuilt: this project's build (objects and manifest) takes its
    place under its key, so it is proven (the same digest) or replaced (another one)."""
    built = scratch.store.get_manifest(key)
    current = session.store.get_manifest(key)
    if built is None or current is None or not isinstance(current.get("imported"), dict):
        return
    session.store.hold_shared()  # gc waits
    with session.store.lock(key):
        for digest in [*built["files"].values(), *([built["log"]] if built.get("log") else [])]:
            session.store.put_file(scratch.store.object_path(digest))
        session.store.put_manifest(key, {k: v for k, v in built.items() if k not in ("key", "schema")})
    bytes_digest = built.get("bytes")  # the lock follows: the key's build is this project's now
    entry = lockfile.LockEntry(name, lockfile.read(lockfile.path_for(session.project.root))[name].rule, key,
                               built["digest"], bytes_digest)
    try:
        lockfile.update(lockfile.path_for(session.project.root), session.graph, [entry])
    except OSError:
        pass  # a read-only checkout: the next build rewrites the entry


def _bytes_note(scratch: Session, name: str, entry: lockfile.LockEntry) -> str:
    """For a canonical digest, whether the files themselves came out the same too."""
    if not entry.bytes:
        return ""
    manifest = scratch.current_manifest(name)
    if manifest is None:
        return ""
    same = tree_digest(manifest["files"]) == entry.bytes
    return "canonical digest; the files are identical too" if same else "canonical digest; the files' bytes differ"


def _why_key_differs(session: Session, scratch: Session, name: str, entry: lockfile.LockEntry) -> str:
    """What changed since the lock was written, from the last build's key material when it matches."""
    last = session.store.get_target_record(name)
    if last is None or last.get("key") != entry.key:
        return "inputs, tools or device differ from when the lock was written (run navbuild all to update it)"
    try:
        _, material = scratch.key(name)
    except keys.Pending:
        return "its inputs could not be rebuilt"
    changes = keys.diff(last["material"], material)
    return "; ".join(changes[:3]) or "the key material differs"


def print_verdicts(out, verdicts: list[Verdict], quiet: bool) -> None:
    from rich.table import Table

    style = {REPRODUCIBLE: "green", NOT_REPRODUCIBLE: "bold red", INPUT_DIFFERS: "yellow",
             KEY_DIFFERS: "yellow", IMPORT_DIFFERS: "bold red", SKIPPED: "yellow", FAILED: "bold red"}
    if not quiet:
        table = Table(title="navbuild verify", header_style="bold")
        for column in ("target", "rule", "result", "detail"):
            table.add_column(column, overflow="fold")
        for v in verdicts:
            table.add_row(v.target, v.rule, f"[{style[v.outcome]}]{v.outcome}[/]", v.detail)
        out.print(table)
    rules = sorted({v.rule for v in verdicts if v.outcome == NOT_REPRODUCIBLE})
    for rule in rules:
        targets = ", ".join(v.target for v in verdicts if v.rule == rule and v.outcome == NOT_REPRODUCIBLE)
        out.print(f"[bold red]not deterministic[/]: rule {rule} ({targets})", highlight=False)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.outcome] = counts.get(v.outcome, 0) + 1
    out.print(", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())), highlight=False)
