"""``navbuild [targets...]``: build the selected targets (``all`` by default) and print a summary.

``navbuild all`` ends by writing the project's ``.nav`` package (navbuild-out/<project>.nav).
``navbuild build --from PKG [targets]`` first puts a package's artifacts into the store under the
keys it records, then builds what is still missing: on the same project every portable target is
found, and only device-bound ones for another GPU are rebuilt.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from navbuild.commands import console
from navbuild.engine.graph import PROFILE
from navbuild.engine import ray_executor
from navbuild.engine.project import open_project
from navbuild.engine.records import BUILT, FAILED, REMOTE, SKIPPED, Record
from navbuild.engine.session import Options, Session


def main(args: argparse.Namespace) -> int:
    options = Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config,
                      remote_cache=getattr(args, "remote_cache", None),
                      remote_read_only=getattr(args, "remote_cache_read_only", False),
                      retry_failed=getattr(args, "retry_failed", False), gpu_jobs=getattr(args, "gpu_jobs", 1))
    executor = ray_executor.parse(getattr(args, "executor", None), getattr(args, "gpu_type", None))
    session = open_project(args.config, options)
    session.store.hold_shared()  # gc waits for this build
    words = args.words or ["all"]
    if words[0] == "build":
        if args.from_package and not _import(session, Path(args.from_package), args):
            return 2
        words = words[1:] or ["all"]
    selected = session.graph.resolve(words)
    force = set(selected) if args.force else set()
    on_nodes = None
    if executor is not None:
        session.forced = force
        say = (lambda line: None) if args.quiet else (lambda line: console(stderr=True).print(line, highlight=False))
        on_nodes = ray_executor.build(session, selected, executor, say)
        force = set()  # the nodes rebuilt them: here they are restored
    code = run(session, selected, args, force=force, on_nodes=on_nodes)
    if words == ["all"]:
        _package(session, args.quiet)
    return code


def _import(session: Session, path: Path, args: argparse.Namespace) -> bool:
    from navbuild.deploy.package import Limits
    from navbuild.engine.package_import import import_package

    if not path.is_file():
        console(stderr=True).print(f"navbuild: error: package {path} does not exist", highlight=False)
        return False
    report = import_package(session, path, Limits.parse(getattr(args, "package_limit", None) or ()))
    out = console()
    proof = (f", signed by {report.signer} (a key in [trust] keys): proven" if report.signer else
             ", unsigned: marked imported until proven (`navbuild verify` rebuilds them here)")
    out.print(f"imported {len(report.imported)} artifacts from {path}"
              + (f" ({len(report.present)} already in the store)" if report.present else "")
              + (proof if report.imported else ""), highlight=False, markup=False)
    if args.verbose:
        for name, why in sorted(report.skipped.items()):
            out.print(f"  not imported: {name}: {why}", highlight=False, markup=False)
    return True


def _package(session: Session, quiet: bool) -> None:
    """The last step of ``navbuild all``; a package error never hides the build's own result."""
    from navbuild.deploy import project_package
    from navbuild.deploy.package import PackageError

    try:
        session.store.hold_shared()
        path = project_package.write_after_build(session, changed=session.built_something)
    except (PackageError, OSError) as exc:  # a full disk, a file-size limit: the build's result stands
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        from rich.markup import escape

        console(stderr=True).print(f"[yellow]package not written: {escape(reason)}[/]", highlight=False)
        return
    finally:
        session.close()
        session.store.remove_dead_temp()  # workers killed by a timeout or a crash
    if path is not None and not quiet:
        console().print(f"package: {path}", highlight=False)


def run(session: Session, selected: list[str], args: argparse.Namespace, force: set[str],
        on_nodes: dict[str, Record] | None = None) -> int:
    """Build ``selected`` (and what they need); print the summary; return navbuild's exit code.
    ``on_nodes``: what the Ray executor ran (this run then only restores, and shows their nodes)."""
    from navbuild.engine import doit_glue
    from navbuild.view import progress, summary

    session.forced = force
    session.store.hold_shared()
    session.store.remove_dead_temp()  # what killed builds and workers left behind
    out = console()
    try:
        closure = session.graph.closure(selected)
        reporter = progress.Reporter(console(stderr=True), total=len(closure),
                                     lookup=lambda name: session.collect_records([name]).get(name),
                                     verbose=args.verbose, quiet=args.quiet)
        doit_glue.run(session, selected, jobs=args.jobs, reporter=reporter)
        records = session.collect_records(closure)
        if on_nodes is not None:
            records = ray_executor.merge(records, on_nodes)
        for name in closure:
            if name not in records:
                records[name] = _not_run(session, name, records)
        shown = {name: records[name] for name in closure}
        stale = session.outputs.prune()
        session.built_something = any(r.status == BUILT or r.origin == REMOTE for r in shown.values())
        _write_lock(session, shown)
        if getattr(args, "json", None):
            Path(args.json).write_text(json.dumps({n: r.to_dict() for n, r in shown.items()}, indent=2,
                                                  sort_keys=True, default=str) + "\n")
        if args.quiet:
            for record in shown.values():
                if record.status == FAILED:
                    out.print(f"failed {record.target}: {record.reason}", highlight=False)
        else:
            summary.print_summary(out, session, shown)
            if stale:
                out.print(f"removed outputs of targets no longer declared: {', '.join(stale)}", highlight=False)
        return 1 if any(r.status == FAILED for r in shown.values()) else 0
    finally:
        session.close()
        session.store.remove_dead_temp()  # workers killed by a timeout or a crash


def _write_lock(session: Session, records: dict[str, Record]) -> None:
    """navbuild.lock gets this run's keys and digests (see navbuild.engine.lockfile)."""
    from navbuild.engine import lockfile
    from navbuild.hashing import tree_digest

    entries = []
    for record in records.values():
        files_digest = None
        if record.digest and record.digest.startswith("c"):  # a canonical digest: lock the bytes' too
            manifest = session.current_manifest(record.target)
            files_digest = tree_digest(manifest["files"]) if manifest else None
        entry = lockfile.entry_of(session.graph, record, files_digest)
        if entry is not None:
            entries.append(entry)
    try:
        lockfile.update(lockfile.path_for(session.project.root), session.graph, entries)
    except OSError as exc:  # a read-only checkout still builds
        console(stderr=True).print(f"[yellow]navbuild.lock not written: {exc}[/]", highlight=False)


def _not_run(session: Session, name: str, records: dict[str, Record]) -> Record:
    """doit does not run a target whose dependency failed: say which."""
    target = session.graph.targets[name]
    failed = [d for d in target.deps if d not in records or records[d].status == FAILED]
    if target.kind == PROFILE:
        return Record(name, SKIPPED, reason=f"not profiled: {', '.join(failed) or 'a dependency'} failed")
    return Record(name, FAILED, reason=f"not run: {', '.join(failed) or 'a dependency'} failed")
