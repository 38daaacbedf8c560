"""``navbuild list``: every target, its rule, device binding, and whether this machine can build it."""
from __future__ import annotations

import argparse

from navbuild.commands import console
from navbuild.engine.graph import ARTIFACT
from navbuild.engine.project import open_project


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    session = open_project(args.config)
    names = session.graph.resolve(args.words[1:]) if args.words[1:] else list(session.graph.targets)
    table = Table(header_style="bold")
    for column in ("target", "rule", "precision", "device", "binding", "can build here"):
        table.add_column(column)
    for name in names:
        target = session.graph.targets[name]
        if target.kind != ARTIFACT:
            continue
        rule = target.rule
        reason = session.unmet_needs(target)
        table.add_row(name, f"{rule.name} v{rule.version}", target.precision, target.device,
                      "device-bound" if rule.device_bound else "portable",
                      "yes" if reason is None else f"[yellow]no: {reason}[/]")
    out = console()
    out.print(table)
    aliases = ", ".join(sorted(a for a in session.graph.aliases if a not in session.graph.targets))
    out.print(f"aliases: {aliases}")
    return 0
