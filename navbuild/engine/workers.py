"""Worker processes that run user code, so that a model that crashes, hangs or aborts fails its own
target and nothing else.

A ``Pool`` of persistent workers, each a fresh interpreter (``python -m navbuild.engine.worker_main``:
never a fork, so CUDA is never initialised in a forked process), each opening the project once
from its description (``Session.describe``: the validated config mapping, root and rule modules)
and then building, checking and profiling many targets; a framework is imported once per worker,
not once per target. Workers start only when a target must run: the no-op path starts none.

The parent sends one request per target and waits for the reply for at most the target's timeout
(``[project] timeout``, a model's ``timeout``, or ``timeout`` in a format's table). A worker that
dies (SIGSEGV, SIGABRT, ...) or does not answer in time (then it is killed with its process group)
is replaced, and the target fails with that reason and the log written so far. The scheduler's
local executor (``engine/scheduler.py``) owns the pool: ``-j N`` runs N CPU targets at once through N
workers, and each GPU slot one more. A worker may be pinned when it starts (``pin``: the
environment that names its card, ``engine/cards.py``) and keeps its pin for life; the pool keeps idle
workers by pin, and a full pool retires an idle worker of another pin to start one. With
``NAVBUILD_IN_PROCESS=1`` (``isolated()`` false, or ``Options.isolate = False``) it runs actions in
the navbuild process instead (for a debugger; no timeout, and a crash ends the build).

A caller may add code of its own to its workers through a ``Hook`` named by module (the Python
API imports the caller's script there and hands over its live models); the engine imports no caller.

Protocol: frames on the worker's stdin (requests) and stdout (replies), each a 4-byte big-endian
length and a msgpack map; one reply per request:

    {"op": "open", "project": description}                       -> {"ok": true}
    {"op": "run", "target", "key", "material", "log": log path,
     "hook": the hook's payload or None}                         -> {"ok": true, "manifest": {...}}
        | {"ok": false, "skip": reason}
        | {"ok": false, "error": type, "message": str, "errno": int | None, "transient": bool}

While a target runs, the worker may send progress frames before its reply, ``{"progress": {"phase",
"detail"}}`` (engine/progress.py): the parent hands each to the caller's ``progress`` and goes on
waiting for the reply, within the same timeout.

End of input ends a worker; so does its parent's death (it watches for it).
"""
from __future__ import annotations

import atexit
import errno
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import msgpack

from navbuild.engine.graph import Target
from navbuild.engine.log_cap import capped_file
from navbuild.engine.progress import Progress, Say
from navbuild.engine.store import Store, safe_name
from navbuild.rule import Skip
from navbuild.runner import native_error

IN_PROCESS_ENV = "NAVBUILD_IN_PROCESS"
OPEN_TIMEOUT_S = 300.0  # starting a worker and opening the project
HEADER = struct.Struct(">I")
MAX_SPARES = 4  # idle workers kept between sessions of one process (tests, the Python API)
_POOLS: weakref.WeakSet[Pool] = weakref.WeakSet()
_SPARES: list[Worker] = []


class Crashed(RuntimeError):
    """The worker process died while running a target (a signal or an exit of its own)."""


class TimedOut(RuntimeError):
    """The target ran longer than its timeout; its worker was killed."""


class WorkerStartError(RuntimeError):
    """No worker process could start and open the project: not the target's doing, so it is never
    recorded as the target's failure (``transient``, as ``Session._failed`` reads it)."""

    transient = True


class WorkerError(RuntimeError):
    """A Python exception raised in a worker; subclasses carry the original type's name, and
    ``worker_traceback`` the traceback as the worker formatted it."""

    worker_traceback = ""


@dataclass
class Hook:
    """What a caller adds to its worker processes. ``module`` is imported in each worker, by name:
    its ``open_worker(data)`` runs before the worker opens the project, and its
    ``before_target(payload)`` before each target, with ``payload(target name)`` computed in this
    process just before the target is sent. ``data`` and the payloads are plain data."""

    module: str
    data: dict[str, Any]
    payload: Callable[[str], dict[str, Any]] | None = None


def isolated() -> bool:
    return os.environ.get(IN_PROCESS_ENV, "").lower() not in ("1", "true", "yes")


