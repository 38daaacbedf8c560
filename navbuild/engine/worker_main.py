"""A worker process: opens the project from its description, then runs one target per request.

Started by ``navbuild.engine.workers`` (see there for the protocol). The frames travel on copies of
its first stdin and stdout: file descriptor 0 is then /dev/null, 1 is pointed at stderr, and
while a target runs, 1 and 2 point at
that target's log, so prints, native messages and the faulthandler traceback of a crash end up in
the log the parent keeps. A file-size limit makes writes fail (EFBIG) instead of killing it.
"""
from __future__ import annotations

import faulthandler
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from navbuild.engine import discovery
from navbuild.engine.workers import read_frame, write_frame


class Worker:
    def __init__(self, frames_out: Any = None) -> None:
        self.frames_out = frames_out  # where progress frames go while a target runs
        self.writing = threading.Lock()  # a rule may say its progress from a thread of its own
        self.session: Any = None
        self.hook: dict[str, Any] | None = None  # the caller's hook this process took (workers.Hook)
        self.hook_module: Any = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "open":
            from navbuild.engine.project import open_described

            self.close()
            self.take_hook(request["project"].get("hook"))
            self.session = open_described(request["project"])
            return {"ok": True}
        if op == "run":
            return self.run(request)
        raise ValueError(f"unknown request {op!r}")

    def take_hook(self, hook: dict[str, Any] | None) -> None:
        """Run a caller's ``open_worker`` once; a process that took one serves no other caller."""
        if hook == self.hook:
            return
        if self.hook is not None:
            raise RuntimeError(f"this worker runs the code of another caller ({self.hook['module']})")
        module = importlib.import_module(hook["module"])
        module.open_worker(hook["data"])
        self.hook, self.hook_module = hook, module

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        from navbuild.engine import actions
        from navbuild.rule import Skip

        session = self.session
        if request.get("hook") is not None and self.hook_module is not None:
            self.hook_module.before_target(request["hook"])
        target = session.graph.targets[request["target"]]
        session.forget_keys()  # upstream targets may have been built since the last request
        try:
            manifest = actions.execute(session, target, request["key"], request["material"], Path(request["log"]),
                                       progress=self.say)
        except Skip as skip:
            return {"ok": False, "skip": str(skip)}
        return {"ok": True, "manifest": manifest}

    def say(self, progress: Any) -> None:
        """A progress frame to the parent, before the reply (engine/progress.py)."""
        if self.frames_out is not None:
            with self.writing:
                write_frame(self.frames_out, {"progress": progress.to_frame()})

    def close(self) -> None:
        if self.session is not None:
            self.session.close()  # its temp folder goes
            self.session = None


def _watch_parent() -> None:
    """The parent died (even SIGKILL): end this process group, busy or not."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="navbuild-parent-watch", daemon=True).start()


def main() -> int:
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # a model that reads stdin cannot eat the requests
    sys.stdin = open(os.devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    faulthandler.enable(file=sys.__stderr__)  # fd 2: the running target's log
    _watch_parent()
    discovery.install()  # before any user code (a caller's hook) imports: every project import is followed
    worker = Worker(frames_out)
    while (request := read_frame(frames_in)) is not None:
        try:
            reply = worker.handle(request)
        except BaseException as exc:  # the worker survives Python errors; a native crash ends it
            reply = {"ok": False, "error": type(exc).__name__, "message": str(exc) or type(exc).__name__,
                     "errno": getattr(exc, "errno", None) if isinstance(exc, OSError) else None,
                     "transient": bool(getattr(exc, "transient", False)), "traceback": traceback.format_exc()}
        with worker.writing:
            write_frame(frames_out, reply)
    worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
