"""``navbuild list``: every target, its rule, device binding, and whether this machine can build it.

The device column is the device a target really needs: ``cuda`` for a rule that runs only on a GPU
(a TensorRT plan) even in a project whose device is ``cpu``.
"""
from __future__ import annotations

import argparse

from navbuild.engine.graph import ARTIFACT
from navbuild.engine.project import open_project
from navbuild.view.console import console


COMMANDS = {"list": "every target with its rule, device binding and whether this machine can build it"}


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
        table.add_row(name, f"{rule.name} v{rule.version}", target.precision, needed_device(target),
                      "device-bound" if rule.device_bound else "portable",
                      "yes" if reason is None else f"[yellow]no: {reason}[/]")
    out = console()
    out.print(table)
    aliases = ", ".join(sorted(a for a in session.graph.aliases if a not in session.graph.targets))
    out.print(f"aliases: {aliases}")
    return 0


def needed_device(target) -> str:
    rule = target.rule
    if target.device not in rule.devices or rule.needs.needs_cuda(target.device):
        return "cuda" if "cuda" in rule.devices or rule.needs.gpu else rule.devices[0]
    return target.device
