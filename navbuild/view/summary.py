"""What a build ends with, sized to fit a screen.

- A run that changed nothing (every target current or skipped) says so in one line: "46 targets up
  to date, 6 skipped: tensorrt is not installed"; ``-v`` or ``--table`` shows the table anyway.
- Else a table with one line per artifact, its check and profile folded into it: its status with
  the first clause of any reason, the seconds each kind of target ran and, apart, the seconds they
  waited (for room, the profile lock, a GPU slot), correctness and the best throughput, marked when
  its spread exceeds the profile's stability bound, and the cards that built, checked and profiled
  it (``GPU b/c/p``, only where a card ran something). Targets not run because something they need
  failed are counted once, under that failure; each failure then gets one line with its log and
  the command that rebuilds just it.
- Then how many targets of each kind ended how (artifacts, checks, profiles: they add up to every
  target of the run), and the run's wall time split by what ran (build, check, profile, and
  navbuild's own work: keys, the store, restores), so the parts add up to the wall time.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE
from navbuild.engine.records import CACHED, FAILED, IMPORTED, NOT_RUN, SKIPPED, Record
from navbuild.engine.session import Session

KINDS = ((ARTIFACT, "artifacts", "build"), (CHECK, "checks", "check"), (PROFILE, "profiles", "profile"))
OWN_WORK = "navbuild"  # wall time when no action ran: keys, up-to-date checks, restores, the lock

STATUS_STYLE = {"built": "green", "cached": "cyan", "remote": "blue", "imported": "magenta", "skipped": "yellow",
                "failed": "bold red"}
FOLD_CACHED_ABOVE = 50  # rows; past this, cached rows are counted, not rendered (-v renders them)
REASON_WIDTH = 60  # characters of a reason in the table; the failure lines below give more


def first_clause(reason: str | None, limit: int = REASON_WIDTH) -> str:
    """``RuntimeError: boom`` of ``RuntimeError: boom; a hint`` or ``RuntimeError: boom (failed
    before with the same inputs; ...)``: up to the first ``; ``, line end or replay note, and at most
    ``limit`` characters."""
    if not reason:
        return ""
    text = re.split(r"; |\n| \(failed before", reason.strip(), maxsplit=1)[0].strip() or reason.strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def rows(session: Session, records: dict[str, Record]) -> list[dict[str, Any]]:
    table = []
    for name, record in records.items():
        target = session.graph.targets[name]
        if target.kind != ARTIFACT:
            continue
        check = records.get(f"{name}.check")
        profile = records.get(f"{name}.profile")
        status, reason = record.label, record.reason  # "remote": from the remote cache; "imported": a package
        if check is not None and check.status == FAILED and not check.blocked_by and status != FAILED:
            status, reason = FAILED, f"correctness: {check.reason}"
        elif check is not None and check.status == SKIPPED and status not in (SKIPPED, FAILED, NOT_RUN):
            reason = f"check skipped: {check.reason}"
        check, profile = (None if r is not None and r.blocked_by else r for r in (check, profile))  # said below
        own = [r for r in (record, check, profile) if r is not None]
        table.append({"target": name, "status": status, "reason": reason, "digest": record.digest,
                      "seconds": record.seconds, "check_seconds": check.seconds if check else None,
                      "profile_seconds": profile.seconds if profile else None,
                      "waited": sum(r.waited for r in own),
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
    return f"{mark} {worst_abs:.1e}/{worst_rel:.1e}"


def _throughput_text(profile: Record | None) -> tuple[str, str]:
    """The best throughput (``9712/s @ batch 8``, with ``~`` before it when the profile is not
    stable), and what keeps it from being settled ("" when nothing does)."""
    if profile is None:
        return "", ""
    if profile.status == SKIPPED:
        return "not profiled", ""
    points = (profile.metadata or {}).get("points") or []
    if not points:
        return "", ""
    best = max(points, key=lambda p: p.get("throughput", 0.0))
    figure = best["throughput"]
    text = f"{figure:.0f}" if figure >= 100 else f"{figure:.3g}"
    caveat = _caveat(points, profile.metadata.get("stability_pct"))
    mark = "~" if caveat.startswith("unstable") else ""
    return f"{mark}{text}/s @ batch {best['batch_size']}", caveat


def _caveat(points: list[dict[str, Any]], bound: float | None = None) -> str:
    """What keeps the figures from being settled: a spread past the stability bound (a figure that
    may be far off), noise that never settled, or the budget."""
    if bound is not None:
        worst = max(points, key=lambda p: p.get("spread_pct") or 0.0)
        if (worst.get("spread_pct") or 0.0) > bound:
            return f"unstable: \u00b1{worst['spread_pct']:.0f}% > {bound:g}% (batch {worst['batch_size']})"
    ended = {p.get("ended") or ("stable" if p.get("stable", True) else "max_trials") for p in points}
    for word, note in (("max_trials", "unstable: never settled"), ("budget", "profile budget reached")):
        if word in ended:
            return note
    return ""


def counts(session: Session, records: dict[str, Record]) -> list[tuple[str, dict[str, int], float]]:
    """Per kind of target: its name, how many ended in each status, and the seconds they ran."""
    found = []
    for kind, label, _ in KINDS:
        of_kind = [r for name, r in records.items() if session.graph.targets[name].kind == kind]
        by_status: dict[str, int] = {}
        for record in of_kind:  # by label: "remote", "imported", "not run" apart from their status
            by_status[record.label] = by_status.get(record.label, 0) + 1
        found.append((label, by_status, sum(r.seconds for r in of_kind)))
    return found


def wall_split(session: Session, records: dict[str, Record], wall: float) -> dict[str, float]:
    """The run's ``wall`` seconds, shared among what ran: at each moment, among the actions running
    then (two builds side by side get half each), and to navbuild's own work when none ran. The
    parts add up to ``wall``, whatever ``-j`` was."""
    spans = []
    for name, record in records.items():
        if record.started_at is None:
            continue
        start = min(max(0.0, record.started_at), wall)
        spans.append((start, min(wall, start + record.seconds), session.graph.targets[name].kind))
    edges = sorted({0.0, wall, *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    shares = {kind: 0.0 for kind, _, _ in KINDS}
    shares[OWN_WORK] = 0.0
    for left, right in zip(edges, edges[1:]):
        active = [kind for start, end, kind in spans if start <= left and end >= right and end > start]
        for kind in active:
            shares[kind] += (right - left) / len(active)
        if not active:
            shares[OWN_WORK] += right - left
    return shares


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _where(path: str | None) -> str:
    """A log's path as the user can type it: relative to the current folder when inside it."""
    if not path:
        return ""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except (OSError, ValueError):
        return path


