"""What the user sees while a build runs: a line per target that does work, and a progress bar.

A listener of the scheduler (``engine/scheduler.py``): it hears each target queued for its
executor and each one finished, with navbuild's own record, so "cached", "skipped" and "failed"
mean what the summary says. A target found current is counted but not printed (``-v`` prints it).
"""
from __future__ import annotations

from typing import Any

from navbuild.engine.records import CACHED
from navbuild.engine.scheduler import FINISHED, QUEUED, Event

STYLE = {"built": "green", "cached": "dim", "remote": "blue", "skipped": "yellow", "failed": "bold red"}


class Reporter:
    def __init__(self, console: Any, total: int, *, verbose: bool = False, quiet: bool = False) -> None:
        self.console, self.total = console, total
        self.verbose, self.quiet = verbose, quiet
        self.progress = None
        self.task_id = None
        self.queued: set[str] = set()

    def __enter__(self) -> Reporter:
        if self.quiet or not self.console.is_terminal:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]navbuild"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task_id = self.progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: Event) -> None:
        if event.kind == QUEUED:
            self.queued.add(event.target)
            if self.progress is not None:
                self.progress.update(self.task_id, description=event.target)
            elif self.verbose:
                self.console.print(f"[bold]building[/] {event.target}")
        elif event.kind == FINISHED:
            self._done(event.record)

    def _done(self, record: Any) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id)
        found_current = record.status == CACHED and record.target not in self.queued
        if self.quiet or (found_current and not self.verbose):
            return
        style = STYLE.get(record.label, "")
        line = f"[{style}]{record.label:<8}[/] {record.target}"
        if record.node:
            line += f" on {record.node}"
        if record.gpu is not None:
            line += f" on GPU {record.gpu}"
        if record.status in ("built", "failed") and record.seconds:
            line += f"  [dim]{record.seconds:.2f} s[/]"
        if record.reason:
            line += f"  [dim]{record.reason}[/]"
        self.console.print(line, highlight=False)
