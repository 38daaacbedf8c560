"""``navbuild [targets...]``: build the selected targets (``all`` by default) and print a summary."""
from __future__ import annotations

import argparse

from navbuild.commands import console
from navbuild.project import open_project
from navbuild.session import FAILED, Options, clear_run_dir, new_run_dir


def main(args: argparse.Namespace) -> int:
    from navbuild import doit_glue, progress, summary

    options = Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config)
    session = open_project(args.config, options)
    selected = session.graph.resolve(args.words or ["all"])
    if args.force:
        session.forced = set(selected)
    run_dir = new_run_dir(session.store.root)
    session.options.run_dir = run_dir
    out = console()
    try:
        closure = session.graph.closure(selected)
        reporter = progress.Reporter(console(stderr=True), total=len(closure),
                                     lookup=lambda name: session.collect_records([name]).get(name),
                                     verbose=args.verbose, quiet=args.quiet)
        doit_glue.run(session, selected, jobs=args.jobs, reporter=reporter)
        records = session.collect_records(closure)
        for name in closure:  # targets doit did not run because a dependency failed
            if name not in records:
                from navbuild.session import Record

                failed_deps = [d for d in session.graph.targets[name].deps if records.get(d, None) is None
                               or records[d].status == FAILED]
                records[name] = Record(name, FAILED, reason=f"not run: {', '.join(failed_deps) or 'a dependency'} failed")
        shown = {name: records[name] for name in closure if name in records}
        if args.json:
            _write_json(args.json, shown)
        if not args.quiet:
            summary.print_summary(out, session, shown)
        else:
            _print_failures(out, shown)
        return 1 if any(r.status == FAILED for r in shown.values()) else 0
    finally:
        session.close()
        clear_run_dir(run_dir)
        run_dir.rmdir()


def _write_json(path: str, records) -> None:
    import json
    from pathlib import Path

    data = {name: record.to_dict() for name, record in records.items()}
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _print_failures(out, records) -> None:
    for record in records.values():
        if record.status == FAILED:
            out.print(f"failed {record.target}: {record.reason}", highlight=False)
