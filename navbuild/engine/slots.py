"""What may run beside what on this machine: one object that a target's action asks before it starts.

- A profile runs alone: whatever ran beside it would be measured with it, so its figures would
  depend on ``-j``. Builds and checks share the machine with each other, and a waiting profile goes
  before new builds (``SharedOrAlone``, a readers-writer lock that starves no one).
- A target bound to a CUDA device takes one of ``gpu_jobs`` GPU slots (``--gpu-jobs``, default 1),
  whatever ``-j`` says.

``Slots.hold(target)`` waits for both and yields a ``Grant``: how long the target waited, and which
GPU slot it holds (the number a per-device pinning would turn into ``CUDA_VISIBLE_DEVICES``).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from navbuild.engine.graph import PROFILE


@dataclass
class Grant:
    """What a target got: ``waited`` seconds for the profile lock and a GPU slot, the ``gpu`` slot
    it holds (None for a target that needs none)."""

    waited: float = 0.0
    gpu: int | None = None


class Slots:
    def __init__(self, gpu_jobs: int = 1) -> None:
        self.measuring = SharedOrAlone()
        self.gpu_free = list(range(max(1, gpu_jobs)))  # slot numbers not held now
        self.gpu_changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, target: Any) -> Iterator[Grant]:
        """``target`` needs ``kind`` and ``device`` (an engine Target, or anything shaped like one)."""
        started = time.perf_counter()
        alone = target.kind == PROFILE
        with self.measuring.alone() if alone else self.measuring.shared(), self._gpu(target) as gpu:
            yield Grant(waited=time.perf_counter() - started, gpu=gpu)

    @contextlib.contextmanager
    def _gpu(self, target: Any) -> Iterator[int | None]:
        if not str(target.device).startswith("cuda"):
            yield None
            return
        with self.gpu_changed:
            self.gpu_changed.wait_for(lambda: bool(self.gpu_free))
            slot = self.gpu_free.pop(0)
        try:
            yield slot
        finally:
            with self.gpu_changed:
                self.gpu_free.append(slot)
                self.gpu_free.sort()
                self.gpu_changed.notify()


class SharedOrAlone:
    """A readers-writer lock that lets a waiting profile in before new builds (no starvation)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.sharing = 0
        self.alone_now = False
        self.alone_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self.changed:
            self.changed.wait_for(lambda: not self.alone_now and not self.alone_waiting)
            self.sharing += 1
        try:
            yield
        finally:
            with self.changed:
                self.sharing -= 1
                self.changed.notify_all()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self.changed:
            self.alone_waiting += 1
            self.changed.wait_for(lambda: not self.alone_now and not self.sharing)
            self.alone_waiting -= 1
            self.alone_now = True
        try:
            yield
        finally:
            with self.changed:
                self.alone_now = False
                self.changed.notify_all()
