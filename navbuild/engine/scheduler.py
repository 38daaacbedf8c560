"""The one scheduler: whichever face asked (the CLI, the Python API, plain ``doit``, a Ray node),
targets are brought up to date here, by one ready-set loop.

The loop walks the closure of the selected targets in dependency order. A target is ready when
every target it needs is done; then, in this order:

- a dependency failed: it is not run (``not_run``: "not run: X failed"; a profile is "not
  profiled" and counts as skipped);
- the store says it is current (``Session.is_up_to_date``): cached;
- else it is queued for the executor, which settles it (``Session.run``: a failure replayed, a restore
  from the remote cache, or its action run) and hands back its record.

Executors differ only in where actions run: ``LocalExecutor`` (worker processes of this machine:
``-j`` CPU targets and ``--gpu-jobs`` GPU targets at once, each GPU target's worker pinned to its
card; or this process) and ``engine/ray_executor.py``'s ``RayExecutor`` (Ray tasks on a cluster).
What may run beside what on this machine (a profile alone on its card or, on the CPU, alone; the
cards' slots) is one object, ``engine/slots.py``'s ``Slots``, that the local executor asks before
an action starts.

The loop tells its listeners what happens (``Event``: a target queued for its executor, its
action started with the slots it holds, what a running action says it is doing (``PROGRESS``: a
phase, the batch size a profile measures), a target finished with its record); the console's live
display (``view/progress.py``) and the API's ``on_done`` are listeners. Each record says how long
its target ran and, apart, how long it waited (for its dependencies, for room in the executor, for
its slots). At the end it writes ``navbuild.lock`` (when the face gave it a path) from the same
records it returns, so every face leaves the same lock.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from navbuild.engine import actions, cards, lockfile, workers
from navbuild.engine.graph import PROFILE, Target
from navbuild.engine.records import FAILED, SKIPPED, Record
from navbuild.engine.progress import Progress
from navbuild.engine.session import Session
from navbuild.engine.slots import Grant, Slots, on_gpu
from navbuild.hashing import tree_digest

QUEUED, STARTED, PROGRESS, FINISHED = "queued", "started", "progress", "finished"


@dataclass(frozen=True)
class Event:
    """``QUEUED``: the target is not current, so it waits for room in its executor; ``STARTED``: its
    action starts now, holding ``grant`` (a target restored or whose failure is replayed never
    starts); ``PROGRESS``: the running action says what it does now (``progress``: from a worker
    process too, engine/progress.py); ``FINISHED``: it is done, with ``record`` (also for a target
    found current or not run, which are neither queued nor started). ``time``:
    ``time.monotonic()`` when it happened."""

    kind: str
    target: str
    record: Record | None = None
    grant: Grant | None = None
    progress: Progress | None = None
    time: float = field(default_factory=time.monotonic)


Listener = Callable[[Event], None]


class Executor(Protocol):
    """Where the targets that must run are settled."""

    def open(self, scheduler: Scheduler) -> None: ...

    def fits(self, name: str) -> bool:
        """Whether it has room for ``name`` now (its lane of work is not full)."""

    def submit(self, name: str) -> None: ...

    def collect(self) -> list[Record]:
        """Waits until at least one submitted target is done; the records of those done."""

    def close(self) -> None: ...


class Scheduler:
    """``lock``: where to write navbuild.lock after the run (None: nowhere, as for a scratch
    rebuild); ``partial_lock``: the project is some models of a larger whole (the Python API), so
    the lock keeps the entries of models this run does not know. ``keep_open``: the executor (its
    worker processes) stays open after a build, for the next (plain doit builds one target a call);
    else each build closes it."""

    def __init__(self, session: Session, executor: Executor | None = None, *, listeners: Iterable[Listener] = (),
                 lock: Path | None = None, partial_lock: bool = False, keep_open: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.executor = executor if executor is not None else LocalExecutor()
        self.listeners = list(listeners)
        self.lock, self.partial_lock, self.keep_open = lock, partial_lock, keep_open
        self.warn = warn or (lambda text: print(f"navbuild: {text}", file=sys.stderr))
        self._telling = threading.Lock()
        self.began = time.monotonic()  # when the last build began; ``wall``: how long it took
        self.wall = 0.0
        self._stamps: dict[str, dict[str, float]] = {}  # target -> when it was ready, submitted, started

    def build(self, selected: list[str]) -> dict[str, Record]:
        """Bring ``selected`` and what they need up to date; a record per target of their closure."""
        session, graph = self.session, self.session.graph
        session.store.hold_shared()  # gc waits for this build
        closure = graph.closure(selected)
        waiting = list(closure)  # in dependency order: a chain of current targets settles in one pass
        queued: list[str] = []  # must run, waiting for room in the executor (in the order they came)
        done: dict[str, Record] = {}
        running = 0
        self.began, self._stamps = time.monotonic(), {}
        self.executor.open(self)
        try:
            while waiting or queued or running:
                for name in list(waiting):
                    if not all(dep in done for dep in graph.targets[name].deps):
                        continue
                    waiting.remove(name)
                    self._stamp(name, "ready")
                    record = self._settled_here(name, done)
                    if record is not None:
                        self._finish(record, done)
                    else:
                        queued.append(name)
                        self.tell(Event(QUEUED, name))
                for name in list(queued):  # in order, each as soon as its lane has room
                    if self.executor.fits(name):
                        queued.remove(name)
                        self._stamp(name, "submitted")
                        self.executor.submit(name)
                        running += 1
                if running:
                    for record in self.executor.collect():
                        running -= 1
                        self._finish(record, done)
                elif waiting and not any(all(d in done for d in graph.targets[n].deps) for n in waiting):
                    for name in list(waiting):  # cannot happen with a closure; never loop forever
                        waiting.remove(name)
                        self._finish(Record(name, FAILED, reason="not run: its dependencies never finished"), done)
        finally:
            self.wall = time.monotonic() - self.began
            if not self.keep_open:
                self.executor.close()
        records = {name: done[name] for name in closure}
        if self.lock is not None:
            self._write_lock(records)
        return records

    def tell(self, event: Event) -> None:
        """Every listener hears every event, one at a time (events come from executor threads too)."""
        with self._telling:
            if event.kind == STARTED:
                self._stamps.setdefault(event.target, {})["started"] = event.time
            for listener in self.listeners:
                listener(event)

    def _stamp(self, name: str, what: str) -> None:
        with self._telling:
            self._stamps.setdefault(name, {})[what] = time.monotonic()

    def _timed(self, record: Record) -> None:
        """The record's waits, from when its target was ready, submitted and started: for its
        dependencies (from the run's start), for room in the executor, and for its slots (which the
        executor measured: ``waits["slots"]``); ``waited`` is the last two, the time it could have run."""
        with self._telling:
            stamps = self._stamps.get(record.target, {})
        ready = stamps.get("ready", self.began)
        waits = {"dependencies": ready - self.began,
                 "executor": stamps["submitted"] - ready if "submitted" in stamps else 0.0,
                 "slots": record.waits.get("slots", 0.0)}
        record.waits = {cause: round(max(0.0, seconds), 4) for cause, seconds in waits.items()}
        record.waited = round(record.waits["executor"] + record.waits["slots"], 4)
        if "started" in stamps and record.started_at is None:
            record.started_at = round(stamps["started"] - self.began, 4)

    def _settled_here(self, name: str, done: dict[str, Record]) -> Record | None:
        """The record of a target that needs no executor: a dependency failed, or it is current."""
        target = self.session.graph.targets[name]
        failed = [dep for dep in target.deps if done[dep].status == FAILED]
        if failed:
            return not_run(target, failed, done)
        if self.session.is_up_to_date(name):
            return self.session.records.get(name)
        return None

    def _finish(self, record: Record, done: dict[str, Record]) -> None:
        self._timed(record)
        self.session.records.add(record)
        done[record.target] = record
        self.tell(Event(FINISHED, record.target, record=record))

    def _write_lock(self, records: dict[str, Record]) -> None:
        session = self.session

        def files_digest(record: Record) -> str | None:
            manifest = session.current_manifest(record.target)
            return tree_digest(manifest["files"]) if manifest else None

        try:
            lockfile.record_run(self.lock, session.graph, records.values(), files_digest, partial=self.partial_lock)
        except OSError as exc:  # a read-only checkout still builds
            self.warn(f"navbuild.lock not written: {exc}")


def not_run(target: Target, failed: list[str], done: dict[str, Record] | None = None) -> Record:
    """The record of a target whose dependencies failed: it is not run (a profile is not profiled).
    ``blocked_by`` names the failures it comes from: a dependency that was itself not run passes on
    its own, so a chain below one failure is counted once, under that failure."""
    blocked_by: list[str] = []
    for dep in failed:
        upstream = done.get(dep) if done else None
        for cause in (upstream.blocked_by if upstream is not None and upstream.blocked_by else [dep]):
            if cause not in blocked_by:
                blocked_by.append(cause)
    if target.kind == PROFILE:
        return Record(target.name, SKIPPED, reason=f"not profiled: {', '.join(failed)} failed", blocked_by=blocked_by)
    return Record(target.name, FAILED, reason=f"not run: {', '.join(failed)} failed", blocked_by=blocked_by)


CPU_LANE, GPU_LANE = "cpu", "gpu"


class LocalExecutor:
    """Actions run on this machine: in worker processes (``engine/workers.py``), each waited on by
    a thread of this process, in two lanes: ``jobs`` CPU targets (``-j``) and, beside them, the GPU
    targets, as many as the run's cards have slots (``--gpu-jobs``, default one per card), each in
    a worker pinned to the card its slot is on. Without a card (or a GPU target's card unknown) GPU
    targets share the CPU lane. When actions run in this process (``NAVBUILD_IN_PROCESS=1``,
    ``Options.isolate = False``, or rules added by code, which a worker could not rebuild) they run
    one at a time in the calling thread, on this process's current GPU; so does ``jobs == 1`` on a
    machine without a card: an in-process build may need the main thread.

    Before an action starts it takes its slots (``Slots.hold``): a CPU profile alone, a GPU target
    a card (a GPU profile the card alone). A caller may add code of its own to the workers (``hook``)."""

    def __init__(self, jobs: int = 1, hook: workers.Hook | None = None) -> None:
        self.jobs, self.hook = max(1, jobs), hook
        self.pool: workers.Pool | None = None  # started when the first action must run
        self.slots: Slots | None = None  # laid out when the first GPU target asks or an action starts
        self.scheduler: Scheduler | None = None
        # each build loop's own (plain doit builds from several threads at once): its lanes' counts,
        # what ran in the calling thread, what its threads finished
        self.here = threading.local()
        self.grants: dict[str, Grant] = {}
        self.starting = threading.Lock()  # one pool, one layout, whichever thread needs it first

    def open(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        session = scheduler.session
        self.isolated = workers.isolated() and session.options.isolate and session.registry.from_modules_alone()

    def fits(self, name: str) -> bool:
        busy = self._loop().busy
        if not self.isolated:
            return not any(busy.values())
        lane = self._lane(name)
        return busy[lane] < (self.jobs if lane == CPU_LANE else self._gpu_room())

    def submit(self, name: str) -> None:
        loop = self._loop()
        lane = loop.lanes[name] = self._lane(name)
        loop.busy[lane] += 1
        if not self.isolated or (self.jobs == 1 and not self._gpu_room()):
            loop.done.append(self._settle(name))
            return
        threading.Thread(target=self._settle_in_thread, args=(name, loop.finished), name=f"navbuild {name}",
                         daemon=True).start()

    def collect(self) -> list[Record]:
        loop = self._loop()
        if loop.done:
            done, loop.done = loop.done, []
            return [self._done(loop, record.target, record) for record in done]
        found = [loop.finished.get()]
        while not loop.finished.empty():
            found.append(loop.finished.get_nowait())
        records = []
        for name, outcome in found:
            if isinstance(outcome, BaseException):
                raise outcome  # Session.run records a target's failure: this is a bug, not the target's
            records.append(self._done(loop, name, outcome))
        return records

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _loop(self) -> threading.local:
        loop = self.here
        if not hasattr(loop, "busy"):
            loop.busy = {CPU_LANE: 0, GPU_LANE: 0}
            loop.lanes = {}  # target -> its lane, while it runs
            loop.done = []  # settled in the calling thread
            loop.finished = queue.Queue()  # (name, record or exception) from this loop's threads
        return loop

    def _done(self, loop: threading.local, name: str, record: Record) -> Record:
        loop.busy[loop.lanes.pop(name)] -= 1
        return record

    def _lane(self, name: str) -> str:
        target = self.scheduler.session.graph.targets[name]
        return GPU_LANE if on_gpu(target) and self._gpu_room() else CPU_LANE

    def _gpu_room(self) -> int:
        """GPU targets at once beside the CPU lane: the slots of cards a worker can be pinned to."""
        return self._slots().pinned if self.isolated else 0

    def _slots(self) -> Slots:
        """The run's cards and their slots, looked up once (never on the no-op path)."""
        with self.starting:
            if self.slots is None:
                used, idle = cards.for_run()
                if idle and self.isolated:
                    self.scheduler.warn(cards.idle_text(used, idle))
                options = self.scheduler.session.options
                self.slots = Slots(used, options.gpu_jobs) if self.isolated else Slots(used[:1], 1)
                cores = len(os.sched_getaffinity(0))
                if self.isolated and self.slots.pinned and self.jobs + self.slots.pinned > cores:
                    self.scheduler.warn(f"-j {self.jobs} and {self.slots.pinned} GPU slots run up to "
                                        f"{self.jobs + self.slots.pinned} targets on {cores} CPU cores: a GPU "
                                        f"profile's launch thread may wait for a core (docs/distributed.md)")
            return self.slots

    def _settle_in_thread(self, name: str, finished: queue.Queue) -> None:
        try:
            finished.put((name, self._settle(name)))
        except BaseException as exc:  # noqa: BLE001 - raised again in the scheduler's thread
            finished.put((name, exc))

    def _settle(self, name: str) -> Record:
        session = self.scheduler.session
        session.run(name, self._act)
        record = session.records.get(name) or Record(name, FAILED, reason="no record")
        grant = self.grants.pop(name, None)
        if grant is not None:  # the session timed the slots' wait with the action: apart, it is a wait
            record.waits = {**record.waits, "slots": grant.waited}
            record.seconds = max(0.0, record.seconds - grant.waited)
            record.gpu = grant.gpu
        return record

    def _act(self, target: Target, key: str, material: dict[str, Any]) -> dict[str, Any]:
        with self._slots().hold(target) as grant:
            self.grants[target.name] = grant
            self.scheduler.tell(Event(STARTED, target.name, grant=grant))

            def progress(said: Progress) -> None:
                self.scheduler.tell(Event(PROGRESS, target.name, progress=said))

            if self.isolated:
                return self._pool().execute(target, key, material, pin=self._pin(grant), progress=progress)
            return actions.execute(self.scheduler.session, target, key, material, progress=progress)

    def _pin(self, grant: Grant) -> dict[str, str]:
        """A GPU target's worker sees its card alone; a CPU target's sees none while cards are pinned."""
        if grant.card is not None:
            return grant.card.environment()
        return cards.NO_CARD if self._gpu_room() else {}

    def _pool(self) -> workers.Pool:
        with self.starting:
            if self.pool is None:
                session = self.scheduler.session
                self.pool = workers.Pool(session.describe(), session.store,
                                         lambda target, text: actions.write_failure_log(session, target, text),
                                         size=self.jobs + self.slots.pinned, hook=self.hook,
                                         echo=session.options.verbose)
            return self.pool


def build(session: Session, selected: list[str], **options: Any) -> dict[str, Record]:
    """``Scheduler(session, **options).build(selected)``: the short way for one run."""
    return Scheduler(session, **options).build(selected)
