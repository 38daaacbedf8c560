"""Measuring one point (one batch size of one target): warm up, time windows of back-to-back calls
for the throughput, then time calls one by one for the latency percentiles.

Throughput is what a stopwatch around a plain loop reads: a window is ``runs`` calls issued one
after the other with one synchronisation at its end (``timing.time_window``; with CUDA events,
nothing synchronises inside the window), and the throughput is the samples those windows completed
divided by their time. A window's length follows the call time measured during the warm-up (a slow
call gets few runs per window, a fast one many). Windows run until the last
``stabilization_windows`` of them agree within ``stability_pct`` on their time per call (``ended:
"stable"``), until ``max_trials`` windows ran (``"max_trials"``) or until the point's share of the
time budget, less what the latency calls need, is spent (``"budget"``).

Latency is what one request waits: calls timed one by one, each synchronised (``timer(run,
sync)``), as many as the kept windows held (at most ``max_window_runs``, within the budget); their
percentiles are the latency figures. Both are reported; neither is derived from the other (a batch
divided by the median latency would hide what pipelining and launch overhead do to a loop). The
batch loop around it (which batch sizes, their budget shares, out of memory) is ``sweep.py``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from navbuild.measure.results import ProfilePoint
from navbuild.measure.settings import ProfileConfig
from navbuild.measure.timing import Timer, time_window, wall_timer

PERCENTILES = (25, 50, 75, 90, 95, 99)


def _run_window(run: Callable[[], Any], sync: Callable[[], None], timer: Timer, min_runs: int,
                min_s: float, cap: int, limit_s: float | None = None, floor: int = 1) -> list[float]:
    """At least ``min_runs`` calls and ``min_s`` seconds of measured time, at most ``cap`` calls, and
    no call started once ``limit_s`` seconds are measured (past ``floor`` calls)."""
    latencies: list[float] = []
    total = 0.0
    while (len(latencies) < min_runs or total < min_s) and len(latencies) < cap:
        if limit_s is not None and total >= limit_s and len(latencies) >= floor:
            break
        elapsed = timer(run, sync)
        latencies.append(elapsed)
        total += elapsed
    return latencies


def _warm_up(run: Callable[[], Any], sync: Callable[[], None], timer: Timer,
             config: ProfileConfig) -> tuple[list[float], bool]:
    """Calls until ``warmup_runs`` and ``warmup_s`` are reached and the last ``min(3, warmup_runs)``
    calls agree (the slowest within ``WARMUP_SETTLED`` times the fastest: a JIT's first calls at a
    new shape compile, and can be a thousand times slower), or ``max_warmup_s`` is measured, or
    ``max_window_runs`` calls ran. Returns the calls and whether they settled."""
    latencies: list[float] = []
    last = min(3, config.warmup_runs)
    while len(latencies) < config.max_window_runs:
        done = len(latencies) >= config.warmup_runs and sum(latencies) >= config.warmup_s
        if done and (last == 0 or _settled(latencies[-last:])):
            return latencies, True
        if done and sum(latencies) >= config.max_warmup_s:
            break
        latencies.append(timer(run, sync))
    return latencies, last == 0 or _settled(latencies[-last:])


WARMUP_SETTLED = 1.5


def _settled(last: Sequence[float]) -> bool:
    return max(last) <= WARMUP_SETTLED * min(last)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def window_runs(call_s: float, config: ProfileConfig) -> int:
    """Runs in a window: ``window_s`` of calls that take ``call_s`` each, within the run limits."""
    if call_s <= 0:
        return config.max_window_runs
    wanted = math.ceil(round(config.window_s / call_s, 6))  # 0.003 / 0.0003 is 10, not 11
    return max(config.min_window_runs, min(config.max_window_runs, wanted))


def is_stable(window_medians: Sequence[float], count: int, stability_pct: float) -> bool:
    """The last ``count`` window medians are each within ``stability_pct`` % of their median."""
    if len(window_medians) < count:
        return False
    last = list(window_medians[-count:])
    center = _median(last)
    if center <= 0:
        return True
    return all(abs(v - center) / center * 100.0 <= stability_pct for v in last)


def measure_point(run: Callable[[], Any], sync: Callable[[], None], batch_size: int,
                  config: ProfileConfig, timer: Timer = wall_timer,
                  on_window: Callable[[int], None] | None = None, budget_s: float | None = None) -> ProfilePoint:
    """Warm up, then windows of back-to-back calls until stable, ``max_trials`` or ``budget_s``
    spent (less the latency calls' share), then the latency calls. Throughput comes from the last
    windows, latency percentiles from the calls timed one by one.

    Time is what the timer measured (warm-up included), not the wall clock: the budget then means
    the same with a scripted timer, and a window always runs to its end.
    """
    import numpy as np

    warmup, settled = _warm_up(run, sync, timer, config)
    # the first call at a shape is where a JIT compiles (seconds for jax.jit or a traced SavedModel
    # on a busy CPU): charged to the budget, it would leave nothing to measure the next batch sizes
    charged = lambda: sum(warmup[1:]) + sum(seconds for _, seconds in windows)  # noqa: E731
    if not warmup:  # no warm-up: one call sizes the first window
        warmup = [timer(run, sync)]
    call_s = _median(warmup[-3:])  # the settled calls
    needed = max(config.min_trials, config.stabilization_windows)
    windows: list[tuple[int, float]] = []  # (calls, seconds) of each window
    per_call: list[float] = []
    ended = "max_trials"
    while len(windows) < config.max_trials:
        runs = window_runs(call_s, config)
        if budget_s is not None:  # what is left once the latency calls have their share
            left = budget_s - charged() - _latency_reserve(call_s, config, budget_s)
            runs = max(config.min_window_runs, min(runs, int(left / call_s) if call_s > 0 else runs))
        seconds = time_window(timer, run, sync, runs)
        windows.append((runs, seconds))
        per_call.append(seconds / runs)
        call_s = per_call[-1]
        if on_window is not None:
            on_window(len(windows))
        if len(windows) >= needed and is_stable(per_call, config.stabilization_windows, config.stability_pct):
            ended = "stable"
            break
        if budget_s is not None and charged() >= budget_s - _latency_reserve(call_s, config, budget_s):
            ended = "budget"
            break
    kept_windows = windows[-config.stabilization_windows:]
    calls = sum(runs for runs, _ in kept_windows)
    window_time = sum(seconds for _, seconds in kept_windows)
    latency_runs = min(config.max_window_runs, max(config.min_window_runs, calls))
    latencies = _run_window(run, sync, timer, latency_runs, 0.0, latency_runs,
                            limit_s=None if budget_s is None else max(0.0, budget_s - charged()),
                            floor=config.min_window_runs)
    kept = np.asarray(latencies, dtype=np.float64) * 1e3
    p25, p50, p75, p90, p95, p99 = (float(v) for v in np.percentile(kept, PERCENTILES))
    kept_per_call = per_call[-len(kept_windows):]
    # how far the throughput can be trusted: the kept windows' times per call, or with one window the
    # medians of three blocks of the latency calls
    spread = _relative_range(kept_per_call if len(kept_per_call) >= 2 else
                             [_median(block) for block in _blocks(latencies, SPREAD_BLOCKS)])
    return ProfilePoint(
        batch_size=batch_size, mean_ms=float(kept.mean()), std_ms=float(kept.std()), min_ms=float(kept.min()),
        max_ms=float(kept.max()), p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99,
        throughput=batch_size * calls / window_time if window_time > 0 else 0.0,
        windows=len(windows), runs=len(latencies), stable=ended == "stable",
        window_call_ms=[v * 1e3 for v in per_call], p25_ms=p25, p75_ms=p75, spread_pct=spread * 100.0,
        ended=ended, seconds=charged() + sum(latencies), settled=settled, samples=batch_size * calls,
        window_time_s=window_time)


def _latency_reserve(call_s: float, config: ProfileConfig, budget_s: float) -> float:
    """The time the latency calls after the windows are expected to take (at most half the budget)."""
    runs = min(config.max_window_runs, window_runs(call_s, config) * config.stabilization_windows)
    return min(runs * call_s, budget_s / 2)


SPREAD_BLOCKS = 3  # with one window kept, its spread comes from this many blocks of latency calls


def _relative_range(values: Sequence[float]) -> float:
    """The range of ``values`` relative to their median."""
    center = _median(values) if values else 0.0
    return (max(values) - min(values)) / center if center > 0 else 0.0


def _blocks(values: list[float], count: int) -> list[list[float]]:
    """``values`` cut into ``count`` consecutive blocks (fewer when there are fewer values)."""
    count = min(count, len(values))
    if count == 0:
        return []
    size, extra = divmod(len(values), count)
    blocks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        blocks.append(values[start:end])
        start = end
    return blocks
