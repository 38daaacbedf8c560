"""Timers: how long one call takes. ``timer(run, sync) -> seconds``, where ``run`` is the inference
and ``sync`` waits for the device; any callable of that shape can be passed (tests pass a
scripted clock). torch is imported only by the CUDA-event timer, when it is created.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

Timer = Callable[[Callable[[], Any], Callable[[], None]], float]


def wall_timer(run: Callable[[], Any], sync: Callable[[], None]) -> float:
    """perf_counter around the call and the device synchronization: correct on CPU and CUDA."""
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


class CudaEventTimer:
    """CUDA events around the call on torch's current stream (imports torch when created).

    Only work queued on that stream is timed: use it for torch-based runners; runners that use
    their own streams (ONNX Runtime, TensorRT through cuda-python) need ``wall_timer``.
    """

    def __init__(self) -> None:
        import torch  # noqa: PLC0415 - lazy on purpose

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, run: Callable[[], Any], sync: Callable[[], None]) -> float:
        self._start.record()
        run()
        self._end.record()
        sync()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3


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
