"""``navbuild status`` and ``navbuild explain TARGET``: diffs between the last build and now.

Like ``dvc status``: the key material of each target's last build (kept in the store) against the
material its inputs give now; nothing is guessed and nothing is built.
"""
from __future__ import annotations

import argparse
from typing import Any

from navbuild.engine import keys
from navbuild.engine.graph import CHECK
from navbuild.engine.project import open_project
from navbuild.engine.records import origin_text
from navbuild.engine.session import Session
from navbuild.view.console import console


COMMANDS = {"status": "what is built, stale, may rebuild or is missing, and why",
            "explain": "which inputs changed since a target's last build"}
MAY_REBUILD = "may rebuild"  # its own inputs are unchanged; an upstream that is not built may change them


def state(session: Session, name: str) -> tuple[str, str]:
    """(state, why) of one target: built, stale (its own inputs changed), may rebuild (only an
    upstream without a build changed: it rebuilds if that upstream's output changes), missing,
    skipped or failed."""
    target = session.graph.targets[name]
    reason = session.unmet_needs(target)
    if reason:
        return "skipped", reason
    try:
        key, _ = session.key(name)
    except keys.Pending:
        key = None
    manifest = session.store.get_manifest(key) if key is not None else None
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
    changes, waits = own_changes(session, name, last)
    if changes:
        return "stale", "; ".join(changes[:3]) + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else "")
    if waits:
        return MAY_REBUILD, f"after {', '.join(waits)}, if {'they give' if len(waits) > 1 else 'it gives'} " \
                            f"another output"
    return "stale", "its build is no longer in the store"


def own_changes(session: Session, name: str, last: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What changed in ``name``'s own inputs since its last build, each upstream that is not built
    taken as unchanged; and those upstreams."""
    material, waits = session.keys.provisional(name)
    return keys.diff(last.get("material", {}), keys.assume_unchanged(material, last.get("material", {}))), waits


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
    style = {"built": "green", "imported": "magenta", "stale": "yellow", MAY_REBUILD: "dim yellow",
             "missing": "yellow", "skipped": "dim", "failed": "red"}
    closure = session.graph.closure(names)
    for name in closure:
        current, why = state(session, name)
        table.add_row(name, f"[{style[current]}]{current}[/]", why)
    out = console()
    out.print(table)
    undeclared = discovered_not_declared(session, closure)
    if undeclared:
        out.print("read by the models' code but not in their sources (found by the build, and followed: "
                  "list them to make it explicit): " + "; ".join(f"{model}: {', '.join(files)}"
                                                         for model, files in sorted(undeclared.items())),
                  highlight=False, markup=False)
    session.close()
    return 0


def discovered_not_declared(session: Session, names: list[str]) -> dict[str, list[str]]:
    """Per model, the files its last builds discovered that ``sources`` does not list (said once each)."""
    found: dict[str, set[str]] = {}
    for name in names:
        target = session.graph.targets[name]
        if not keys.discovers(target):
            continue
        record = session.store.get_target_record(name) or {}
        discovered = (record.get("material", {}).get("discovered") or {}).get("sources") or {}
        found.setdefault(target.spec.name, set()).update(discovered)
    return {model: sorted(files) for model, files in found.items() if files}


def _explain(session: Session, names: list[str]) -> int:
    out = console()
    for name in names:
        current, why = state(session, name)
        out.print(f"[bold]{name}[/]: {current}" + (f" ({why})" if why else ""))
        _explain_inputs(session, name, out, indent="  ", seen=set())
    session.close()
    return 0


def _explain_inputs(session: Session, name: str, out, indent: str, seen: set[str]) -> None:
    """What changed in ``name``'s own inputs, then, through each upstream that is not built, down to
    the edited files."""
    seen.add(name)
    last = session.store.get_target_record(name)
    if last is None:
        _never_built_here(session, name, out, indent)
        return
    changes, waits = own_changes(session, name, last)
    if not changes and not waits:
        out.print(f"{indent}{name}: inputs unchanged since the last build (key {last.get('key', '')[:12]})",
                  highlight=False)
    for line in changes:
        out.print(f"{indent}{name}: changed {line}", highlight=False)
    for upstream in waits:
        out.print(f"{indent}{name} also waits for {upstream}, which must be rebuilt first"
                  + (":" if upstream not in seen else " (above)"), highlight=False)
        if upstream not in seen:
            _explain_inputs(session, upstream, out, indent + "  ", seen)


def _never_built_here(session: Session, name: str, out, indent: str) -> None:
    """No build of ``name`` recorded: a target renamed with its model finds its builds under its key,
    recorded under the earlier name."""
    try:
        key, _ = session.key(name)
    except keys.Pending:
        key = None
    manifest = session.store.get_manifest(key) if key is not None else None
    earlier = manifest.get("target") if manifest is not None else None
    if earlier and earlier != name:
        out.print(f"{indent}{name}: no build recorded under this name; its key ({key[:12]}) was built as "
                  f"{earlier} (a renamed model keeps its builds)", highlight=False)
    else:
        out.print(f"{indent}{name}: no earlier build recorded", highlight=False)
