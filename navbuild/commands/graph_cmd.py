"""``navbuild graph [targets]``: the target graph, each target colored by its state, as DOT
(navbuild-out/graph.dot) and as a PNG (navbuild-out/graph.png) where Graphviz is installed."""
from __future__ import annotations

import argparse

from navbuild.commands.status_cmd import state
from navbuild.engine.project import open_project
from navbuild.view.console import console


COMMANDS = {"graph": "the target graph with each target's state, as DOT (and PNG)"}


def main(args: argparse.Namespace) -> int:
    from navbuild.view.graph_dot import render, to_dot

    session = open_project(args.config)
    names = session.graph.closure(session.graph.resolve(args.words[1:] or ["all"]))
    states = {}
    for name in names:
        current, _ = state(session, name)
        shown = {"built": "built", "imported": "built", "failed": "failed", "skipped": "skipped"}
        states[name] = shown.get(current, "stale")
    edges = [(dep, name) for name in names for dep in session.graph.targets[name].deps]
    dot = to_dot(names, edges, states)
    out_dir = session.outputs.own(session.project.out)
    (out_dir / "graph.dot").write_text(dot)
    drawn = render(dot, out_dir / "graph.png")
    console().print(f"graph: {out_dir / 'graph.dot'}" + (f", {out_dir / 'graph.png'}" if drawn else
                                                          " (install Graphviz for a PNG)"), highlight=False)
    session.close()
    return 0
