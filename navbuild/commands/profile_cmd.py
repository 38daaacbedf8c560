"""``navbuild profile [targets] [--force]`` and ``navbuild report [models]``.

``profile`` builds the selected artifacts' profile targets (cached per artifact, runner, device
and profile settings; ``--force`` measures again). ``report`` writes, per model,
``navbuild-out/<model>/report/{report.json,profile.png}`` and prints the tables.
"""
from __future__ import annotations

import argparse

from navbuild.commands import build_cmd
from navbuild.engine.options import Options
from navbuild.engine.outputs import REPORT_DIR
from navbuild.engine.project import open_project
from navbuild.view.console import console


COMMANDS = {"profile": "measure latency and throughput of targets (--force: again)",
            "report": "tables, report.json and profile.png per model"}


def main(args: argparse.Namespace) -> int:
    if args.words[0] == "profile":
        return _profile(args)
    return _report(args)


def _profile(args: argparse.Namespace) -> int:
    build_cmd.local_cards(args)  # --gpu-type; profiles run on this machine
    session = open_project(args.config, Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config,
                                                retry_failed=args.retry_failed, gpu_jobs=args.gpu_jobs))
    if not session.project.profile.enabled:
        console(stderr=True).print("navbuild: profiling is disabled ([profile] enabled = false)")
        return 2
    names = [n for n in session.graph.resolve(args.words[1:] or ["all"]) if n.endswith(".profile")]
    code = build_cmd.run(session, names, args, force=set(names) if args.force or args.force_downstream else set())
    if code == 0 or code == 1:
        write_reports(session, [n.split(":", 1)[0] for n in names])
    return code


def _report(args: argparse.Namespace) -> int:
    session = open_project(args.config)
    models = args.words[1:] or list(session.project.models)
    for model in models:
        if model not in session.project.models:
            console(stderr=True).print(f"navbuild: unknown model {model!r}")
            return 2
    write_reports(session, models)
    session.close()
    return 0


def write_reports(session, models: list[str]) -> None:
    from navbuild.view import report
    from navbuild.deploy import status
    from navbuild.measure.correctness import none_passed
    from navbuild.measure.results import ProfileResult
    from navbuild.measure.selection import Selection

    collected, figures = status.collect_all(session, sorted(set(models)))
    tables = {}
    out = console()
    for name, model in figures["models"].items():
        results = {t: ProfileResult.from_dict(v["profile"]) for t, v in model["targets"].items() if v.get("profile")}
        if not results:
            failed = none_passed(collected["models"][name]["targets"])  # the checks stay in the status
            if failed:  # profiling again would change nothing: say why there is no figure
                out.print(f"{name}: {failed}; only correct targets are profiled", highlight=False)
            else:
                out.print(f"{name}: no profile yet (run `navbuild profile {name}`)", highlight=False)
            continue
        strategy = session.project.profile.strategies[0]
        selection = model["selections"].get(strategy)
        selection = Selection.from_dict(selection) if selection else None
        folder = session.outputs.own(session.project.out / name / REPORT_DIR)
        paths = report.write_report(name, results, selection, folder)
        tables[name] = (results, selection)
        out.print(f"{name}: " + ", ".join(str(p) for p in paths.values()), highlight=False)
    report.print_report(tables, out)
