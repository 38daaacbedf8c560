"""Issue 27: a profile's throughput is what a stopwatch around a plain loop reads.

A synthetic runner advances a fake clock by known amounts on each call (one call in four stalls),
and the wall timer reads that clock: the profile's windows are calls issued back to back with one
synchronisation at their end, its throughput is the samples they completed over their time, and
its latency percentiles come from calls timed one by one. The old figure, the batch over the median
call, is far from both the loop and this figure, and it ordered two targets the wrong way round.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.measure.profiling import ProfileConfig, profile_runner
from navbuild.measure.selection import MaxThroughput, select
from navbuild.measure.timing import WallTimer, time_window
from navbuild.rule import ModelSpec
from navbuild.runner import Runner

FAST = dict(batch_sizes=(8,), warmup_runs=1, warmup_s=0.0, window_s=0.0, min_window_runs=8, budget_s=0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class KnownTimings(Runner):
    """Each call costs ``costs[i % len(costs)]`` seconds of the fake clock; a sync costs nothing
    and is counted, with the calls between two syncs."""

    name = "known"

    def __init__(self, clock: Clock, costs: list[float]) -> None:
        super().__init__(None, ModelSpec(name="m", framework="toy", entry="m.py:f", root=Path("."), inputs=("x",)))
        self.clock, self.costs = clock, costs
        self.calls = 0
        self.between_syncs: list[int] = []
        self._pending = 0

    def activate_impl(self) -> None:
        pass

    def run_prepared_impl(self, prepared):
        self.clock.now += self.costs[self.calls % len(self.costs)]
        self.calls += 1
        self._pending += 1
        return prepared

    def synchronize_impl(self) -> None:
        self.between_syncs.append(self._pending)
        self._pending = 0


def profiled(costs: list[float], **config):
    import numpy as np

    clock = Clock()
    runner = KnownTimings(clock, costs)
    result = profile_runner(runner, {"x": np.zeros((1, 3), np.float32)}, ProfileConfig(**{**FAST, **config}),
                            timer=WallTimer(clock))
    return runner, result


def test_throughput_is_samples_over_window_time_and_latency_is_timed_apart():
    # 1 ms calls with a 5 ms stall every fourth: a loop completes 8 samples every 2 ms on average
    runner, result = profiled([0.001, 0.001, 0.001, 0.005])
    point = result.points[0]
    assert point.stable and point.windows == 3 and point.samples == 3 * 8 * 8
    assert point.window_time_s == pytest.approx(3 * 8 * 0.002)
    assert point.throughput == pytest.approx(point.samples / point.window_time_s) == pytest.approx(8 / 0.002)
    # the latency of one call, from calls timed one by one: the median is a 1 ms call, p99 a stall
    assert point.p50_ms == pytest.approx(1.0) and point.max_ms == pytest.approx(5.0) and point.runs == 24
    assert 8 / (point.p50_ms / 1e3) == pytest.approx(8000)  # what batch / p50 said: twice the truth
    # no synchronisation inside a window: the warm-up call, three windows of eight calls, 24 latency calls
    assert runner.between_syncs == [1] + [8] * 3 + [1] * 24


def test_the_profile_agrees_with_a_plain_loop_over_the_same_runner():
    runner, result = profiled([0.002, 0.0015, 0.0025, 0.001, 0.004], min_window_runs=10)  # two cycles a window
    clock, loop_calls = runner.clock, 1000
    start = clock.now
    for _ in range(loop_calls):  # what a user times: a loop, one synchronisation at the end
        runner.run_prepared(None)
    runner.synchronize()
    loop = 8 * loop_calls / (clock.now - start)
    assert result.points[0].throughput == pytest.approx(loop, rel=1e-9)


def test_a_timer_without_windows_sums_its_calls():
    clock = Clock()
    runner = KnownTimings(clock, [0.001, 0.003])

    def per_call(run, sync):  # a user's timer: one call at a time
        start = clock.now
        run()
        sync()
        return clock.now - start

    assert time_window(per_call, lambda: runner.run_prepared(None), runner.synchronize, 4) == pytest.approx(0.008)
    assert runner.between_syncs == [1, 1, 1, 1]
    assert time_window(WallTimer(clock), lambda: runner.run_prepared(None), runner.synchronize, 4) == \
        pytest.approx(0.008)
    assert runner.between_syncs[-1] == 4


def test_a_compiled_target_faster_by_more_than_the_margin_is_chosen_over_eager():
    # eager: every call 1.0 ms. compiled: most calls 1.02 ms, one in three 0.3 ms (a loop completes a
    # call every 0.78 ms: 28 % faster). Its median call is the slower one, so batch / p50 put eager
    # first; samples over window time does not.
    _, eager = profiled([0.001], min_window_runs=9)
    _, compiled = profiled([0.00102, 0.00102, 0.0003], min_window_runs=9)
    assert compiled.points[0].p50_ms > eager.points[0].p50_ms
    assert compiled.points[0].throughput > 1.25 * eager.points[0].throughput
    eager.device = compiled.device = "cuda"  # a GPU's 3 % tie margin
    chosen = select({"torch-fp16": (eager, True), "torch-compile-fp16": (compiled, True)}, MaxThroughput(),
                    order=["torch-fp16", "torch-compile-fp16"])
    assert chosen.chosen.target == "torch-compile-fp16"
