"""The table a build ends with: one row per artifact, its check and profile folded into it, then
how many targets of each kind ran (artifacts, checks, profiles: they add up to every target of
the run) and the time each kind took."""
from __future__ import annotations

from typing import Any

from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE
from navbuild.engine.records import FAILED, Record
from navbuild.engine.session import Session

KINDS = ((ARTIFACT, "artifacts", "build"), (CHECK, "checks", "check"), (PROFILE, "profiles", "profile"))

STATUS_STYLE = {"built": "green", "cached": "cyan", "remote": "blue", "imported": "magenta", "skipped": "yellow",
                "failed": "bold red"}
FOLD_CACHED_ABOVE = 50  # rows; past this, cached rows are counted, not rendered (-v renders them)


def rows(session: Session, records: dict[str, Record]) -> list[dict[str, Any]]:
    table = []
    for name, record in records.items():
        target = session.graph.targets[name]
        if target.kind != ARTIFACT:
            continue
        check = records.get(f"{name}.check")
        profile = records.get(f"{name}.profile")
        status, reason = record.label, record.reason  # "remote": from the remote cache; "imported": a package
        if check is not None and check.status == FAILED and status != FAILED:
            status, reason = FAILED, f"correctness: {check.reason}"
        elif check is not None and check.status == "skipped" and status not in ("skipped", FAILED):
            reason = f"check skipped: {check.reason}"
        table.append({"target": name, "status": status, "reason": reason, "digest": record.digest,
                      "seconds": record.seconds, "check_seconds": check.seconds if check else None,
                      "profile_seconds": profile.seconds if profile else None,
                      "correctness": _correctness_text(check), "throughput": _throughput_text(profile),
                      "record": record, "check": check, "node": record.node,
                      "gpus": _gpus_text(record, check, profile)})
    return table


def _gpus_text(*records: Record | None) -> str:
    """The cards that built, checked and profiled an artifact (``0/0/3``; ``-`` where none ran)."""
    cards = [str(r.gpu) if r is not None and r.gpu is not None else "-" for r in records]
    return "" if set(cards) == {"-"} else "/".join(cards)


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
    figure = best["throughput"]
    text = f"{figure:.0f}" if figure >= 100 else f"{figure:.3g}"
    return f"{text}/s @ batch {best['batch_size']}{_caveat(points)}"


def _caveat(points: list[dict[str, Any]]) -> str:
    """What keeps the figures from being settled: the budget, or noise."""
    ended = {p.get("ended") or ("stable" if p.get("stable", True) else "max_trials") for p in points}
    for word, note in (("budget", "budget reached"), ("max_trials", "unstable")):
        if word in ended:
            return f" ({note})"
    return ""


def counts(session: Session, records: dict[str, Record]) -> list[tuple[str, dict[str, int], float]]:
    """Per kind of target: its name, how many ended in each status, and the seconds they took."""
    found = []
    for kind, label, _ in KINDS:
        of_kind = [r for name, r in records.items() if session.graph.targets[name].kind == kind]
        by_status: dict[str, int] = {}
        for record in of_kind:  # by label: a target restored from the remote cache counts as "remote"
            by_status[record.label] = by_status.get(record.label, 0) + 1
        found.append((label, by_status, sum(r.seconds for r in of_kind)))
    return found


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def print_summary(console: Any, session: Session, records: dict[str, Record]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title="navbuild", show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
                  collapse_padding=True, pad_edge=False)
    data = rows(session, records)
    on_cards = any(row["gpus"] for row in data)  # the GPU column only where a card ran something
    for column, justify in (("target", "left"), ("status", "left"), ("digest", "left"), ("build s", "right"),
                            ("check s", "right"), ("profile s", "right"), ("correctness", "left"),
                            ("best throughput", "left"), *((("GPU b/c/p", "left"),) if on_cards else ())):
        table.add_column(column, justify=justify, overflow="fold")
    listed = data
    if len(data) > FOLD_CACHED_ABOVE and not session.options.verbose:  # a large no-op: render only news
        listed = [row for row in data if row["status"] != "cached" or row["reason"]]
    for row in listed:
        status = f"[{STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]"
        if row["node"]:  # --executor ray: the node that ran it
            status += f" on {row['node']}"
        if row["reason"]:
            status += f": {row['reason']}"
        digest = (row["digest"] or "")[:12]
        table.add_row(row["target"], status, digest, _seconds(row["seconds"]), _seconds(row["check_seconds"]),
                      _seconds(row["profile_seconds"]), row["correctness"], row["throughput"],
                      *((row["gpus"],) if on_cards else ()))
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
    console.print(footer(session, records), highlight=False)


def footer(session: Session, records: dict[str, Record]) -> str:
    """``12 targets: 6 artifacts (4 built, 2 cached), 3 checks (3 built), 3 profiles (3 built)``
    and, below, the seconds that building, checking and profiling took in this run."""
    if not records:
        return "nothing to do"
    kinds = counts(session, records)
    parts = [f"{sum(by.values())} {label} ({', '.join(f'{n} {s}' for s, n in sorted(by.items()))})"
             for label, by, _ in kinds if by]
    times = ", ".join(f"{verb} {seconds:.1f} s" for (_, _, verb), (_, by, seconds) in zip(KINDS, kinds) if by)
    return f"{len(records)} targets: " + ", ".join(parts) + f"\ntime: {times}"
