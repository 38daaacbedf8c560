"""``navbuild clean`` (materialized outputs) and ``navbuild gc [--max-size SIZE]`` (the store), each
with ``--dry-run`` to say what it would remove. Both delete only what navbuild wrote: ``clean`` the
folders it made under ``out`` (``engine/owned.py``) and the files it names there; ``gc`` store
objects named by their digest and its own temp folders."""
from __future__ import annotations

import argparse

from navbuild.engine import owned
from navbuild.engine.graph import CHECK
from navbuild.engine.outputs import LOG_NAMES
from navbuild.engine.keys import Pending
from navbuild.engine.project import open_project
from navbuild.engine.session import Session
from navbuild.sizes import format_size, parse_size
from navbuild.view.console import console


COMMANDS = {"clean": "delete materialized outputs (the store keeps every build; --dry-run)",
            "gc": "delete store objects that no manifest reaches (--max-size SIZE, --dry-run)"}


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("clean and gc")
    group.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    group.add_argument(
        "--max-size", metavar="SIZE", help="gc: then drop the least recently used builds until the store fits "
                                           "(10G, 500M)")


def main(args: argparse.Namespace) -> int:
    session = open_project(args.config)
    try:
        if args.words[0] == "gc":
            return _gc(session, args)
        return _clean(session, args.words[1:], args.dry_run)
    finally:
        session.close()


def _gc(session: Session, args: argparse.Namespace) -> int:
    out = console()
    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError as exc:
        console(stderr=True).print(f"navbuild: error: --max-size: {exc}", highlight=False)
        return 2
    keep = current_keys(session) if max_size is not None else set()
    from navbuild.engine import maintenance

    dry_run = args.dry_run
    with session.store.exclusive(lambda: out.print("gc: waiting for running builds to finish")):
        counts = maintenance.gc(session.store, max_size=max_size, keep=keep, dry_run=dry_run)
    verb, drop = ("would remove", "would drop") if dry_run else ("removed", "dropped")
    out.print(f"gc: {verb} {counts['objects_removed']} objects ({format_size(counts['bytes_freed'])}), "
              f"kept {counts['objects_kept']} ({format_size(counts['bytes_kept'])})"
              + (f"; {drop} {counts['manifests_dropped']} least recently used builds" if max_size is not None else "")
              + (f"; {verb} {counts['temp_removed']} temp folders of dead processes" if counts['temp_removed'] else ""),
              highlight=False)
    if counts["over_budget"]:
        out.print(f"gc: the store is still over {format_size(max_size)}: what remains is what the current "
                  f"targets need", highlight=False)
    return 0


def current_keys(session: Session) -> set[str]:
    """The keys of every target's current build: what ``gc --max-size`` never drops."""
    keys = set()
    for name in session.graph.targets:
        try:
            keys.add(session.key(name)[0])
        except Pending:
            continue
    return keys


def _clean(session: Session, names: list[str], dry_run: bool = False) -> int:
    out = console()
    verb = "would remove" if dry_run else "removed"
    root = session.project.out
    if not names:
        name = session.project.name
        found = owned.removable(root, (f"{name}.nav", f"{name}.profile.json", "graph.dot", "graph.png"),
                                LOG_NAMES.values())
    else:
        folders = {session.out_dir(session.graph.targets[n]) for n in session.graph.resolve(names)
                   if session.graph.targets[n].kind != CHECK}
        found = sorted(f for f in folders if f.is_dir() and owned.is_ours(f, LOG_NAMES.values()))
    if not dry_run:
        owned.remove(found)
    for path in found:
        out.print(f"clean: {verb} {path}", highlight=False)
    if not found:
        out.print(f"clean: nothing that navbuild wrote under {root}", highlight=False)
    if not names and root.is_dir() and root not in found:
        out.print(f"clean: {root} itself is kept: navbuild did not make it (it holds no {owned.MARKER})",
                  highlight=False)
    return 0
