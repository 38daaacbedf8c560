"""The table an API call prints per model (per module for in-place optimization)."""
from __future__ import annotations

from typing import Any

STYLE = {"built": "green", "cached": "cyan", "skipped": "yellow", "failed": "bold red", "missing": "dim"}


def print_package(console: Any, package: Any, title: str | None = None, note: str | None = None,
                  strategy: str = "max-throughput") -> None:
    """One row per target; ``*`` marks the target ``strategy`` selects."""
    from rich.table import Table

    table = Table(title=title or package.name, header_style="bold", title_justify="left")
    for column in ("target", "status", "correct", "best throughput", "p50 latency"):
        table.add_column(column, overflow="fold")
    chosen = _chosen(package, strategy)
    for name, target in package.targets.items():
        status = f"[{STYLE.get(target.status, '')}]{target.status}[/]"
        if target.reason:
            status += f": {target.reason}"
        correct = {None: "", True: "ok", False: "FAIL"}[target.correct]
        if package.verified.get(name) is False:
            correct += " (verify_func refused it)"
        throughput = f"{target.throughput:.4g}/s" if target.throughput else ""
        latency = f"{target.latency_ms:.3g} ms" if target.latency_ms else ""
        table.add_row(("* " if name == chosen else "  ") + name, status, correct, throughput, latency)
    console.print(table)
    lines = [note] if note else []
    if chosen:
        lines.append(f"selected ({strategy}): {chosen}")
    if lines:
        console.print("; ".join(lines), highlight=False)


def _chosen(package: Any, strategy: str) -> str | None:
    try:
        return package.selected(strategy)
    except Exception:  # nothing usable: the table says why per target
        return None
