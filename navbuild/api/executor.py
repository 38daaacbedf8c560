"""What the Python API adds to the engine's worker processes. An API call builds through the one
scheduler (``engine/scheduler.py``), as the CLI does: what is current is decided in the caller's
process, what must run goes to the engine's worker processes, ``jobs`` at a time, so that an
exporter or a model that crashes (a segfault, an abort) or hangs fails its own target and the rest
of the graph goes on. The API adds to those workers, through a ``workers.Hook``, the two things
only it needs:

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
from typing import Any, Callable

from navbuild.engine import workers

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
