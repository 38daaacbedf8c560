"""The target graph as Graphviz DOT, each target colored by its state, with a legend.

``to_dot(nodes, edges, states)`` returns the text; ``render(dot_text, png_path)`` runs the ``dot``
binary when it is installed and returns False when it is not (or fails), so callers can fall back
to writing the ``.dot`` file alone. Targets of one model (``model:target``) share a cluster.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

# state -> (fill color, border color, font color, border style)
STATE_STYLES: dict[str, tuple[str, str, str, str]] = {
    "built": ("#b7e4c7", "#2d6a4f", "#1b4332", "solid"),
    "cached": ("#cfe2f3", "#3d6a99", "#1d3557", "solid"),
    "stale": ("#ffe8a3", "#b7791f", "#5f370e", "solid"),
    "skipped": ("#eeeeee", "#9e9e9e", "#616161", "dashed"),
    "failed": ("#f8c4c4", "#b42318", "#7a271a", "bold"),
}
UNKNOWN_STYLE = ("#ffffff", "#555555", "#333333", "solid")
STATES = tuple(STATE_STYLES)


def quote(text: str) -> str:
    """A DOT double-quoted ID: backslashes, quotes and newlines escaped."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_line(node_id: str, label: str, state: str | None, indent: str) -> str:
    fill, border, font, style = STATE_STYLES.get(state or "", UNKNOWN_STYLE)
    styles = "filled,rounded" + ("" if style == "solid" else f",{style}")
    tooltip = f"{node_id}: {state or 'unknown'}"
    return (f'{indent}{quote(node_id)} [label={quote(label)}, fillcolor="{fill}", color="{border}", '
            f'fontcolor="{font}", style="{styles}", tooltip={quote(tooltip)}];')


def to_dot(nodes: Iterable[str], edges: Iterable[tuple[str, str]], states: Mapping[str, str],
           title: str | None = "navbuild targets", legend: bool = True, cluster_models: bool = True) -> str:
    """DOT text for the target graph.

    nodes   target names (``model:target``); a node named only in ``edges`` is added too
    edges   (upstream, downstream) pairs: the arrow points the way data flows
    states  target -> built | cached | stale | skipped | failed; others and missing ones are
            drawn as "unknown" (white)
    """
    edge_list = sorted({(str(a), str(b)) for a, b in edges})
    names = sorted({str(n) for n in nodes} | {n for e in edge_list for n in e})
    lines = ["digraph navbuild {",
             '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.25, ranksep=0.5];',
             '  node [shape=box, fontname="Helvetica", fontsize=11];',
             '  edge [color="#666666", arrowsize=0.7];']
    if title:
        lines.append(f'  labelloc="t"; label={quote(title)}; fontsize=16;')
    groups: dict[str, list[str]] = {}
    for name in names:
        model, sep, _ = name.partition(":")
        groups.setdefault(model if (sep and cluster_models) else "", []).append(name)
    for index, model in enumerate(sorted(groups)):
        indent = "  "
        if model:
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f'    label={quote(model)}; style="rounded"; color="#bbbbbb"; fontsize=13;')
            indent = "    "
        for name in groups[model]:
            label = name.partition(":")[2] if model else name
            state = states.get(name)
            lines.append(_node_line(name, f"{label}\n{state}" if state else label, state, indent))
        if model:
            lines.append("  }")
    for upstream, downstream in edge_list:
        lines.append(f"  {quote(upstream)} -> {quote(downstream)};")
    if legend:
        lines.append("  subgraph cluster_legend {")
        lines.append('    label="state"; style="rounded"; color="#bbbbbb"; fontsize=13;')
        for state in STATES:
            lines.append(_node_line(f"__legend__:{state}", state, state, "    "))
        chain = " -> ".join(quote(f"__legend__:{s}") for s in STATES)
        lines.append(f"    {chain} [style=invis];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, png_path: Path, timeout_s: float = 60.0) -> bool:
    """Render DOT text to a PNG with Graphviz's ``dot``; False when it is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        return False
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(f".{png_path.name}.{os.getpid()}.tmp")
    try:
        subprocess.run([exe, "-Tpng", "-o", str(tmp)], input=dot_text.encode(), check=True,
                       capture_output=True, timeout=timeout_s)
        os.replace(tmp, png_path)
    except (OSError, subprocess.SubprocessError):
        tmp.unlink(missing_ok=True)
        return False
    return True
