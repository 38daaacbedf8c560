"""Timers: how long calls take. A timer is called as ``timer(run, sync) -> seconds`` for one call
(``run`` is the inference, ``sync`` waits for the device): a latency. A timer may also time a
window, ``timer.window(run, sync, calls) -> seconds``: ``calls`` calls issued back to back and one
``sync`` at the end, what a stopwatch around a plain loop reads (the throughput). Any callable of
the first shape can be passed (tests pass a scripted clock); one without ``window`` times a window
as the sum of its calls, each synchronised. torch is imported only by the CUDA-event timer, when it
is created.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

Timer = Callable[[Callable[[], Any], Callable[[], None]], float]


class WallTimer:
    """A clock (``time.perf_counter``) around the calls and the device synchronisation: correct on
    every device, for every runner, whatever stream it uses."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock

    def __call__(self, run: Callable[[], Any], sync: Callable[[], None]) -> float:
        start = self.clock()
        run()
        sync()
        return self.clock() - start

    def window(self, run: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
        start = self.clock()
        for _ in range(calls):
            run()
        sync()
        return self.clock() - start


wall_timer = WallTimer()


class CudaEventTimer:
    """CUDA events around the calls on torch's current stream (imports torch when created).

    Only work queued on that stream is timed: use it for torch-based runners; runners that use
    their own streams (ONNX Runtime) need the wall clock. In a window nothing synchronises between
    the two events: the host queues the calls as fast as it can, as a plain loop does.
    """

    def __init__(self) -> None:
        import torch  # noqa: PLC0415 - lazy on purpose

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, run: Callable[[], Any], sync: Callable[[], None]) -> float:
        return self.window(run, sync, 1)

    def window(self, run: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
        self._start.record()
        for _ in range(calls):
            run()
        self._end.record()
        sync()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3


def time_window(timer: Timer, run: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
    """Seconds for ``calls`` calls back to back (``timer.window``), or, for a timer that times single
    calls only, the sum of ``calls`` synchronised calls."""
    window = getattr(timer, "window", None)
    if window is not None:
        return window(run, sync, calls)
    return sum(timer(run, sync) for _ in range(calls))


def torch_cuda_sync() -> None:
    """torch.cuda.synchronize() when torch is loaded (it must be, if CUDA tensors exist)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.cuda.synchronize()


def no_sync() -> None:
    pass


def make_timer(kind: str, device: str, timer: Timer | None = None) -> Timer:
    """``timer`` if given, else the settings' kind (``ProfileConfig.timer``) on ``device``: CUDA
    events only on a GPU."""
    if timer is not None:
        return timer
    if kind == "cuda-events" and device.startswith("cuda"):
        return CudaEventTimer()
    return wall_timer
