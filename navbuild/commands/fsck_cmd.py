"""``navbuild fsck [--repair]``: re-hash every store object, check every manifest and record.

Lists damage (corrupt objects, malformed or dangling manifests, malformed records, stray files)
and garbage (objects no manifest reaches, temp folders of dead processes). ``--repair`` removes
both; a removed manifest's target is simply rebuilt by the next build. Exit code 1 when damage was
found and not repaired. It waits for running builds (the store lock, exclusive).
"""
from __future__ import annotations

import argparse

from navbuild.engine import maintenance
from navbuild.engine.project import open_project
from navbuild.view.console import console


COMMANDS = {"fsck": "re-hash the store and check its manifests (--repair)"}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("fsck").add_argument("--repair", action="store_true",
                                                   help="remove what is damaged and the garbage")


def main(args: argparse.Namespace) -> int:
    session = open_project(args.config)
    out = console()
    try:
        with session.store.exclusive(lambda: out.print("fsck: waiting for running builds to finish")):
            report = maintenance.fsck(session.store, repair=args.repair)
    finally:
        session.close()
    out.print(f"fsck: {session.store.root}: {report.objects} objects re-hashed, {report.manifests} manifests "
              f"and {report.records} target records checked", highlight=False)
    verb = "removed" if report.repaired else "found"
    for problem in report.problems:
        out.print(f"  damage {verb}: {problem}", highlight=False)
    for item in report.garbage:
        out.print(f"  garbage {verb}: {item}", highlight=False)
    if not report.problems and not report.garbage:
        out.print("fsck: the store is sound")
    elif not report.repaired:
        out.print("fsck: run `navbuild fsck --repair` to remove them (their targets are rebuilt when needed)")
    return 1 if report.problems and not report.repaired else 0
