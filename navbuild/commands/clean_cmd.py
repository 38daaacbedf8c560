"""``navbuild clean`` (materialized outputs) and ``navbuild gc`` (unreachable store objects)."""
from __future__ import annotations

import argparse
import shutil

from navbuild.commands import console
from navbuild.engine.graph import CHECK
from navbuild.engine.project import open_project


def main(args: argparse.Namespace) -> int:
    session = open_project(args.config)
    out = console()
    if args.words[0] == "gc":
        counts = session.store.gc()
        out.print(f"gc: removed {counts['objects_removed']} objects ({counts['bytes_freed'] / 1e6:.1f} MB), "
                  f"kept {counts['objects_kept']}")
        return 0
    names = args.words[1:]
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