# -- frames -------------------------------------------------------------------------------------
def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if body is None else msgpack.unpackb(body, raw=False)


def _read_exactly(stream: BinaryIO, count: int) -> bytes | None:
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the pool -----------------------------------------------------------------------------------
class Pool:
    """At most ``size`` workers; a target checks one out, runs, and gives it back (or it is replaced).

    ``description``: the project the workers open (``Session.describe``); ``store``: where the
    running target's log is written; ``failure_log(target, text)`` leaves the log of a crash or a
    timeout where the user looks for it; ``echo``: the running target's log goes to stderr too."""

    def __init__(self, description: dict[str, Any], store: Store, failure_log: Callable[[Target, str], None],
                 size: int = 1, hook: Hook | None = None, echo: bool = False) -> None:
        self.store, self.failure_log, self.echo = store, failure_log, echo
        self.hook = hook
        self.description = {**description,
                            "hook": {"module": hook.module, "data": hook.data} if hook is not None else None}
        self.size = size
        self.idle: list[Worker] = []
        self.count = 0  # workers alive or starting
        self.ready = threading.Condition()
        self.broken: str | None = None  # why no worker could start (later targets are not tried again)
        _POOLS.add(self)

    def execute(self, target: Target, key: str, material: dict[str, Any],
                pin: dict[str, str] | None = None, progress: Say | None = None) -> dict[str, Any]:
        """Run ``target``'s action (``actions.execute``) in a worker whose environment has ``pin``
        (``CUDA_VISIBLE_DEVICES`` naming its card: set when the worker starts, before CUDA can);
        returns the manifest it wrote under ``key``. ``progress`` hears what the worker says the
        action is doing."""
        log = self.store.tmp / f"{safe_name(target.name)}-{uuid.uuid4().hex[:8]}.log"
        try:
            worker = self._checkout(pin or {}, progress)
        except WorkerStartError as exc:
            self.failure_log(target, f"navbuild: {target.name}: {exc}\n")
            raise
        hook = self.hook
        payload = hook.payload(target.name) if hook is not None and hook.payload is not None else None
        try:
            return worker.run(target, key, material, log, echo=self.echo, hook=payload, progress=progress)
        except (Crashed, TimedOut) as exc:
            text = capped_file(log) if log.exists() else ""  # a crash's log may be as long as a build's
            native = native_error(text) if isinstance(exc, Crashed) else None
            if native:  # the first words of the C++ error, not only the signal that followed it
                exc = Crashed(f"{exc}: {native}")
            self.failure_log(target, f"{text}\nnavbuild: {target.name}: {exc}\n")
            raise exc from None
        finally:
            self._checkin(worker)
            log.unlink(missing_ok=True)

    def _checkout(self, pin: dict[str, str], progress: Say | None = None) -> Worker:
        """An idle worker with this pin, else a new one; a worker keeps its pin for life, so when the
        pool is full an idle worker of another pin makes room."""
        while True:
            retired = None
            with self.ready:
                if self.broken:
                    raise WorkerStartError(self.broken)
                mine = next((worker for worker in reversed(self.idle) if worker.pin == pin), None)
                if mine is not None:
                    self.idle.remove(mine)
                    if mine.alive():
                        return mine
                    retired = mine
                elif self.count < self.size:
                    self.count += 1
                    break
                elif self.idle:
                    retired = self.idle.pop(0)
                else:
                    self.ready.wait()
                    continue
                self.count -= 1
            retired.close()  # outside the lock: closing waits for the process to end
        try:
            spare = _spare(self.description, pin)
            if spare is not None:
                return spare
            if progress is not None:  # a fresh interpreter imports the frameworks: seconds, often
                progress(Progress("starting", "a fresh worker process"))
            return Worker(self.description, pin)
        except BaseException as exc:
            with self.ready:
                self.count -= 1
                if isinstance(exc, WorkerStartError):
                    self.broken = str(exc)
                self.ready.notify_all()
            raise

    def _checkin(self, worker: Worker) -> None:
        with self.ready:
            if worker.alive():
                self.idle.append(worker)
            else:
                worker.close()
                self.count -= 1
            self.ready.notify()

    def close(self) -> None:
        """Idle workers are kept for the next session of this process (framework already imported)."""
        with self.ready:
            idle, self.idle = self.idle, []
            self.count -= len(idle)
        for worker in idle:
            if len(_SPARES) < MAX_SPARES and worker.alive():
                _SPARES.append(worker)
            else:
                worker.close()