def is_no_op(records: dict[str, Record]) -> bool:
    """Nothing was built, restored, imported anew or failed: every target current or skipped. A
    target still imported (not proven) keeps the table: its line says where it came from and the
    command that proves it."""
    return bool(records) and all(r.label in (CACHED, SKIPPED) and not r.blocked_by and r.started_at is None
                                 for r in records.values())


def no_op_line(records: dict[str, Record]) -> str:
    """``46 targets up to date, 6 skipped: tensorrt is not installed``: the skip reasons, most
    common first."""
    skipped = [r for r in records.values() if r.status == SKIPPED]
    current = len(records) - len(skipped)
    line = f"{current} targets up to date"
    if skipped:
        reasons = Counter(_root_reason(r.reason) for r in skipped).most_common()
        said = [reason if len(reasons) == 1 else f"{reason} ({count})" for reason, count in reasons[:2]]
        more = f"; {len(reasons) - 2} other reasons (-v)" if len(reasons) > 2 else ""
        line += f", {len(skipped)} skipped: " + "; ".join(said) + more
    return line


def _root_reason(reason: str | None) -> str:
    """A skip's own reason, not the chain that passed it on ("needs X, skipped: ...")."""
    text = reason or "no reason recorded"
    while text.startswith("needs ") and ", skipped: " in text:
        text = text.split(", skipped: ", 1)[1]
    return text if len(text) <= 100 else text[:99].rstrip() + "\u2026"


