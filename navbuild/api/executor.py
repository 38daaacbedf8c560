"""Running targets for the Python API: what is current is decided here; what must run, runs in
worker processes started with ``spawn``, ``jobs`` at a time, so that an exporter or a model that
crashes (a segfault, an abort) fails its own target and the rest of the graph goes on.

This is the seam to the engine's own worker pool: ``run_targets(session, project, names, jobs=...,
isolate=...)`` takes the caller's session (for up-to-date checks, which never need a framework)
and a serializable ``ProjectDescription`` (the navbuild.toml mapping plus its root) from which each
worker opens its own session. The caller's process has a framework imported (it holds live models),
so fork-based parallelism is out; spawned workers start clean and re-import the caller's
``__main__`` (hence the ``if __name__ == "__main__":`` rule in docs/python-api.md).

``NAVBUILD_USE_MULTIPROCESSING=0`` runs every target in the calling process instead (no isolation,
one at a time).
"""
from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from navbuild.engine.graph import PROFILE
from navbuild.engine.records import FAILED, SKIPPED, Record
from navbuild.engine.session import Options, Session

ENV_MULTIPROCESSING = "NAVBUILD_USE_MULTIPROCESSING"
ENV_IN_WORKER = "NAVBUILD_API_WORKER"
LOG_TAIL = 4000  # characters of a dead worker's output kept in the target's log and reason
READY = "ready"  # a worker's first message: it started and opened the project


class NestedOptimizeError(RuntimeError):
    """The API was called while a worker process was importing the caller's script."""


@dataclass
class ProjectDescription:
    """Everything a worker needs to open the project: picklable, no live object."""

    mapping: dict[str, Any]
    root: str
    label: str
    verbose: bool = False
    retry_failed: bool = False
    trusted: dict[str, str] = field(default_factory=dict)  # model identity -> digest of its pickle


def isolation_enabled() -> bool:
    value = os.environ.get(ENV_MULTIPROCESSING, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def refuse_nested_call() -> None:
    """Spawned workers import the caller's main script; an unguarded optimize() there must stop."""
    # a spawned child is "inheriting" while it imports its parent's main module
    if os.environ.get(ENV_IN_WORKER) or getattr(multiprocessing.current_process(), "_inheriting", False):
        raise NestedOptimizeError(
            "navbuild's optimize was called while a worker process imported your script: put the "
            "optimization under `if __name__ == \"__main__\":` (docs/python-api.md, \"Worker processes\"), "
            f"or set {ENV_MULTIPROCESSING}=0 to build in this process without isolation")


def open_session(project: ProjectDescription) -> Session:
    from navbuild.engine.project import open_mapping

    return open_mapping(project.mapping, project.root, label=project.label,
                        options=Options(verbose=project.verbose, retry_failed=project.retry_failed))


# -- scheduling ---------------------------------------------------------------------------------
def run_targets(session: Session, project: ProjectDescription, names: list[str], *, jobs: int = 1,
                isolate: bool | None = None, before_worker_job: Callable[[str], dict[str, str]] | None = None,
                on_done: Callable[[Record], None] | None = None) -> dict[str, Record]:
    """Bring ``names`` (and what they need) up to date; returns a record per target of the closure.

    ``before_worker_job(target)`` runs in this process before a target goes to a worker and returns
    pickles (identity -> digest) the worker may load for it (``objects.write_pickle``).
    """
    isolate = isolation_enabled() if isolate is None else isolate
    graph = session.graph
    waiting = graph.closure(names)
    done: dict[str, Record] = {}
    pool = _Pool(project, max(1, jobs), session) if isolate else None

    def finish(record: Record) -> None:
        session.records.add(record)
        done[record.target] = record
        if on_done is not None:
            on_done(record)

    try:
        while waiting or (pool and pool.busy):
            for name in [n for n in waiting if all(d in done for d in graph.targets[n].deps)]:
                failed = [d for d in graph.targets[name].deps if done[d].status == FAILED]
                if failed:
                    finish(_not_run(session, name, failed))
                elif session.is_up_to_date(name):
                    finish(session.records.get(name))
                elif pool is None or not _needs_worker(session, name):
                    session.run(name)  # in-process: no isolation, or nothing to build (a skip)
                    finish(session.records.get(name))
                elif pool.broken:
                    finish(Record(name, FAILED, reason=pool.broken))
                elif pool.has_room():
                    pool.submit(name, before_worker_job(name) if before_worker_job else {})
                else:
                    continue  # stays waiting for a free worker
                waiting.remove(name)
            if pool is not None and pool.busy:
                finish(pool.wait())
            elif waiting and not any(all(d in done for d in graph.targets[n].deps) for n in waiting):
                for name in list(waiting):  # cannot happen with a closure; never loop forever
                    waiting.remove(name)
                    finish(Record(name, FAILED, reason="not run: its dependencies never finished"))
    finally:
        if pool is not None:
            pool.close()
    return done


def _needs_worker(session: Session, name: str) -> bool:
    """A target that will build: this machine can, and every input it needs is there."""
    from navbuild.engine.keys import Pending

    if session.unmet_needs(session.graph.targets[name]):
        return False
    try:
        session.key(name)
    except Pending:
        return False
    return True


def _not_run(session: Session, name: str, failed: list[str]) -> Record:
    """A target whose dependency failed is not run (profiles are skipped, as the CLI does)."""
    if session.graph.targets[name].kind == PROFILE:
        return Record(name, SKIPPED, reason=f"not profiled: {', '.join(failed)} failed")
    return Record(name, FAILED, reason=f"not run: {', '.join(failed)} failed")


# -- the worker pool ---------------------------------------------------------------------------------
class _Worker:
    def __init__(self, project: ProjectDescription, index: int, log_dir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.log = log_dir / f"api-worker-{os.getpid()}-{index}-{time.time_ns()}.log"
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, project), name=f"navbuild-worker-{index}")
        with _output_to(self.log):  # from its first line: errors importing the caller's script land there
            self.process.start()
        child.close()
        self.target: str | None = None
        self.ready = False  # it opened the project: it got past importing the caller's script

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()
        with contextlib.suppress(OSError):
            self.log.unlink()


