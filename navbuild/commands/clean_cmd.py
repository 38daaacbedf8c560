"""``navbuild clean`` (materialized outputs) and ``navbuild gc [--max-size SIZE]`` (the store)."""
from __future__ import annotations

import argparse
import shutil

from navbuild.engine.graph import CHECK
from navbuild.engine.keys import Pending
from navbuild.engine.project import open_project
from navbuild.engine.session import Session
from navbuild.sizes import format_size, parse_size
from navbuild.view.console import console


COMMANDS = {"clean": "delete materialized outputs (the store keeps every build)",
            "gc": "delete store objects that no manifest reaches (--max-size SIZE)"}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("gc").add_argument(
        "--max-size", metavar="SIZE", help="then drop the least recently used builds until the store fits (10G, 500M)")


def main(args: argparse.Namespace) -> int:
    session = open_project(args.config)
    try:
        if args.words[0] == "gc":
            return _gc(session, args)
        return _clean(session, args.words[1:])
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

    with session.store.exclusive(lambda: out.print("gc: waiting for running builds to finish")):
        counts = maintenance.gc(session.store, max_size=max_size, keep=keep)
    out.print(f"gc: removed {counts['objects_removed']} objects ({format_size(counts['bytes_freed'])}), "
              f"kept {counts['objects_kept']} ({format_size(counts['bytes_kept'])})"
              + (f"; dropped {counts['manifests_dropped']} least recently used builds" if max_size is not None else ""),
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


def _clean(session: Session, names: list[str]) -> int:
    out = console()
    if not names:
        shutil.rmtree(session.project.out, ignore_errors=True)
        out.print(f"clean: removed {session.project.out}")
        return 0
    for name in session.graph.resolve(names):
        target = session.graph.targets[name]
        if target.kind != CHECK:
            shutil.rmtree(session.out_dir(target), ignore_errors=True)
            out.print(f"clean: removed {session.out_dir(target)}")
    return 0