def _spare(description: dict[str, Any], pin: dict[str, str]) -> Worker | None:
    """A worker left by an earlier session of this process, with this pin, opened on this project."""
    env = _environment(pin)
    for worker in list(_SPARES):
        if worker.env == env:
            _SPARES.remove(worker)
            if worker.alive() and worker.open(description):
                return worker
            worker.close()
    return None


def _environment(pin: dict[str, str]) -> dict[str, str]:
    """A worker's environment: this one, with this interpreter's import path, and its pin."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.exists(p))
    return {**env, **pin}


@atexit.register
def _close_all() -> None:
    for each in list(_POOLS):
        each.close()
    while _SPARES:
        _SPARES.pop().close()


# -- one worker ---------------------------------------------------------------------------------
class Worker:
    def __init__(self, description: dict[str, Any], pin: dict[str, str] | None = None) -> None:
        self.pin = dict(pin or {})
        self.env = _environment(self.pin)
        self.proc = subprocess.Popen([sys.executable, "-m", "navbuild.engine.worker_main"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=self.env, bufsize=0, start_new_session=True)
        try:
            reply = self._request({"op": "open", "project": description}, OPEN_TIMEOUT_S)
        except (Crashed, TimedOut) as exc:
            self.close()
            raise WorkerStartError(f"a worker process could not open the project: {exc}") from None
        if not reply.get("ok"):
            self.close()
            raise WorkerStartError(f"a worker process could not open the project: {reply.get('error')}: "
                                   f"{reply.get('message')}")

    def open(self, description: dict[str, Any]) -> bool:
        try:
            return bool(self._request({"op": "open", "project": description}, OPEN_TIMEOUT_S).get("ok"))
        except (Crashed, TimedOut):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, target: Target, key: str, material: dict[str, Any], log: Path, echo: bool,
            hook: dict[str, Any] | None = None, progress: Say | None = None) -> dict[str, Any]:
        request = {"op": "run", "target": target.name, "key": key, "material": material, "log": str(log),
                   "hook": hook}
        reply = self._request(request, target.seconds_allowed, tail=_Tail(log) if echo else None,
                              progress=progress)
        if reply.get("ok"):
            return reply["manifest"]
        if "skip" in reply:
            raise Skip(reply["skip"])
        raise _remote_error(reply)

    def _request(self, message: dict[str, Any], timeout: float, tail: _Tail | None = None,
                 progress: Say | None = None) -> dict:
        try:
            write_frame(self.proc.stdin, message)
        except (BrokenPipeError, OSError):
            raise Crashed(self._death()) from None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimedOut(f"no result after {timeout:g} s (its timeout); its worker was stopped")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(remaining, 0.2) if tail else remaining)
            if tail is not None:
                tail.poll()
            if ready:
                reply = read_frame(self.proc.stdout)
                if reply is None:
                    raise Crashed(self._death())
                if tail is not None:
                    tail.poll()
                if "progress" in reply:  # not the reply yet: what the running action does now
                    if progress is not None:
                        progress(Progress.from_frame(reply["progress"]))
                    continue
                return reply

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            return f"the worker process was killed by {signal.Signals(-code).name} ({signal.strsignal(-code)})"
        return f"the worker process exited with code {code}"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # and whatever it started (compile workers, AOTI child)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of input: the worker exits
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _remote_error(reply: dict[str, Any]) -> BaseException:
    """The worker's exception as the parent raises it: same type name and message, and an OSError
    where its errno matters (a full disk is reported as such)."""
    message = str(reply.get("message", ""))
    code = reply.get("errno")
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OSError(code, message.removeprefix(f"[Errno {code}] "))
    name = str(reply.get("error") or "Error")
    error = type(name, (WorkerError,), {"transient": bool(reply.get("transient"))})(message)
    error.worker_traceback = str(reply.get("traceback") or "")  # for a failure record; the log has it too
    return error


class _Tail:
    """With --verbose: the log of the running target, echoed as the worker writes it."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        if data:
            self.offset += len(data)
            sys.__stderr__.write(data.decode("utf-8", errors="replace"))
            sys.__stderr__.flush()
