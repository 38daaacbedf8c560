"""Profiling: latency percentiles and throughput of a runner (or any callable) per batch size.

For each batch size the profiler builds a batch by tiling the sample along the batch dimension
(``batches.py``), places it on the device once (``runner.prepare``), then measures it
(``point.py``: warm-up, windows of timed ``run_prepared`` + ``synchronize`` calls); the batch
loop (``sweep.py``) chooses the batch sizes and shares the time budget (``budget.py``) among
them. How to measure is a ``ProfileConfig`` (``settings.py``), what was found a ``ProfileResult``
(``results.py``), how a call is timed a timer (``timing.py``).

This module holds the two public entry points, ``profile_runner`` (what the engine measures) and
``profile`` (any callable, Model Navigator's ``nav.profile``), and keeps the names other code
imports from here. No framework is imported: tensors are handled by duck typing, and the CUDA
helpers import torch only when they are used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from navbuild.measure.batches import leaves, tile_array, tile_value
from navbuild.measure.budget import DEFAULT_BUDGET_S
from navbuild.measure.memory import is_out_of_memory
from navbuild.measure.point import is_stable, measure_point, window_runs
from navbuild.measure.results import (READABLE_FORMATS, RESULT_FORMAT, Progress, ProfilePoint, ProfileResult,
                                      ProgressEvent, round_sig)
from navbuild.measure.settings import DEFAULT_SWEEP_UP_TO, ProfileConfig
from navbuild.measure.sweep import ProfileError, run_profile
from navbuild.measure.timing import CudaEventTimer, Timer, no_sync, torch_cuda_sync, wall_timer
from navbuild.rule import NO_BATCH  # a model's max_batch_size when it has no batch dimension

if TYPE_CHECKING:  # imported where measuring happens
    import numpy as np

__all__ = ["DEFAULT_BUDGET_S", "DEFAULT_SWEEP_UP_TO", "READABLE_FORMATS", "RESULT_FORMAT", "CudaEventTimer",
           "ProfileConfig", "ProfileError", "ProfilePoint", "ProfileResult", "ProgressEvent", "Timer", "call_with",
           "is_out_of_memory", "is_stable", "measure_point", "profile", "profile_runner", "round_sig", "run_profile",
           "tile_array", "tile_value", "wall_timer", "window_runs"]


def profile_runner(runner: Any, sample: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
                   config: ProfileConfig | None = None, device: str | None = None,
                   progress: Progress | None = None, timer: Timer | None = None,
                   batch_dim: int = 0) -> ProfileResult:
    """Profile a navbuild Runner on one sample (dict name -> array, batch dimension first).

    Activates the runner if it is not active (and deactivates it afterwards only then). Per batch
    size: ``runner.prepare(feed)`` once, then timed ``run_prepared`` + ``synchronize`` calls.
    A model without a batch dimension (``max_batch_size`` 0) is measured once, on the sample as it is.
    """
    config = config or ProfileConfig()
    if not isinstance(sample, Mapping):
        sample = list(sample)[0]
    device = device or getattr(runner, "device", "cpu")
    model = getattr(runner, "model", None)
    default_max = getattr(model, "max_batch_size", None)

    def make_call(batch_size: int) -> Callable[[], Any]:
        if default_max == NO_BATCH:
            feed = dict(sample)
        else:
            feed = {name: tile_array(value, batch_size, batch_dim) for name, value in sample.items()}
        prepared = runner.prepare(feed)
        return lambda: runner.run_prepared(prepared)

    was_active = bool(getattr(runner, "active", False))
    if not was_active:
        runner.activate()
    try:
        return run_profile(make_call, runner.synchronize, config, device=device,
                           runner_name=getattr(runner, "name", type(runner).__name__), timer=timer,
                           progress=progress, default_max=default_max)
    finally:
        if not was_active:
            runner.deactivate()


def _detect_device(sample: Any) -> str:
    for leaf in leaves(sample):
        text = str(getattr(leaf, "device", ""))
        if "cuda" in text or "gpu" in text.lower():
            return "cuda"
    return "cpu"


def call_with(func: Callable[..., Any], sample: Any) -> Any:
    """Model Navigator's calling convention: a tuple is ``*args``, a dict ``**kwargs``, else one arg."""
    if isinstance(sample, tuple):
        return func(*sample)
    if isinstance(sample, Mapping):
        return func(**sample)
    return func(sample)


def profile(func: Callable[..., Any], dataloader: Iterable[Any], config: ProfileConfig | None = None,
            *, device: str | None = None, sync: Callable[[], None] | None = None,
            timer: Timer | None = None, progress: Progress | None = None,
            name: str | None = None) -> ProfileResult:
    """Profile any Python callable (Model Navigator's ``nav.profile``).

    The first sample of ``dataloader`` is tiled or sliced along dim 0 to each batch size and passed
    with ``call_with``: ``profile(lambda x: model(x), [torch.randn(4, 8)])``. Tensors may live on
    any device; on CUDA (detected from the tensors, or ``device="cuda"``) every call is followed by
    ``torch.cuda.synchronize()`` unless ``sync`` is given.
    """
    config = config or ProfileConfig()
    iterator = iter(dataloader)
    try:
        sample = next(iterator)
    except StopIteration:
        raise ValueError("profile: the dataloader yielded no sample") from None
    device = device or _detect_device(sample)
    if sync is None:
        sync = torch_cuda_sync if device.startswith("cuda") else no_sync
    default_max = None
    if config.batch_sizes is None and config.sweep_up_to is None:
        first = next(iter(leaves(sample)), None)
        default_max = max(DEFAULT_SWEEP_UP_TO, int(first.shape[0])) if first is not None else None

    def make_call(batch_size: int) -> Callable[[], Any]:
        batch = tile_value(sample, batch_size)
        return lambda: call_with(func, batch)

    return run_profile(make_call, sync, config, device=device,
                       runner_name=name or getattr(func, "__name__", "callable"), timer=timer,
                       progress=progress, default_max=default_max)
