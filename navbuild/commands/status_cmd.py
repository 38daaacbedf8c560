"""``navbuild status`` and ``navbuild explain TARGET``: diffs between the last build and now.

Like ``dvc status``: the key material of each target's last build (kept in the store) against the
material its inputs give now; nothing is guessed and nothing is built.
"""
from __future__ import annotations

import argparse

from navbuild.engine import keys
from navbuild.engine.graph import CHECK
from navbuild.engine.project import open_project
from navbuild.engine.records import origin_text
from navbuild.engine.session import Session
from navbuild.view.console import console


COMMANDS = {"status": "what is built, stale or missing, and why",
            "explain": "which inputs changed since a target's last build"}


def state(session: Session, name: str) -> tuple[str, str]:
    """(state, why) of one target: built, stale, missing, skipped, or waiting on an upstream."""
    target = session.graph.targets[name]
    reason = session.unmet_needs(target)
    if reason:
        return "skipped", reason
    try:
        key, material = session.key(name)
    except keys.Pending as pending:
        return "stale", f"waits for {pending.upstream}"
    manifest = session.store.get_manifest(key)
    if manifest is not None and session.keys.acceptable(name, manifest):
        if target.kind == CHECK and not manifest.get("metadata", {}).get("passed", False):
            return "failed", (manifest["metadata"].get("failures") or ["correctness failed"])[0]
        if isinstance(manifest.get("imported"), dict):  # a package's build, not this project's
            imported = manifest["imported"]
            proof = "" if imported.get("signer") else f"; not proven: `navbuild verify {name}` rebuilds it here"
            return "imported", f"from {origin_text(imported)}{proof}"
        return "built", ""
    last = session.store.get_target_record(name)
    if last is None:
        return "missing", "never built"
    changes = keys.diff(last.get("material", {}), material)
    if not changes:
        return "stale", "its build is no longer in the store"
    return "stale", "; ".join(changes[:3]) + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else "")


def main(args: argparse.Namespace) -> int:
    command, names = args.words[0], args.words[1:]
    session = open_project(args.config)
    if command == "explain":
        if not names:
            print("usage: navbuild explain TARGET...")
            return 2
        return _explain(session, session.graph.resolve(names))
    return _status(session, session.graph.resolve(names or ["all"]))


def _status(session: Session, names: list[str]) -> int:
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("target")
    table.add_column("state")
    table.add_column("why")
    style = {"built": "green", "imported": "magenta", "stale": "yellow", "missing": "yellow", "skipped": "dim",
             "failed": "red"}
    for name in session.graph.closure(names):
        current, why = state(session, name)
        table.add_row(name, f"[{style[current]}]{current}[/]", why)
    console().print(table)
    session.close()
    return 0


def _explain(session: Session, names: list[str]) -> int:
    out = console()
    for name in names:
        current, why = state(session, name)
        out.print(f"[bold]{name}[/]: {current}" + (f" ({why})" if why else ""))
        _explain_inputs(session, name, out, indent="  ", seen=set())
    session.close()
    return 0


def _explain_inputs(session: Session, name: str, out, indent: str, seen: set[str]) -> None:
    """What changed in ``name``'s inputs; through stale upstreams, down to the edited files."""
    seen.add(name)
    try:
        key, material = session.key(name)
    except keys.Pending as pending:
        upstream = pending.upstream
        out.print(f"{indent}its key waits for {upstream}, which must be rebuilt first:")
        if upstream not in seen:
            _explain_inputs(session, upstream, out, indent + "  ", seen)
        return
    last = session.store.get_target_record(name)
    if last is None:
        out.print(f"{indent}{name}: no earlier build recorded")
        return
    changes = keys.diff(last.get("material", {}), material)
    if not changes:
        out.print(f"{indent}{name}: inputs unchanged since the last build (key {key[:12]})")
    for line in changes:
        out.print(f"{indent}{name}: changed {line}", highlight=False)