class _Pool:
    """``size`` spawned workers, started when first needed and replaced when one dies."""

    def __init__(self, project: ProjectDescription, size: int, session: Session) -> None:
        self.project, self.size, self.session = project, size, session
        self.workers: list[_Worker] = []
        self.log_dir = session.store.tmp
        self.started = 0
        self.broken: str | None = None  # why workers cannot start at all (then no more are started)

    @property
    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.target is not None]

    def has_room(self) -> bool:
        return len(self.busy) < self.size

    def submit(self, name: str, trusted: dict[str, str]) -> None:
        worker = next((w for w in self.workers if w.target is None and w.alive()), None)
        if worker is None:
            self.workers = [w for w in self.workers if w.alive() or w.target is not None]
            worker = _Worker(self.project, self.started, self.log_dir)
            self.started += 1
            self.workers.append(worker)
        worker.target = name
        worker.conn.send((name, trusted))

    def wait(self) -> Record:
        """The record of the next target a worker finishes (or dies on)."""
        while True:
            busy = self.busy
            ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    name, worker.target = worker.target, None
                    return self._died(worker, name)
                if message == READY:
                    worker.ready = True
                    break  # wait again: its target is still running
                name, worker.target = worker.target, None
                return Record(**message)

    def _died(self, worker: _Worker, name: str) -> Record:
        worker.process.join(timeout=10)
        code = worker.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        tail = _tail(worker.log)
        target = self.session.graph.targets[name]
        log_path = self.session.outputs.log_path(target)
        from navbuild.engine.store import atomic_write

        with contextlib.suppress(OSError):
            atomic_write(log_path, (f"navbuild: the worker process building {name} {how}\n"
                                    f"--- its output (last {LOG_TAIL} characters) ---\n{tail}").encode())
        last = _telling_line(tail)
        reason = f"the worker process building it {how}" + (f" ({last[:300]})" if last else "")
        with contextlib.suppress(OSError):
            worker.log.unlink()
        if not worker.ready:  # it died importing the caller's script or opening the project
            self.broken = f"worker processes cannot start: {how}" + (f" ({last[:300]})" if last else "")
        return Record(name, FAILED, reason=reason, metadata={"log": str(log_path)})

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []


def _telling_line(text: str) -> str:
    """The line of a dead worker's output that says what happened: faulthandler's "Fatal Python
    error", else the last exception line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Fatal Python error"):
            return line
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*:", line):
            return line
    return lines[-1] if lines else ""


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL:].decode("utf-8", "replace")


@contextlib.contextmanager
def _output_to(path: Path):
    """This process's stdout and stderr point at ``path`` while a worker starts: it inherits them."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, fd):
            os.close(descriptor)


def worker_main(conn: Any, project: ProjectDescription) -> None:
    """A worker: opens the project once, then builds one target per request until told to stop.

    Its stdout and stderr (native output too) are its log file (``_output_to``); faulthandler writes
    the Python stack there when it crashes, and the parent keeps the tail as the target's log.
    """
    from navbuild.api import objects

    faulthandler.enable()
    os.environ[ENV_IN_WORKER] = "1"
    session = open_session(project)
    conn.send(READY)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            session.close()
            return
        name, trusted = request
        objects.trust(trusted)
        session.forget_keys()  # other workers may have built upstream targets since
        session.run(name)
        record = session.records.get(name) or Record(name, FAILED, reason="no record")
        session.close()  # the stat cache, so that the parent and other workers reuse file digests
        conn.send(record.to_dict())