def print_summary(console: Any, session: Session, records: dict[str, Record], wall: float | None = None,
                  table: bool = False) -> None:
    """The summary of a run; ``wall``: its seconds (the time line is split from it); ``table``: the
    table even for a run that changed nothing (``--table``; ``-v`` too)."""
    if not (table or session.options.verbose) and is_no_op(records):
        console.print(no_op_line(records), highlight=False, markup=False)
        return
    data = rows(session, records)
    listed = [row for row in data if row["status"] != NOT_RUN]
    if len(data) > FOLD_CACHED_ABOVE and not session.options.verbose:  # a large no-op: render only news
        listed = [row for row in listed if row["status"] != "cached" or row["reason"]]
    if listed:
        console.print(_fitted_table(console, listed))
    folded = len(data) - len(listed) - sum(row["status"] == NOT_RUN for row in data)
    if folded:
        console.print(f"{folded} cached targets not listed (-v lists every target)", highlight=False)
    for line in [*not_run_lines(records), *unproven_lines(records)]:
        console.print(line, highlight=False, markup=False)
    for row in data:
        if row["status"] == FAILED:
            _print_failure(console, session, row)
    console.print(footer(session, records, wall), highlight=False)


def unproven_lines(records: dict[str, Record]) -> list[str]:
    """Targets held from a package nobody trusted signed, per package: where they came from and the
    command that proves them (the table's note keeps only its first clause)."""
    by_package: dict[str, list[str]] = {}
    for name, record in records.items():
        if record.label == IMPORTED and "not proven" in (record.reason or ""):
            by_package.setdefault(str(record.metadata.get("imported")), []).append(name)
    return [f"imported: from {package}; not proven: `navbuild verify {' '.join(names)}` rebuilds "
            f"{'it' if len(names) == 1 else 'them'} here" for package, names in by_package.items()]


def _fitted_table(console: Any, listed: list[dict[str, Any]]) -> Any:
    """The table, its rows one line each on this screen: the notes cut first (the failure lines below
    say more), then the digest and error columns left out (``--json`` has them), on a narrow one."""
    table = None
    for left_out in ((), ("digest",), ("digest", "abs/rel error")):
        table = _table(listed, left_out=left_out)
        excess = _natural_width(console, table) - console.width
        if excess <= 0:
            return table
        widest = max(len(_note(row, REASON_WIDTH)) for row in listed)
        table = _table(listed, note_width=max(12, widest - excess), left_out=left_out)
        if _natural_width(console, table) <= console.width:
            return table
    return table


