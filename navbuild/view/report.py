"""Reports of profiles and selections: a rich table, a JSON file, a PNG plot, a progress bar.

``write_report(model, results, selection, out_dir)`` writes ``out_dir/report.json`` (every figure)
and ``out_dir/profile.png`` (see navbuild.view.plots); the engine passes
``navbuild-out/<model>/report``. ``profile_table`` and ``print_report`` show the same figures in
the terminal; ``RichProgress`` turns profiling progress events into a progress bar.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from navbuild.measure.results import ProfileResult, ProgressEvent
from navbuild.measure.selection import Selection

REPORT_FORMAT = "navbuild-report/1"
REPORT_JSON, PROFILE_PNG = "report.json", "profile.png"


# -- JSON ----------------------------------------------------------------------------------------
def report_dict(model_name: str, results: Mapping[str, ProfileResult],
                selection: Selection | None = None) -> dict[str, Any]:
    """Every figure of a model's profiles and its selection, JSON-able, targets sorted by name."""
    return {
        "format": REPORT_FORMAT,
        "model": model_name,
        "selected": selection.target if selection else None,
        "selection": selection.to_dict() if selection else None,
        "targets": {target: results[target].to_dict() for target in sorted(results)},
        # per target, the batch sizes whose spread exceeds the profile's stability bound: figures to
        # take with care (a busy machine), marked in the table too
        "unstable": {target: [p.batch_size for p in results[target].points if unstable(results[target], p)]
                     for target in sorted(results) if any(unstable(results[target], p)
                                                           for p in results[target].points)},
    }


def unstable(result: ProfileResult, point: Any) -> bool:
    """Whether ``point``'s spread exceeds the stability bound its profile ran with (``stability_pct``)."""
    bound = result.config.get("stability_pct")
    return bound is not None and point.spread_pct > float(bound)


def load_report(path: Path) -> tuple[str, dict[str, ProfileResult], Selection | None]:
    """Read a report.json back: (model name, target -> ProfileResult, selection)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not a {REPORT_FORMAT} file")
    results = {t: ProfileResult.from_dict(r) for t, r in data["targets"].items()}
    selection = Selection.from_dict(data["selection"]) if data.get("selection") else None
    return data["model"], results, selection


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(model_name: str, results: Mapping[str, ProfileResult], selection: Selection | None,
                 out_dir: Path, png: bool = True) -> dict[str, Path]:
    """Write ``report.json`` and (if matplotlib is installed and ``png``) ``profile.png``.

    Returns {"json": path, "png": path}; "png" is absent when no plot was written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / REPORT_JSON}
    text = json.dumps(report_dict(model_name, results, selection), indent=2, allow_nan=False)
    _write_atomic(paths["json"], text + "\n")
    if png:
        try:
            from navbuild.view.plots import plot_profile  # noqa: PLC0415
            import matplotlib  # noqa: F401, PLC0415 - only to learn whether it is installed
        except ImportError:
            return paths
        paths["png"] = plot_profile(model_name, results, out_dir / PROFILE_PNG, selection)
    return paths


