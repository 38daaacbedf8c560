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

from navbuild.engine import cards, lockfile, ray_executor
from navbuild.engine.options import Options
from navbuild.engine.project import open_project
from navbuild.engine.records import BUILT, FAILED, REMOTE
from navbuild.engine.scheduler import LocalExecutor, Scheduler
from navbuild.engine.session import Session
from navbuild.view import progress, summary
from navbuild.view.console import console

COMMANDS = {"build": "build targets; --from PKG first imports a .nav package"}


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_options(parser: argparse.ArgumentParser) -> None:
    build = parser.add_argument_group("build (the default command) and profile")
    build.add_argument("-j", "--jobs", type=at_least_one, default=1,
                       help="CPU targets built in parallel (worker processes)")
    build.add_argument("--gpu-jobs", type=at_least_one, default=None, metavar="N",
                       help="GPU targets at once beside them, spread over the visible GPUs, each in a worker pinned "
                            "to its card (default: one per GPU)")
    build.add_argument("--executor", metavar="KIND", default=None,
                       help="local (default), or ray / ray:auto / ray:HOST:PORT / ray://HOST:PORT: targets run as "
                            "Ray tasks, artifacts travel through the remote cache (docs/distributed.md)")
    build.add_argument("--gpu-type", metavar="TYPE",
                       help="GPU targets run on cards of this type (H100, A100, ...): this machine's, or with "
                            "--executor ray the nodes'")
    build.add_argument("--ray-timeout", type=float, default=ray_executor.CONNECT_TIMEOUT_S, metavar="S",
                       help="--executor ray: give up when nothing answers at the address after S seconds "
                            f"(default {ray_executor.CONNECT_TIMEOUT_S:g})")
    build.add_argument("--force", action="store_true",
                       help="rebuild the named targets even when cached (only them: what depends on them rebuilds "
                            "only if their output changes)")
    build.add_argument("--force-downstream", action="store_true",
                       help="rebuild the named targets and everything selected that depends on them (their checks, "
                            "profiles, conversions) even when cached")
    build.add_argument("--retry-failed", action="store_true",
                       help="run targets that failed before with the same inputs (else their failure is replayed)")
    build.add_argument("--json", metavar="PATH", help="also write every target's status and figures as JSON")
    build.add_argument("--table", action="store_true",
                       help="print the summary table even when nothing changed (else one line says so)")
    build.add_argument("--from", dest="from_package", metavar="PKG", help="build: import this .nav package first")
    build.add_argument("--package-limit", action="append", metavar="NAME=SIZE",
                       help="build --from: raise a limit on what a package may hold (entry=16G, total=64G, "
                            "entries=100000, ratio=200, status=64M)")
    remote = parser.add_argument_group("remote cache (docs/remote-cache.md)")
    remote.add_argument("--remote-cache", metavar="URL",
                        help="share builds through this cache: http(s):// (Bazel's layout), file://, s3://, ...")
    remote.add_argument("--remote-cache-read-only", action="store_true",
                        help="restore from the remote cache, never upload (untrusted builds)")


def main(args: argparse.Namespace) -> int:
    options = Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config, remote_cache=args.remote_cache,
                      remote_read_only=args.remote_cache_read_only, retry_failed=args.retry_failed,
                      gpu_jobs=args.gpu_jobs)
    executor = local_cards(args)
    session = open_project(args.config, options)
    session.store.hold_shared()  # gc waits for this build
    words = args.words or ["all"]
    if words[0] == "build":
        if args.from_package and not _import(session, Path(args.from_package), args):
            return 2
        words = words[1:] or ["all"]
    selected = session.graph.resolve(words)
    if executor is not None and not args.quiet:
        executor.say = lambda line: console(stderr=True).print(line, highlight=False)
    code = run(session, selected, args, force=forced(session, words, selected, args), executor=executor)
    if words == ["all"]:
        _package(session, args.quiet)
    return code


def local_cards(args: argparse.Namespace) -> ray_executor.RayExecutor | None:
    """The Ray executor when one is named; else ``--gpu-type`` narrows this machine's cards to that
    type, before any key is computed."""
    executor = ray_executor.parse(args.executor, args.gpu_type, args.ray_timeout)
    if executor is None and args.gpu_type:
        cards.narrow_to_type(args.gpu_type)
    return executor


def forced(session: Session, words: list[str], selected: list[str], args: argparse.Namespace) -> set[str]:
    """What ``--force`` rebuilds: the targets the words name (an alias names its targets, not their
    checks and profiles); ``--force-downstream``: those and what depends on them among ``selected``."""
    if not (args.force or args.force_downstream):
        return set()
    named = session.graph.resolve(words, measures=False)
    return session.graph.downstream(named, selected) if args.force_downstream else set(named)


def _import(session: Session, path: Path, args: argparse.Namespace) -> bool:
    from navbuild.deploy.package import Limits
    from navbuild.deploy.package_import import import_package

    if not path.is_file():
        console(stderr=True).print(f"navbuild: error: package {path} does not exist", highlight=False)
        return False
    report = import_package(session, path, Limits.parse(args.package_limit or ()))
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
        executor: ray_executor.RayExecutor | None = None) -> int:
    """Build ``selected`` (and what they need) through the scheduler; print the summary; return
    navbuild's exit code. ``executor``: the Ray executor, else this machine's worker processes."""
    session.forced = force
    session.store.remove_dead_temp()  # what killed builds and workers left behind
    out = console()
    try:
        closure = session.graph.closure(selected)
        with progress.Reporter(console(stderr=True), total=len(closure), verbose=args.verbose, quiet=args.quiet,
                               kinds=progress.kinds_of(session, closure)) as reporter:
            scheduler = Scheduler(session, executor or LocalExecutor(args.jobs), listeners=[reporter],
                                  lock=lockfile.path_for(session.project.root),
                                  warn=lambda text: console(stderr=True).print(f"[yellow]{text}[/]", highlight=False))
            shown = scheduler.build(selected)
        stale = session.outputs.prune()
        session.built_something = any(r.status == BUILT or r.origin == REMOTE for r in shown.values())
        if args.json:
            Path(args.json).write_text(json.dumps({n: r.to_dict() for n, r in shown.items()}, indent=2,
                                                  sort_keys=True, default=str) + "\n")
        if args.quiet:
            for record in shown.values():
                if record.status == FAILED and not record.blocked_by:
                    out.print(f"failed {record.target}: {record.reason}", highlight=False, markup=False)
            for line in summary.not_run_lines(shown):
                out.print(line, highlight=False, markup=False)
        else:
            summary.print_summary(out, session, shown, wall=scheduler.wall, table=getattr(args, "table", False))
            if stale:
                out.print(f"removed outputs of targets no longer declared: {', '.join(stale)}", highlight=False)
        return 1 if any(r.status == FAILED for r in shown.values()) else 0
    finally:
        session.close()
        session.store.remove_dead_temp()  # workers killed by a timeout or a crash
