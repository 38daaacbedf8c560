"""Running targets for the Python API: what is current is decided here, in the caller's process;
what must run goes to the engine's worker processes (``navbuild.engine.workers``), ``jobs`` at a
time, so that an exporter or a model that crashes (a segfault, an abort) or hangs fails its own
target and the rest of the graph goes on. The engine's pool is the one that runs actions, for the
CLI and the API alike; the API adds to it, through a ``workers.Hook``, the two things only it needs:

- each worker imports the caller's ``__main__`` first, as ``multiprocessing``'s spawn would, so
  that the classes of a model defined in the caller's script unpickle there (hence the
  ``if __name__ == "__main__":`` rule in docs/python-api.md; an unguarded optimize in the script
  refuses, ``refuse_nested_call``);
- before each target, the worker is handed the digests of the pickles of the live models that the
  caller wrote for it (``objects.trust``); nothing else reaches its unpickler.

``NAVBUILD_USE_MULTIPROCESSING=0`` runs every target in the calling process instead (no isolation,
one at a time).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent import futures
from typing import Any, Callable

from navbuild.engine import workers
from navbuild.engine.graph import PROFILE
from navbuild.engine.records import FAILED, SKIPPED, Record
from navbuild.engine.session import Session

ENV_MULTIPROCESSING = "NAVBUILD_USE_MULTIPROCESSING"
ENV_IN_WORKER = "NAVBUILD_API_WORKER"
# of spawn's preparation data: the process name too, so that a script guarded by
# `multiprocessing.current_process().name == "MainProcess"` runs nothing in a worker
MAIN_KEYS = ("name", "sys_path", "dir", "init_main_from_name", "init_main_from_path")


class NestedOptimizeError(RuntimeError):
    """The API was called while a worker process was importing the caller's script."""


def isolation_enabled() -> bool:
    from navbuild.api.environment import use_multiprocessing  # NAVIGATOR_USE_MULTIPROCESSING too

    return use_multiprocessing()


def refuse_nested_call() -> None:
    """Workers import the caller's main script; an unguarded optimize() there must stop."""
    # a multiprocessing child is "inheriting" while it imports its parent's main module
    if os.environ.get(ENV_IN_WORKER) or getattr(multiprocessing.current_process(), "_inheriting", False):
        raise NestedOptimizeError(
            "navbuild's optimize was called while a worker process imported your script: put the "
            "optimization under `if __name__ == \"__main__\":` (docs/python-api.md, \"Worker processes\"), "
            f"or set {ENV_MULTIPROCESSING}=0 to build in this process without isolation")


# -- the hook: what the API adds to the engine's workers ------------------------------------------------
def worker_hook(pickles_for: Callable[[str], dict[str, str]]) -> workers.Hook:
    """``pickles_for(target)`` runs here before a target goes to a worker and returns the pickles
    (identity -> digest) the worker may load for it (``objects.write_pickle``)."""
    from multiprocessing import spawn

    data = spawn.get_preparation_data("navbuild-worker")
    return workers.Hook(module=__name__, data={key: data[key] for key in MAIN_KEYS if key in data},
                        payload=pickles_for)


def open_worker(data: dict[str, Any]) -> None:
    """In a worker, before it opens the project: the caller's main module, imported as spawn does."""
    from multiprocessing import spawn

    os.environ[ENV_IN_WORKER] = "1"
    spawn.prepare(data)


def before_target(pickles: dict[str, str]) -> None:
    """In a worker, before a target: the pickles its parent wrote for it."""
    from navbuild.api import objects

    objects.trust(pickles)


# -- scheduling ---------------------------------------------------------------------------------
def run_targets(session: Session, names: list[str], *, jobs: int = 1,
                on_done: Callable[[Record], None] | None = None) -> dict[str, Record]:
    """Bring ``names`` (and what they need) up to date; returns a record per target of the closure.

    Up-to-date checks run here; ``Session.run`` hands each action to a worker (unless the session
    does not isolate), from up to ``jobs`` threads that each wait on one worker, as ``-j`` does."""
    graph = session.graph
    waiting = graph.closure(names)
    done: dict[str, Record] = {}
    jobs = max(1, jobs) if session.options.isolate else 1
    if jobs > 1:
        workers.pool(session).size = jobs
    running: dict[futures.Future, str] = {}

    def finish(record: Record) -> None:
        session.records.add(record)
        done[record.target] = record
        if on_done is not None:
            on_done(record)

    def ready() -> list[str]:
        return [n for n in waiting if all(d in done for d in graph.targets[n].deps)]

    with futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="navbuild-target") as threads:
        while waiting or running:
            for name in ready():
                if len(running) >= jobs:
                    break
                waiting.remove(name)
                failed = [d for d in graph.targets[name].deps if done[d].status == FAILED]
                if failed:
                    finish(_not_run(session, name, failed))
                elif session.is_up_to_date(name):
                    finish(session.records.get(name))
                elif jobs == 1:
                    session.run(name)  # in this thread: an in-process build may need the main thread
                    finish(_record(session, name))
                else:
                    running[threads.submit(session.run, name)] = name
            if running:
                finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    future.result()  # Session.run records a target's failure; anything else is a bug
                    finish(_record(session, name))
            elif waiting and not ready():
                for name in list(waiting):  # cannot happen with a closure; never loop forever
                    waiting.remove(name)
                    finish(Record(name, FAILED, reason="not run: its dependencies never finished"))
    return done


def _record(session: Session, name: str) -> Record:
    return session.records.get(name) or Record(name, FAILED, reason="no record")


def _not_run(session: Session, name: str, failed: list[str]) -> Record:
    """A target whose dependency failed is not run (profiles are skipped, as the CLI does)."""
    if session.graph.targets[name].kind == PROFILE:
        return Record(name, SKIPPED, reason=f"not profiled: {', '.join(failed)} failed")
    return Record(name, FAILED, reason=f"not run: {', '.join(failed)} failed")