# -- terminal ------------------------------------------------------------------------------------
def fmt_ms(value: float) -> str:
    """Three significant digits, no exponent in practice: 0.00123, 0.0456, 1.23, 45.6, 1,234."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def fmt_throughput(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def profile_table(model_name: str, results: Mapping[str, ProfileResult],
                  selection: Selection | None = None) -> Table:
    """One row per target and batch size; the selected row is starred, the runner-up marked."""
    table = Table(title=f"[bold]{model_name}[/bold]  (latency in ms)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, show_edge=False)
    for column, justify in (("target", "left"), ("runner", "left"), ("batch", "right"),
                            ("p50", "right"), ("p95", "right"), ("p99", "right"),
                            ("samples/s", "right"), ("stable", "center"), ("", "left")):
        table.add_column(column, justify=justify, no_wrap=column not in ("target", "runner"), overflow="fold")
    chosen = selection.chosen if selection else None
    runner_up = selection.runner_up if selection else None
    excluded = selection.excluded if selection else {}
    for i, target in enumerate(sorted(results)):
        result = results[target]
        if i:
            table.add_section()
        if not result.points:
            why = excluded.get(target) or "no measurements"
            if result.oom_batch_size:
                why = f"out of memory at batch {result.oom_batch_size}"
            table.add_row(target, result.runner, "-", "-", "-", "-", "-", "-", "[red]none[/red]")
            if selection is None or target not in excluded:
                table.add_row("", f"[red]{why}[/red]", "", "", "", "", "", "", "")
            continue
        for j, point in enumerate(sorted(result.points, key=lambda p: p.batch_size)):
            mark = ""
            style = None
            if _decided_here(chosen, target, point.batch_size, j):
                mark, style = "[bold green]\u2605[/bold green]", "bold"
            elif _decided_here(runner_up, target, point.batch_size, j):
                mark = "[cyan]2nd[/cyan]"
            elif j == 0 and target in excluded:
                mark = "[dim]excl[/dim]"
            table.add_row(target if j == 0 else "", (result.runner or "") if j == 0 else "", str(point.batch_size),
                          fmt_ms(point.p50_ms), fmt_ms(point.p95_ms), fmt_ms(point.p99_ms),
                          fmt_throughput(point.throughput), _stability(result, point), mark, style=style)
        if result.oom_batch_size:
            table.add_row("", "", str(result.oom_batch_size), "-", "-", "-", "-", "-", "[red]OOM[/red]")
    if selection is not None:
        table.caption = _caption(selection)
        table.caption_justify = "left"
    return table


def _stability(result: ProfileResult, point: Any) -> str:
    """``yes``; or, in yellow, ``unstable ±85%`` (its spread past the bound) or why it is not settled."""
    if unstable(result, point):
        return f"[yellow]unstable \u00b1{point.spread_pct:.0f}%[/yellow]"
    return "yes" if point.stable else f"[yellow]{point.note or 'no'}[/yellow]"


def _decided_here(choice: Any, target: str, batch_size: int, row: int) -> bool:
    """The row of ``target`` that decided ``choice`` (its first row when no batch size decided)."""
    if choice is None or choice.target != target:
        return False
    return choice.batch_size == batch_size if choice.batch_size is not None else row == 0


def _caption(selection: Selection) -> str:
    chosen = selection.chosen
    if chosen is None:
        return f"strategy {selection.strategy}: no candidate qualified"
    text = f"strategy {selection.strategy}: \u2605 {chosen.target}"
    if chosen.batch_size is not None:
        text += f" at batch {chosen.batch_size}"
    if selection.runner_up:
        text += f"; 2nd {selection.runner_up.target}"
    for target, why in sorted(selection.excluded.items()):
        text += f"\nexcluded {target}: {why}"
    return text


def print_report(reports: Mapping[str, tuple[Mapping[str, ProfileResult], Selection | None]],
                 console: Console | None = None) -> None:
    """Print one table per model: ``{model: (results, selection)}``."""
    console = console or Console()
    for model_name in sorted(reports):
        results, selection = reports[model_name]
        console.print(profile_table(model_name, results, selection))


# -- progress ------------------------------------------------------------------------------------
class RichProgress:
    """A rich progress bar, one line per profiled target.

        with RichProgress() as bars:
            profile_runner(runner, sample, config, progress=bars.callback("cnn:onnx"))
    """

    def __init__(self, console: Console | None = None, transient: bool = False) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                 TimeElapsedColumn(), console=console, transient=transient)

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def callback(self, label: str) -> Callable[[ProgressEvent], None]:
        task = self.progress.add_task(label, total=None, status="starting")

        def on_event(event: ProgressEvent) -> None:
            fields: dict[str, Any] = {}
            if event.kind == "start":
                fields = {"total": event.total, "completed": event.step, "status": f"batch {event.batch_size}"}
            elif event.kind == "window":
                fields = {"status": f"batch {event.batch_size}, window {event.window}/{event.max_windows}"}
            elif event.kind == "point" and event.point is not None:
                p = event.point
                fields = {"completed": event.step, "status": (
                    f"batch {p.batch_size}: p50 {fmt_ms(p.p50_ms)} ms, {fmt_throughput(p.throughput)}/s"
                    + (f" ({p.note})" if p.note else ""))}
            elif event.kind == "oom":
                fields = {"status": f"out of memory at batch {event.batch_size}"}
            elif event.kind == "search":
                fields = {"status": f"max batch search: trying {event.batch_size}"}
            elif event.kind == "done":
                fields = {"total": max(event.total, 1), "completed": max(event.total, 1), "status": "done"}
            self.progress.update(task, **fields)

        return on_event
