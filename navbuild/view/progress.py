"""What the user sees while a build runs: what runs now, for how long, and a line per target that
did work.

A listener of the scheduler (``engine/scheduler.py``): it hears each target queued for its
executor, started, saying what it does (``PROGRESS``: a phase, the batch size a profile measures,
from a worker process too) and finished, with navbuild's own record, so "built", "skipped" and
"failed" mean what the summary says.

- On a terminal, a live display: a line per running target (its card on a GPU machine, its phase,
  the seconds it has run) under a header (targets done of all, running, waiting), redrawn a few
  times a second; a line is printed above it for each target that did work (built, restored, failed).
- Elsewhere (CI logs, a pipe), plain lines: the same finished lines, and for a target that runs
  long, "still compiling cnn:torch-compile, 60 s" every ``NAVBUILD_PROGRESS_EVERY`` seconds
  (default 30), so a log never goes silent for minutes.
- ``quiet``: nothing (failures are printed after the build).

A target found current, or skipped because this machine lacks what it needs, is counted but not
printed (``verbose`` prints it): the summary says it once.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from navbuild.engine.progress import DEFAULT_PHASE, Progress
from navbuild.engine.records import BUILT, CACHED, FAILED, SKIPPED
from navbuild.engine.scheduler import FINISHED, PROGRESS, QUEUED, STARTED, Event

STYLE = {"built": "green", "cached": "dim", "remote": "blue", "skipped": "yellow", "failed": "bold red",
         "not run": "red"}
EVERY_ENV = "NAVBUILD_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0
REFRESH_PER_SECOND = 4


def every_seconds() -> float:
    """How often a plain line says that a long target is still running (``NAVBUILD_PROGRESS_EVERY``)."""
    try:
        value = float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return value if value > 0 else DEFAULT_EVERY_S


@dataclass
class Running:
    """A target whose action runs now."""

    target: str
    started: float  # time.monotonic()
    progress: Progress
    said: int = 0  # plain "still ..." lines printed for it
    gpu: int | None = None  # the card its worker is pinned to (engine/slots.py's Grant)

    @property
    def name(self) -> str:
        """The target, and its card when it has one: ``cnn:trt on GPU 1``."""
        return self.target if self.gpu is None else f"{self.target} on GPU {self.gpu}"

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.started)


@dataclass
class Board:
    """What runs now and how far the build is: the state both displays read."""

    total: int
    done: int = 0
    waiting: set[str] = field(default_factory=set)
    running: dict[str, Running] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[int, int, list[Running]]:
        with self.lock:
            return self.done, len(self.waiting), sorted(self.running.values(), key=lambda r: r.started)


class Reporter:
    def __init__(self, console: Any, total: int, *, verbose: bool = False, quiet: bool = False,
                 every: float | None = None, kinds: dict[str, str] | None = None,
                 finished_lines: bool = True) -> None:
        self.console, self.verbose, self.quiet = console, verbose, quiet
        self.finished_lines = finished_lines  # False: only what runs now (the API prints its own table)
        self.board = Board(total)
        self.every = every if every is not None else every_seconds()
        self.kinds = kinds or {}  # target -> kind (artifact, check, profile): its first phase
        self.queued: set[str] = set()
        self.live: Any = None
        self.ticker: threading.Thread | None = None
        self.stopped = threading.Event()
        if hasattr(console, "file"):  # pinned: an in-process build redirects sys.stderr to its log meanwhile
            console.file = console.file

    # -- the context: the display runs between enter and exit --------------------------------------
    def __enter__(self) -> Reporter:
        if self.quiet:
            return self
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(LiveView(self.board), console=self.console, refresh_per_second=REFRESH_PER_SECOND,
                             transient=True, redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        else:
            self.ticker = threading.Thread(target=self._tick, name="navbuild progress", daemon=True)
            self.ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.live is not None:
            self.live.stop()
        if self.ticker is not None:
            self.ticker.join(timeout=2)

    # -- the scheduler's events -----------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        board = self.board
        if event.kind == QUEUED:
            self.queued.add(event.target)
            with board.lock:
                board.waiting.add(event.target)
            if self.verbose and self.live is None and not self.quiet:
                self.console.print(f"[bold]building[/] {event.target}", highlight=False)
        elif event.kind == STARTED:
            first = Progress(DEFAULT_PHASE.get(self.kinds.get(event.target, ""), "building"))
            with board.lock:
                board.waiting.discard(event.target)
                gpu = event.grant.gpu if event.grant is not None else None
                board.running[event.target] = Running(event.target, event.time, first, gpu=gpu)
        elif event.kind == PROGRESS and event.progress is not None:
            with board.lock:
                running = board.running.get(event.target)
                if running is not None:
                    running.progress = event.progress
        elif event.kind == FINISHED:
            with board.lock:
                board.waiting.discard(event.target)
                board.running.pop(event.target, None)
                board.done += 1
            self._done(event.record)

    def _done(self, record: Any) -> None:
        found_current = record.status == CACHED and record.target not in self.queued
        if self.quiet or not self.finished_lines or ((found_current or record.status == SKIPPED) and not self.verbose):
            return
        style = STYLE.get(record.label, "")
        line = f"[{style}]{record.label:<8}[/] {record.target}"
        if record.node:
            line += f" on {record.node}"
        if record.gpu is not None:
            line += f" on GPU {record.gpu}"
        if record.status in (BUILT, FAILED) and record.seconds and not record.blocked_by:
            line += f"  [dim]{record.seconds:.2f} s[/]"
            if record.waited >= 0.05:
                line += f" [dim](waited {record.waited:.2f} s)[/]"
        if record.reason:
            line += f"  [dim]{_first_clause(record.reason)}[/]"
        self.console.print(line, highlight=False, markup=True)

    # -- plain lines: a long target is still running ------------------------------------------------
    def _tick(self) -> None:
        while not self.stopped.wait(min(1.0, self.every / 4)):
            now = time.monotonic()
            for line in self.due(now):
                self.console.print(line, highlight=False, markup=False)

    def due(self, now: float) -> list[str]:
        """The "still ..." lines due at ``now``: one per running target each time it passes another
        ``every`` seconds."""
        lines = []
        with self.board.lock:
            for running in self.board.running.values():
                ticks = int(running.elapsed(now) // self.every)
                if ticks > running.said:
                    running.said = ticks
                    lines.append(still_line(running, now))
        return lines


def still_line(running: Running, now: float) -> str:
    """``still compiling cnn:torch-compile, 60 s`` (``(warm-up batch 2 of 4)`` after the target when
    the action said where it is)."""
    progress = running.progress
    where = f" ({progress.detail})" if progress.detail else ""
    return f"still {progress.phase} {running.name}{where}, {running.elapsed(now):.0f} s"


def _first_clause(reason: str, limit: int = 100) -> str:
    from navbuild.view.summary import first_clause

    return first_clause(reason, limit)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class LiveView:
    """The live display's lines, made again at each refresh from the board."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.began = time.monotonic()
        self.spinners: dict[str, Any] = {}  # one per running target, so that each turns

    def __rich__(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        done, waiting, running = self.board.snapshot()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        head = f"{done}/{self.board.total} done, {len(running)} running" + (f", {waiting} waiting" if waiting else "")
        grid.add_row(Text("navbuild", style="bold"), Text(""), Text(head), Text(_clock(now - self.began)))
        self.spinners = {each.target: self.spinners.get(each.target) or Spinner("dots", style="cyan")
                         for each in running}
        for each in running:
            grid.add_row(self.spinners[each.target], Text(each.name, style="bold"),
                         Text(each.progress.text(), style="dim"), Text(_clock(each.elapsed(now))))
        return grid


def kinds_of(session: Any, names: list[str]) -> dict[str, str]:
    """Each target's kind, for the phase a running target shows before it says its own."""
    return {name: session.graph.targets[name].kind for name in names}
