"""What the user sees while a build runs: a line per target that does work, and a progress bar.

It is a doit reporter (doit calls it as tasks start and finish); the statuses it prints come from
navbuild's own records, so "cached", "skipped" and "failed" mean what the summary says.
"""
from __future__ import annotations

from typing import Any, Callable

STYLE = {"built": "green", "cached": "dim", "remote": "blue", "skipped": "yellow", "failed": "bold red"}


class Reporter:
    desc = "navbuild progress"

    def __init__(self, console: Any, total: int, lookup: Callable[[str], Any], *, verbose: bool = False,
                 quiet: bool = False) -> None:
        self.console, self.lookup = console, lookup
        self.verbose, self.quiet = verbose, quiet
        self.progress = None
        self.task_id = None
        self.total = total
        self.errors: list[str] = []

    # doit reporter interface ------------------------------------------------------------------
    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]navbuild"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task_id = self.progress.add_task("", total=self.total)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        if task.actions and self.progress is not None:
            self.progress.update(self.task_id, description=task.name)
        elif task.actions and self.verbose:
            self.console.print(f"[bold]building[/] {task.name}")

    def add_success(self, task: Any) -> None:
        self._done(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        self._done(task, fail)

    def skip_uptodate(self, task: Any) -> None:
        self._done(task, quietly=not self.verbose)

    def skip_ignore(self, task: Any) -> None:
        self._done(task)

    def cleanup_error(self, exception: Any) -> None:
        self.errors.append(str(exception))

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        for error in self.errors:
            self.console.print(f"[red]doit: {error}[/]")

    # -------------------------------------------------------------------------------------------
    def _done(self, task: Any, fail: Any = None, quietly: bool = False) -> None:
        if not task.actions:
            return
        if self.progress is not None:
            self.progress.advance(self.task_id)
        record = self.lookup(task.name)
        if self.quiet or quietly:
            return
        if record is None:
            if fail is not None:
                self.console.print(f"[bold red]failed[/]  {task.name}: {fail.get_msg().strip().splitlines()[-1]}")
            return
        style = STYLE.get(record.label, "")
        line = f"[{style}]{record.label:<8}[/] {task.name}"
        if record.status in ("built", "failed") and record.seconds:
            line += f"  [dim]{record.seconds:.2f} s[/]"
        if record.reason:
            line += f"  [dim]{record.reason}[/]"
        self.console.print(line, highlight=False)
