"""The parent side of the AOTI worker (protocol in ``aoti_worker``): start it, ask, survive its crash.

``AotiChild.request`` sends one request and waits for its reply. Whatever goes wrong on the other
side comes back as ``AotiChildError`` whose first line says what happened and why: the signal that
killed the worker (SIGSEGV, SIGKILL...) or its exit status, the request it was serving, and the
line of its stderr that says the most (a C++ exception's ``what():``, Python's fatal error); the
following lines hold its stderr: the head (where a C++ error starts, before hundreds of stack
frames) and the tail. A request that takes longer than its timeout kills the worker. Nothing here
imports torch.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import msgpack

from navbuild.runner import RunnerError, native_error
from navbuild_rules.torch_compile.aoti_worker import HEADER, write_frame

REPO_ROOT = Path(__file__).resolve().parents[2]  # holds navbuild/ and navbuild_rules/
WORKER_ARGV = (sys.executable, "-m", "navbuild_rules.torch_compile.aoti_worker")
LOAD_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 300.0
STDERR_TAIL_CHARS = 4000
STDERR_HEAD_CHARS = 2000


class AotiChildError(RunnerError):
    """The AOTI worker crashed, exited, timed out or answered with an error."""


def describe_exit(returncode: int | None) -> str:
    """``killed by SIGSEGV (signal 11)`` / ``exited with status 3`` / ``still running``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} (signal {-returncode})"
    return f"exited with status {returncode}"


def stderr_summary(text: str) -> str:
    """One line from the worker's stderr that says the most: a C++ exception's message, else Python's
    fatal-error report with the innermost frame (faulthandler), else the last line that is not
    faulthandler's module list."""
    native = native_error(text)
    if native:
        return native
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("Fatal Python error:"):
            frames = [f for f in lines[index + 1:] if f.startswith("File ")]
            if frames:  # 'File "/.../torch/export/pt2_archive/_package.py", line 1045 in _load_aoti'
                where, _, rest = frames[0][len("File "):].partition(", line ")
                short = "/".join(where.strip('"').split("/")[-3:])
                return f"{line} in {short}:{rest.replace(' in ', ' (', 1)})"
            return line
    lines = [line for line in lines if not line.startswith("Extension modules:")]
    return lines[-1] if lines else "(stderr is empty)"


class AotiChild:
    """One worker process. ``argv`` and ``env`` may be replaced (tests start a crashing command)."""

    def __init__(self, argv: Sequence[str] = WORKER_ARGV, env: dict[str, str] | None = None,
                 label: str = "aoti worker") -> None:
        self.argv = list(argv)
        self.env = env
        self.label = label
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = None
        self._dead: str | None = None  # why it can no longer answer

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "AotiChild":
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONFAULTHANDLER", "1")  # a native crash prints the Python stack to stderr
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, cwd=str(REPO_ROOT))
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit; kill it if it does not. Safe to call twice or after a crash."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and self._dead is None:
            try:
                self.request({"op": "exit"}, timeout=timeout)
            except AotiChildError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, self._stderr):
            if stream is not None:
                stream.close()
        self.proc = None
        self._dead = self._dead or "it was closed"

    def __enter__(self) -> "AotiChild":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------
    def request(self, message: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S,
                what: str | None = None) -> dict[str, Any]:
        """Send ``message``, return the worker's reply; raise AotiChildError on any failure."""
        what = what or str(message.get("op"))
        if self.proc is None or self._dead is not None:
            raise AotiChildError(f"{self.label} cannot serve {what}: it is not running "
                                 f"({self._dead or 'never started'})")
        try:
            write_frame(self.proc.stdin, message)
            reply = self._read_reply(time.monotonic() + timeout)
        except (BrokenPipeError, EOFError, ConnectionResetError):
            raise self._crashed(what) from None
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            self._dead = f"killed after {timeout:g} s without an answer"
            raise AotiChildError(f"{self.label} gave no answer to {what} within {timeout:g} s and was killed; "
                                 f"stderr: {stderr_summary(self.stderr_kept())}\n{self.stderr_kept()}") from None
        if not reply.get("ok"):
            raise AotiChildError(f"{self.label}: {what} failed: {reply.get('error')}\n"
                                 f"{reply.get('traceback', '')}".rstrip())
        return reply

    def _read_reply(self, deadline: float) -> dict[str, Any]:
        header = self._read_exactly(HEADER.size, deadline)
        (length,) = HEADER.unpack(header)
        return msgpack.unpackb(self._read_exactly(length, deadline), raw=False)

    def _read_exactly(self, count: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks, remaining = [], count
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while remaining:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise TimeoutError
                chunk = os.read(fd, remaining)
                if not chunk:
                    raise EOFError
                chunks.append(chunk)
                remaining -= len(chunk)
        return b"".join(chunks)

    def _crashed(self, what: str) -> AotiChildError:
        assert self.proc is not None
        try:
            returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # closed its pipe but lives on: end it
            self.proc.kill()
            returncode = self.proc.wait()
        kept = self.stderr_kept()
        self._dead = describe_exit(returncode)
        return AotiChildError(f"{self.label} {self._dead} while serving {what}; stderr: "
                              f"{stderr_summary(kept)}\n--- worker stderr ---\n{kept}")

    def stderr_tail(self, chars: int = STDERR_TAIL_CHARS) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        size = self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, size - chars))
        return self._stderr.read().decode("utf-8", "replace")

    def stderr_kept(self, head: int = STDERR_HEAD_CHARS, tail: int = STDERR_TAIL_CHARS) -> str:
        """The worker's stderr, or its first ``head`` and last ``tail`` characters when it is longer:
        a C++ error's message comes first, the stack frames after it."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        size = self._stderr.seek(0, os.SEEK_END)
        if size <= head + tail:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        self._stderr.seek(0)
        first = self._stderr.read(head).decode("utf-8", "replace")
        return f"{first}\n[... {size - head - tail} bytes left out ...]\n{self.stderr_tail(tail)}"
