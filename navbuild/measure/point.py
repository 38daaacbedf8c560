"""Measuring one point (one batch size of one target): warm up, then windows of timed calls.

A window's length follows the call time measured during the warm-up (a slow call gets few runs
per window, a fast one many). Windows run until the last ``stabilization_windows`` window medians
agree within ``stability_pct`` of their median (``ended: "stable"``), until ``max_trials`` windows
ran (``"max_trials"``) or until the point's share of the time budget is spent (``"budget"``).
Figures come from the calls of the last windows; throughput is ``batch / median latency``, so a
few outliers cannot rule it. The batch loop around it (which batch sizes, their budget shares,
out of memory) is ``sweep.py``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from navbuild.measure.results import ProfilePoint
from navbuild.measure.settings import ProfileConfig
from navbuild.measure.timing import Timer, wall_timer

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
    """Warm up, then measure windows until stable, ``max_trials`` or ``budget_s`` spent. Figures
    come from the last windows.

    Time is what the timer measured (warm-up included), not the wall clock: the budget then means
    the same with a scripted timer, and a call always finishes its window.
    """
    import numpy as np

    warmup, settled = _warm_up(run, sync, timer, config)
    # the first call at a shape is where a JIT compiles (seconds for jax.jit or a traced SavedModel
    # on a busy CPU): charged to the budget, it would leave nothing to measure the next batch sizes
    charged = lambda: sum(warmup[1:]) + sum(map(sum, windows))  # noqa: E731
    call_s = _median(warmup[-3:]) if warmup else 0.0  # the settled calls
    needed = max(config.min_trials, config.stabilization_windows)
    windows: list[list[float]] = []
    medians: list[float] = []
    ended = "max_trials"
    while len(windows) < config.max_trials:
        if not windows and not warmup:  # no warm-up: size the first window by one call
            warmup = [timer(run, sync)]
            call_s = warmup[0]
        left = None if budget_s is None else budget_s - charged()
        window = _run_window(run, sync, timer, window_runs(call_s, config), 0.0, config.max_window_runs,
                             limit_s=left, floor=config.min_window_runs)
        windows.append(window)
        medians.append(_median(window))
        call_s = medians[-1]
        if on_window is not None:
            on_window(len(windows))
        if len(windows) >= needed and is_stable(medians, config.stabilization_windows, config.stability_pct):
            ended = "stable"
            break
        if budget_s is not None and charged() >= budget_s:
            ended = "budget"
            break
    kept_windows = windows[-config.stabilization_windows:]
    kept = np.concatenate([np.asarray(w, dtype=np.float64) for w in kept_windows]) * 1e3
    p25, p50, p75, p90, p95, p99 = (float(v) for v in np.percentile(kept, PERCENTILES))
    mean = float(kept.mean())
    spread = _spread(*kept_windows)
    return ProfilePoint(
        batch_size=batch_size, mean_ms=mean, std_ms=float(kept.std()), min_ms=float(kept.min()),
        max_ms=float(kept.max()), p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99,
        throughput=batch_size / (p50 / 1e3) if p50 > 0 else 0.0,
        windows=len(windows), runs=int(kept.size), stable=ended == "stable",
        window_medians_ms=[m * 1e3 for m in medians], p25_ms=p25, p75_ms=p75, spread_pct=spread * 100.0,
        ended=ended, seconds=charged(), settled=settled)




SPREAD_BLOCKS = 3  # a point's spread is the range of at least this many medians


def _spread(*windows: list[float]) -> float:
    """The range of the windows' medians relative to their median (fewer than ``SPREAD_BLOCKS``
    windows: of the medians of that many consecutive blocks of their calls)."""
    if len(windows) < SPREAD_BLOCKS:
        windows = tuple(_blocks([v for w in windows for v in w], SPREAD_BLOCKS))
    medians = [_median(w) for w in windows if w]
    center = _median(medians) if medians else 0.0
    return (max(medians) - min(medians)) / center if center > 0 else 0.0


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
