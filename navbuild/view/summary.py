"""The table a build ends with: one row per artifact, its check folded into it."""
from __future__ import annotations

from typing import Any

from navbuild.engine.graph import ARTIFACT
from navbuild.engine.session import FAILED, Record, Session

STATUS_STYLE = {"built": "green", "cached": "cyan", "remote": "blue", "skipped": "yellow", "failed": "bold red"}
FOLD_CACHED_ABOVE = 50  # rows; past this, cached rows are counted, not rendered (-v renders them)


def rows(session: Session, records: dict[str, Record]) -> list[dict[str, Any]]:
    table = []
    for name, record in records.items():
        target = session.graph.targets[name]
        if target.kind != ARTIFACT:
            continue
        check = records.get(f"{name}.check")
        profile = records.get(f"{name}.profile")
        status, reason = record.label, record.reason  # "remote": restored from the remote cache
        if check is not None and check.status == FAILED and status != FAILED:
            status, reason = FAILED, f"correctness: {check.reason}"
        elif check is not None and check.status == "skipped" and status not in ("skipped", FAILED):
            reason = f"check skipped: {check.reason}"
        table.append({"target": name, "status": status, "reason": reason, "digest": record.digest,
                      "seconds": record.seconds + (check.seconds if check else 0.0),
                      "correctness": _correctness_text(check), "throughput": _throughput_text(profile),
                      "record": record, "check": check})
    return table


def _correctness_text(check: Record | None) -> str:
    if check is None or not check.correctness:
        return ""
    outputs = check.correctness.get("outputs", {})
    if not outputs:
        return ""
    worst_abs = max(figures.get("max_abs", 0.0) for figures in outputs.values())
    worst_rel = max(figures.get("max_rel", 0.0) for figures in outputs.values())
    mark = "ok" if check.correctness.get("passed") else "FAIL"
    return f"{mark} abs {worst_abs:.1e} rel {worst_rel:.1e}"


def _throughput_text(profile: Record | None) -> str:
    if profile is None:
        return ""
    if profile.status == "skipped":
        return "not profiled"
    points = (profile.metadata or {}).get("points") or []
    if not points:
        return ""
    best = max(points, key=lambda p: p.get("throughput", 0.0))
    stable = "" if all(p.get("stable", True) for p in points) else " (unstable)"
    return f"{best['throughput']:.4g}/s @ batch {best['batch_size']}{stable}"


def print_summary(console: Any, session: Session, records: dict[str, Record]) -> None:
    from rich.table import Table

    table = Table(title="navbuild", show_lines=False, header_style="bold")
    for column, justify in (("target", "left"), ("status", "left"), ("digest", "left"), ("time", "right"),
                            ("correctness", "left"), ("best throughput", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    data = rows(session, records)
    listed = data
    if len(data) > FOLD_CACHED_ABOVE and not session.options.verbose:  # a large no-op: render only news
        listed = [row for row in data if row["status"] != "cached" or row["reason"]]
    for row in listed:
        status = f"[{STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]"
        if row["reason"]:
            status += f": {row['reason']}"
        digest = (row["digest"] or "")[:12]
        table.add_row(row["target"], status, digest, f"{row['seconds']:.2f} s", row["correctness"],
                      row["throughput"])
    if listed:
        console.print(table)
    if len(listed) < len(data):
        console.print(f"{len(data) - len(listed)} cached targets not listed (-v lists every target)", highlight=False)
    for row in data:
        if row["status"] == FAILED:
            failed = row["record"]
            if failed.status != FAILED and row["check"] is not None:
                failed = row["check"]
            log = failed.metadata.get("log")
            console.print(f"[bold red]{row['target']}[/] failed: {row['reason']}", highlight=False)
            if log:
                console.print(f"  log: {log}", highlight=False)
            console.print(f"  rebuild just it, with full output: [bold]{session.rebuild_command(failed.target)}[/]",
                          highlight=False)
    counts: dict[str, int] = {}
    for row in data:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do", highlight=False)
