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


def print_steps(console: Any, package: Any, title: str | None = None) -> None:
    """Every step of this run for the model (samples, reference, each export or conversion, its
    check and its profile): status, seconds, reason (``NAVIGATOR_CONSOLE_OUTPUT=detailed``)."""
    from rich.table import Table

    table = Table(title=f"{title or package.name}: steps", header_style="bold", title_justify="left")
    for column in ("step", "status", "seconds", "reason"):
        table.add_column(column, overflow="fold")
    for name, record in package.records.items():
        status = f"[{STYLE.get(record.status, '')}]{record.label}[/]"
        table.add_row(name.split(":", 1)[1], status, f"{record.seconds:.2f}" if record.seconds else "",
                      record.reason or "")
    console.print(table)


def print_model(console: Any, package: Any, **options: Any) -> None:
    """What the console output mode asks for after one model's build (api/environment.py)."""
    from navbuild.api.environment import console_output

    mode = console_output()
    if mode == "none":
        return
    print_package(console, package, **options)
    if mode in ("detailed", "logs"):
        print_steps(console, package, options.get("title"))


def _chosen(package: Any, strategy: str) -> str | None:
    try:
        return package.selected(strategy)
    except Exception:  # nothing usable: the table says why per target
        return None
