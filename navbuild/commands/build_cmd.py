"""``navbuild [targets...]``: build the selected targets (``all`` by default) and print a summary.

``navbuild all`` ends by writing the project's ``.nav`` package (navbuild-out/<project>.nav).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from navbuild.commands import console
from navbuild.graph import PROFILE
from navbuild.project import open_project
from navbuild.session import BUILT, FAILED, SKIPPED, Options, Record, Session, clear_run_dir, new_run_dir


def main(args: argparse.Namespace) -> int:
    options = Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config)
    session = open_project(args.config, options)
    words = args.words or ["all"]
    selected = session.graph.resolve(words)
    code = run(session, selected, args, force=set(selected) if args.force else set())
    if words == ["all"]:
        from navbuild.commands import deploy_cmd

        deploy_cmd.package_after_build(session, changed=session.built_something, quiet=args.quiet)
    return code


def run(session: Session, selected: list[str], args: argparse.Namespace, force: set[str]) -> int:
    """Build ``selected`` (and what they need); print the summary; return navbuild's exit code."""
    from navbuild import doit_glue, progress, summary

    session.forced = force
    # worker processes (-j) report through files; one process keeps its records in memory
    run_dir = new_run_dir(session.store.root) if args.jobs > 1 else None
    session.options.run_dir = run_dir
    out = console()
    try:
        closure = session.graph.closure(selected)
        reporter = progress.Reporter(console(stderr=True), total=len(closure),
                                     lookup=lambda name: session.collect_records([name]).get(name),
                                     verbose=args.verbose, quiet=args.quiet)
        doit_glue.run(session, selected, jobs=args.jobs, reporter=reporter)
        records = session.collect_records(closure)
        for name in closure:
            if name not in records:
                records[name] = _not_run(session, name, records)
        shown = {name: records[name] for name in closure}
        session.built_something = any(r.status == BUILT for r in shown.values())
        if getattr(args, "json", None):
            Path(args.json).write_text(json.dumps({n: r.to_dict() for n, r in shown.items()}, indent=2,
                                                  sort_keys=True, default=str) + "\n")
        if args.quiet:
            for record in shown.values():
                if record.status == FAILED:
                    out.print(f"failed {record.target}: {record.reason}", highlight=False)
        else:
            summary.print_summary(out, session, shown)
        return 1 if any(r.status == FAILED for r in shown.values()) else 0
    finally:
        session.close()
        if run_dir is not None:
            clear_run_dir(run_dir)
            run_dir.rmdir()


def _not_run(session: Session, name: str, records: dict[str, Record]) -> Record:
    """doit does not run a target whose dependency failed: say which."""
    target = session.graph.targets[name]
    failed = [d for d in target.deps if d not in records or records[d].status == FAILED]
    if target.kind == PROFILE:
        return Record(name, SKIPPED, reason=f"not profiled: {', '.join(failed) or 'a dependency'} failed")
    return Record(name, FAILED, reason=f"not run: {', '.join(failed) or 'a dependency'} failed")