def _natural_width(console: Any, table: Any) -> int:
    """The table's width on a screen wide enough for it (``console.measure`` stops at the screen's)."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=100_000), table).maximum


GPU_COLUMN = "GPU b/c/p"
COLUMNS = (("target", "left"), ("status", "left"), ("digest", "left"), ("build s", "right"), ("check s", "right"),
           ("profile s", "right"), ("waited s", "right"), ("abs/rel error", "left"), ("best throughput", "left"),
           (GPU_COLUMN, "left"), ("note", "left"))


def _note(row: dict[str, Any], width: int) -> str:
    """The reason's first clause, or what keeps the profile's figure from being settled."""
    return first_clause(row["reason"], width) if row["reason"] else first_clause(row["throughput"][1], width)


def _table(listed: list[dict[str, Any]], note_width: int = REASON_WIDTH, left_out: tuple[str, ...] = ()) -> Any:
    """One line per row, every column as wide as its content; the note at most ``note_width``
    characters; the columns named in ``left_out`` left out, and the GPU column where no card ran anything."""
    from rich import box
    from rich.table import Table

    table = Table(title="navbuild", show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
                  collapse_padding=True, pad_edge=False)
    if not any(row.get("gpus") for row in listed):
        left_out = (*left_out, GPU_COLUMN)
    shown = [(column, justify) for column, justify in COLUMNS if column not in left_out]
    for column, justify in shown:
        table.add_column(column, justify=justify, no_wrap=True)
    for row in listed:
        status = f"[{STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]"
        if row["node"]:  # --executor ray: the node that ran it
            status += f" on {row['node']}"
        ran = [_seconds(None if _nothing_ran(row["status"], value) else value)
               for value in (row["seconds"], row["check_seconds"], row["profile_seconds"])]
        cells = dict(zip((c for c, _ in COLUMNS), (
            row["target"], status, (row["digest"] or "")[:12], *ran,
            f"{row['waited']:.2f}" if row["waited"] >= 0.01 else "", row["correctness"], row["throughput"][0],
            row.get("gpus", ""), _escaped(_note(row, note_width)))))
        table.add_row(*(cells[column] for column, _ in shown))
    return table


def _nothing_ran(status: str, seconds: float | None) -> bool:
    """A cached target, or a skip decided before anything ran: a blank cell, not ``0.00``."""
    return status == CACHED or (status == SKIPPED and (seconds or 0.0) < 0.005)


def _escaped(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def not_run_lines(records: dict[str, Record]) -> list[str]:
    """One line per failure that kept targets from running: ``not run (cnn:onnx failed): 3 targets:
    cnn:trt, cnn:trt.check, cnn:trt.profile``."""
    by_cause: dict[str, list[str]] = {}
    for name, record in records.items():
        if record.blocked_by:
            by_cause.setdefault(", ".join(record.blocked_by), []).append(name)
    lines = []
    for cause, names in by_cause.items():
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        lines.append(f"not run ({cause} failed): {len(names)} target{'s' if len(names) > 1 else ''}: {shown}")
    return lines


def _print_failure(console: Any, session: Session, row: dict[str, Any]) -> None:
    failed = row["record"]
    if failed.status != FAILED and row["check"] is not None:
        failed = row["check"]
    log = _where(failed.metadata.get("log"))
    console.print(f"[bold red]{row['target']}[/] failed: {_escaped(first_clause(row['reason'], 200))}",
                  highlight=False)
    console.print((f"  log: {_escaped(log)}\n" if log else "")
                  + f"  rebuild just it, with full output: [bold]{session.rebuild_command(failed.target)}[/]",
                  highlight=False)


def footer(session: Session, records: dict[str, Record], wall: float | None = None) -> str:
    """``12 targets: 6 artifacts (4 built, 2 cached), 3 checks (3 built), 3 profiles (3 built)`` and,
    below, the wall time split by what ran, then what the targets waited."""
    if not records:
        return "nothing to do"
    kinds = counts(session, records)
    parts = [f"{sum(by.values())} {label} ({', '.join(f'{n} {s}' for s, n in sorted(by.items()))})"
             for label, by, _ in kinds if by]
    text = f"{len(records)} targets: " + ", ".join(parts)
    if wall is None:  # no wall time known: what each kind of target ran, added up
        times = ", ".join(f"{verb} {seconds:.1f} s" for (_, _, verb), (_, by, seconds) in zip(KINDS, kinds) if by)
        return text + f"\ntime: {times}"
    shares = wall_split(session, records, wall)
    times = ", ".join(f"{verb} {shares[kind]:.1f} s" for (kind, _, verb), (_, by, _) in zip(KINDS, kinds) if by)
    text += f"\ntime: {wall:.1f} s wall = {times}, {OWN_WORK} {shares[OWN_WORK]:.1f} s"
    ran = sum(r.seconds for r in records.values() if r.started_at is not None)
    if ran > wall * 1.05:
        text += f" (targets ran {ran:.1f} s side by side)"
    waits = {cause: sum(r.waits.get(cause, 0.0) for r in records.values()) for cause in ("slots", "executor")}
    if any(seconds >= 0.05 for seconds in waits.values()):
        text += (f"\nwaited: {waits['slots']:.1f} s for slots (a profile runs alone; GPU slots), "
                 f"{waits['executor']:.1f} s for a free worker (-j)")
    return text
