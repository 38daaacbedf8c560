"""``navbuild list``: every target, its rule, device binding, and whether this machine can build it.

The device column is the device a target really needs: ``cuda`` for a rule that runs only on a GPU
(a TensorRT plan) even in a project whose device is ``cpu``. "Can build here" weighs what the rule
needs and what the model's own code imports (``engine/imports.py``: its entry and samples files,
read without running them): a torchvision model on a machine without torchvision cannot be built.
"""
from __future__ import annotations

import argparse

from navbuild.engine import imports
from navbuild.engine.graph import ARTIFACT
from navbuild.engine.project import open_project
from navbuild.rule import entry_file, is_function_entry
from navbuild.view.console import console


COMMANDS = {"list": "every target with its rule, device binding and whether this machine can build it"}


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    session = open_project(args.config)
    names = session.graph.resolve(args.words[1:]) if args.words[1:] else list(session.graph.targets)
    table = Table(header_style="bold")
    for column in ("target", "rule", "precision", "device", "binding", "can build here"):
        table.add_column(column)
    lacking: dict[str, str | None] = {}  # model -> what its code imports that is not installed
    for name in names:
        target = session.graph.targets[name]
        if target.kind != ARTIFACT:
            continue
        rule = target.rule
        model = target.model
        if model.name not in lacking:
            lacking[model.name] = missing_imports_reason(session.project.root, model)
        reason = session.unmet_needs(target) or lacking[model.name]
        table.add_row(name, f"{rule.name} v{rule.version}", target.precision, needed_device(target),
                      "device-bound" if rule.device_bound else "portable",
                      "yes" if reason is None else f"[yellow]no: {reason}[/]")
    out = console()
    out.print(table)
    aliases = ", ".join(sorted(a for a in session.graph.aliases if a not in session.graph.targets))
    out.print(f"aliases: {aliases}")
    return 0


def missing_imports_reason(root, model) -> str | None:
    """``its code imports torchvision, which is not installed``, or None."""
    files = [root / entry_file(text) for text in (model.spec.entry, model.samples) if is_function_entry(text)]
    missing = imports.missing_modules(root, files)
    if not missing:
        return None
    names = ", ".join(missing)
    return f"its code imports {names}, which {'is' if len(missing) == 1 else 'are'} not installed"


def needed_device(target) -> str:
    rule = target.rule
    if target.device not in rule.devices or rule.needs.needs_cuda(target.device):
        return "cuda" if "cuda" in rule.devices or rule.needs.gpu else rule.devices[0]
    return target.device
