"""Profiling: stabilization, sweep stopping, OOM handling, JSON, runners and callables.

The measurement logic is driven by a scripted timer (a clock with chosen latencies), so the
window, trial and sweep rules are tested deterministically; nothing here asserts on real timings.
A scripted timer times single calls only, so a window is the sum of its calls (``time_window``);
a point runs its warm-up, its windows, then as many calls timed one by one for the latencies.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
import sys
from pathlib import Path

import numpy as np
import pytest

from navbuild.measure.profiling import (
    ProfileConfig, ProfileError, ProfilePoint, ProfileResult, ProgressEvent, is_out_of_memory,
    is_stable, measure_point, profile, profile_runner, run_profile, tile_array, tile_value, window_runs,
)
from navbuild.rule import ModelSpec
from navbuild.runner import Runner

FAST = dict(warmup_runs=1, warmup_s=0.0, window_s=0.0, min_window_runs=5, budget_s=0)  # 5-run windows, no budget


class ScriptedTimer:
    """A clock: each call runs the inference, then reports the latency ``script(batch, n)``."""

    def __init__(self, script):
        self.script = script
        self.calls = 0
        self.batch = 1

    def __call__(self, run, sync):
        run()
        sync()
        self.calls += 1
        return self.script(self.batch, self.calls)


def _fixed_point_config(**kw):
    return ProfileConfig(**{**FAST, **kw})


# -- stability and trials --------------------------------------------------------------------------
def test_constant_latency_is_stable_after_min_trials():
    config = _fixed_point_config()
    timer = ScriptedTimer(lambda b, n: 0.002)
    point = measure_point(lambda: None, lambda: None, 1, config, timer)
    assert point.stable and point.windows == 3
    assert point.samples == 3 * 5 and point.window_time_s == pytest.approx(0.03)
    assert point.runs == 3 * 5  # latency calls: as many as the kept windows held
    assert point.p50_ms == pytest.approx(2.0) and point.mean_ms == pytest.approx(2.0)
    assert point.throughput == pytest.approx(500.0)
    assert timer.calls == 1 + 3 * 5 + 15  # one warm-up run, three windows, the latency calls


def test_alternating_windows_never_stabilize_and_report_unstable():
    config = _fixed_point_config(max_trials=7)
    warmup = config.warmup_runs

    def script(batch, n):  # windows alternate 1 ms and 2 ms: 33 % apart from their mean
        window = (n - warmup - 1) // config.min_window_runs
        return 0.001 if window % 2 == 0 else 0.002

    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(script))
    assert not point.stable
    assert point.windows == 7
    assert point.window_call_ms == pytest.approx([1, 2, 1, 2, 1, 2, 1])
    assert point.ended == "max_trials" and point.note == "unstable"
    assert point.spread_pct == pytest.approx(100.0)  # kept windows 1, 2, 1 ms a call: a range of 1 ms around 1 ms
    # throughput from the last three windows only: 15 samples in 5 + 10 + 5 ms
    assert point.samples == 15 and point.throughput == pytest.approx(15 / 0.020)


def test_stabilizes_once_noise_settles():
    config = _fixed_point_config()
    means = [5.0, 1.0, 3.0, 2.0, 2.05, 1.98]  # windows 4..6 agree within 10 %

    def script(batch, n):
        if n <= config.warmup_runs:
            return 0.05
        window = (n - config.warmup_runs - 1) // config.min_window_runs
        return (means[window] if window < len(means) else 9.0) / 1e3  # then the latency calls

    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(script))
    assert point.stable and point.windows == 6
    assert point.throughput == pytest.approx(15 / (5 * (2.0 + 2.05 + 1.98) / 1e3))  # the three that agree


def test_min_trials_above_stabilization_windows():
    config = _fixed_point_config(min_trials=5, stabilization_windows=2)
    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(lambda b, n: 0.001))
    assert point.stable and point.windows == 5 and point.samples == 2 * 5 and point.runs == 2 * 5


def test_windows_are_sized_from_the_measured_call_time():
    config = ProfileConfig(warmup_runs=2, warmup_s=0.0, window_s=0.01, min_window_runs=3, budget_s=0)
    fast = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(lambda b, n: 0.0001))
    assert fast.runs == 3 * 100  # 10 ms of 0.1 ms calls per window
    slow = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(lambda b, n: 0.1))
    assert slow.runs == 3 * 3  # a 100 ms call: the minimum of three runs per window
    # no warm-up: one call sizes the first window
    bare = ProfileConfig(warmup_runs=0, warmup_s=0.0, window_s=0.01, min_window_runs=3, budget_s=0)
    assert measure_point(lambda: None, lambda: None, 1, bare, ScriptedTimer(lambda b, n: 0.001)).runs == 3 * 10


def test_zero_time_timer_is_capped():
    config = ProfileConfig(warmup_runs=0, warmup_s=1.0, min_window_runs=2, max_window_runs=50, budget_s=0)
    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(lambda b, n: 0.0))
    assert point.samples == 150 and point.runs == 50 and point.stable and point.throughput == 0.0


def test_throughput_is_what_the_windows_completed_never_the_batch_over_the_median():
    # one call in ten takes 20 ms (a stall): a loop over these calls completes 4 samples every 3.8 ms
    # on average, which the median call (2 ms) does not say; the latency percentiles still do
    config = _fixed_point_config(min_window_runs=10)
    point = measure_point(lambda: None, lambda: None, 4, config,
                          ScriptedTimer(lambda b, n: 0.02 if n % 10 == 0 else 0.002))
    assert point.p50_ms == pytest.approx(2.0) and point.p99_ms == pytest.approx(20.0, rel=0.2)
    assert point.samples == 3 * 10 * 4 and point.window_time_s == pytest.approx(3 * 0.038)
    assert point.throughput == pytest.approx(point.samples / point.window_time_s) == pytest.approx(4 / 0.0038)
    assert point.throughput < 0.6 * 4 / (point.p50_ms / 1e3)  # batch / p50 would report 2000/s
    assert point.stable and point.spread_pct == pytest.approx(0.0)


def test_budget_ends_a_point_that_is_not_stable_with_its_spread():
    config = _fixed_point_config(max_trials=10, budget_s=0.2)

    def script(batch, n):  # 10 ms calls whose windows alternate 10 and 20 ms: never stable
        window = (n - config.warmup_runs - 1) // config.min_window_runs
        return 0.01 if window % 2 == 0 else 0.02

    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(script), budget_s=0.2)
    assert point.ended == "budget" and point.note == "budget reached" and not point.stable
    # 5-call windows of 0.05 s then 0.10 s: the budget, less the latency calls' share (at most half
    # of it), is spent after the second; the latency calls take what is left (five 10 ms calls)
    assert point.windows == 2 and point.runs == 5
    assert point.seconds == pytest.approx(0.15 + 0.05)  # the one warm-up call (a JIT's compile) is not charged
    assert point.spread_pct == pytest.approx(100.0 / 1.5)  # windows of 10 and 20 ms a call: 10 ms around 15


def test_warm_up_lasts_until_a_jit_has_compiled():
    # a TorchScript-like first calls at a new shape: 600 ms, 450 ms, 20 ms, then 0.3 ms
    first = [0.6, 0.45, 0.02]

    def script(batch, n):
        return first[n - 1] if n <= len(first) else 0.0003

    config = ProfileConfig(warmup_runs=3, warmup_s=0.0, max_warmup_s=5.0, window_s=0.003, min_window_runs=3,
                           budget_s=0)
    point = measure_point(lambda: None, lambda: None, 1, config, ScriptedTimer(script))
    assert point.p50_ms == pytest.approx(0.3) and point.max_ms == pytest.approx(0.3) and point.settled
    assert point.stable and point.runs == 3 * window_runs(0.0003, config) == 3 * 10  # from the settled calls
    # max_warmup_s ends a warm-up that has not settled: the point says so
    capped = measure_point(lambda: None, lambda: None, 1, replace(config, max_warmup_s=0.5), ScriptedTimer(script))
    assert not capped.settled and capped.ended == "stable" and capped.p50_ms == pytest.approx(0.3)


def test_a_window_runs_to_its_end_and_the_latency_calls_stop_at_the_budget():
    # sized from 1 ms warm-up calls, a window is 50 runs, which fit the 0.3 s budget less the latency
    # calls' share. The calls then take 100 ms: the window, issued back to back with one timing,
    # cannot stop halfway (5 s); the budget is then spent, and the latency calls stop at their floor.
    config = ProfileConfig(warmup_runs=3, warmup_s=0.0, window_s=0.05, min_window_runs=3)
    point = measure_point(lambda: None, lambda: None, 1, config,
                          ScriptedTimer(lambda b, n: 0.001 if n <= 3 else 0.1), budget_s=0.3)
    assert point.ended == "budget" and point.windows == 1 and point.samples == 50 and point.runs == 3
    assert point.seconds == pytest.approx(0.002 + 5.0 + 0.3)  # the first warm-up call is not charged


def test_budget_is_shared_by_the_batch_sizes():
    config = _fixed_point_config(batch_sizes=(1, 2, 4), budget_s=0.4, max_trials=10)
    result = _profile_with(lambda b, n: 0.01 if (n // 5) % 2 else 0.02, config)  # never stable
    assert result.batch_sizes == [1, 2, 4] and result.budget_s == 0.4
    assert all(p.ended == "budget" for p in result.points)
    spent = sum(p.seconds for p in result.points)
    assert 0.4 <= spent <= 0.4 + 3 * 0.1  # each point may finish the window that crossed its share
    # a budget spent before the last batch sizes leaves them out, and says so
    short = _profile_with(lambda b, n: 0.05, _fixed_point_config(batch_sizes=(1, 2, 4, 8), budget_s=1.0))
    assert short.batch_sizes == [1, 2] and short.stop_reason == "budget"
    assert short.notes == ["batch sizes 4, 8 not measured: the 1 s budget was spent"]
    # the default budget follows the device
    assert ProfileConfig().budget("cpu") == 3.0 and ProfileConfig().budget("cuda:0") == 15.0
    assert ProfileConfig(budget_s=0).budget("cpu") is None


def test_compiled_buckets_share_the_budget_and_their_windows_follow_their_call_time():
    """Issue 15's buckets join the batch sizes before measuring (measure/coverage.py), so issue 14's
    budget and window sizing cover them as any batch size: one budget for all, and a bucket left
    when it is spent is named."""
    from navbuild.measure import coverage

    config = coverage.profile_config(_fixed_point_config(batch_sizes=(1, 4), window_s=0.01, min_window_runs=2,
                                                         budget_s=0.5), [1, 8, 16])
    assert config.batch_sizes == (1, 4, 8, 16) and config.budget_s == 0.5
    result = _profile_with(lambda b, n: 0.001 * b, config)  # 1 ms per sample: steady
    assert result.batch_sizes == [1, 4, 8, 16] and result.budget_s == 0.5
    assert all(p.ended == "stable" for p in result.points)
    windows = {p.batch_size: p.samples // p.batch_size // 3 for p in result.points}  # calls per window (3 kept)
    assert windows == {1: 10, 4: 3, 8: 2, 16: 2}  # 10 ms windows (rounded up) sized from each size's own call time
    assert sum(p.seconds for p in result.points) <= 0.5 + 0.05
    # slower calls: what the smaller sizes leave of the one budget is too little for the buckets,
    # which get fewer windows (cut short by their share) than stability needs, and say so
    slow = _profile_with(lambda b, n: 0.004 * b, config)
    assert slow.batch_sizes == [1, 4, 8, 16]
    assert [p.ended for p in slow.points] == ["stable", "stable", "budget", "budget"]
    assert [p.windows for p in slow.points[2:]] == [2, 1]
    # a budget spent before the largest buckets leaves them out, and the notes say which
    short = _profile_with(lambda b, n: 0.05, coverage.profile_config(
        _fixed_point_config(batch_sizes=(1,), budget_s=1.0), [1, 2, 4, 8]))
    assert short.batch_sizes == [1, 2] and short.stop_reason == "budget"
    assert short.notes == ["batch sizes 4, 8 not measured: the 1 s budget was spent"]


def test_is_stable_rule():
    assert is_stable([1.0, 1.05, 0.95], 3, 10.0)
    assert not is_stable([1.0, 1.3, 1.0], 3, 10.0)
    assert not is_stable([1.0, 1.0], 3, 10.0)
    assert is_stable([9.0, 1.0, 1.0, 1.0], 3, 10.0)


# -- batch sweep -----------------------------------------------------------------------------------
def _profile_with(script, config, **kw):
    """run_profile over a fake model whose latency depends on the batch size."""
    timer = ScriptedTimer(script)

    def make_call(batch_size):
        timer.batch = batch_size
        return lambda: None

    return run_profile(make_call, lambda: None, config, timer=timer, **kw)


def test_sweep_stops_when_throughput_saturates_twice():
    # latency 1 ms up to batch 8 (throughput doubles), then grows with the batch (flat throughput)
    config = _fixed_point_config(sweep_up_to=256)
    result = _profile_with(lambda b, n: 0.001 * max(1, b / 8), config)
    assert result.batch_sizes == [1, 2, 4, 8, 16, 32]
    assert result.stop_reason == "throughput_saturated"


def test_sweep_continues_after_one_flat_step():
    # one flat step (8 -> 16) then growth again: the backoff limit of 2 keeps going
    lat = {1: 1, 2: 1, 4: 1, 8: 1, 16: 2, 32: 2, 64: 4, 128: 8}
    config = _fixed_point_config(sweep_up_to=128)
    result = _profile_with(lambda b, n: lat[b] / 1e3, config)
    assert result.batch_sizes == [1, 2, 4, 8, 16, 32, 64, 128]
    assert result.stop_reason == "throughput_saturated"  # 32 -> 64 -> 128 are flat


def test_sweep_reaches_its_top_and_includes_it():
    config = _fixed_point_config(sweep_up_to=12)
    result = _profile_with(lambda b, n: 0.001, config)
    assert result.batch_sizes == [1, 2, 4, 8, 12]
    assert result.stop_reason == "max_batch_size"


def test_explicit_batch_sizes_are_all_measured():
    config = _fixed_point_config(batch_sizes=(8, 1, 4, 4))
    result = _profile_with(lambda b, n: 0.001 * b, config)  # flat throughput: no early stop
    assert result.batch_sizes == [1, 4, 8]
    assert result.stop_reason == "batch_sizes"


def test_progress_events():
    events: list[ProgressEvent] = []
    config = _fixed_point_config(batch_sizes=(1, 2))
    _profile_with(lambda b, n: 0.001, config, progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("point") == 2 and kinds.count("window") == 6
    points = [e for e in events if e.kind == "point"]
    assert [e.step for e in points] == [1, 2] and all(e.total == 2 for e in points)
    assert points[0].point.batch_size == 1


# -- out of memory ---------------------------------------------------------------------------------
class FakeOOM(RuntimeError):
    pass


def _oom_above(limit):
    def func(x):
        if x.shape[0] > limit:
            raise FakeOOM(f"CUDA out of memory. Tried to allocate {x.shape[0]} GiB")
        return x

    return func


def test_is_out_of_memory_duck_typed():
    class OutOfMemoryError(Exception):
        pass

    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(OutOfMemoryError("whatever"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] Failed to allocate memory for requested buffer"))
    try:
        try:
            raise RuntimeError("out of memory")
        except RuntimeError as inner:
            raise ValueError("wrapper") from inner
    except ValueError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(ValueError("shape mismatch"))


def test_oom_during_sweep_stops_cleanly():
    config = ProfileConfig(**FAST, sweep_up_to=64)
    result = profile(_oom_above(8), [np.ones((1, 3), np.float32)], config, timer=ScriptedTimer(lambda b, n: 0.001))
    assert result.batch_sizes == [1, 2, 4, 8]
    assert result.stop_reason == "out_of_memory"
    assert result.oom_batch_size == 16 and result.max_batch_size_found == 8
    assert "out of memory" in result.oom_message


def test_oom_at_first_batch_gives_an_empty_result():
    result = profile(_oom_above(0), [np.ones((1, 3))], ProfileConfig(**FAST))
    assert result.points == [] and result.oom_batch_size == 1 and result.max_batch_size_found is None
    assert not result.stable


def test_max_batch_search_on_gpu_doubles_until_oom():
    config = ProfileConfig(**FAST, batch_sizes=(1, 2), find_max_batch_size=True)
    result = profile(_oom_above(100), [np.ones((1, 3))], config, device="cuda", sync=lambda: None)
    assert result.batch_sizes == [1, 2]  # the search is untimed
    assert result.max_batch_size_found == 64 and result.oom_batch_size == 128
    assert result.stop_reason == "batch_sizes"


def test_max_batch_search_stops_at_its_limit_and_on_other_errors():
    config = ProfileConfig(**FAST, batch_sizes=(1,), find_max_batch_size=True, max_batch_search_limit=16)
    result = profile(lambda x: x, [np.ones((1, 3))], config, device="cuda", sync=lambda: None)
    assert result.max_batch_size_found == 16 and result.oom_batch_size is None
    assert any("limit" in note for note in result.notes)

    def picky(x):
        if x.shape[0] > 4:
            raise ValueError("engine profile allows batch <= 4")
        return x

    result = profile(picky, [np.ones((1, 3))], config, device="cuda", sync=lambda: None)
    assert result.max_batch_size_found == 4 and any("engine profile" in n for n in result.notes)


def test_max_batch_search_is_skipped_on_cpu():
    config = ProfileConfig(**FAST, batch_sizes=(1,), find_max_batch_size=True)
    result = profile(lambda x: x, [np.ones((1, 3))], config)
    assert result.max_batch_size_found is None and any("GPU" in n for n in result.notes)


def test_other_errors_are_raised_with_the_batch_size():
    def broken(x):
        if x.shape[0] == 4:
            raise ValueError("bad shape")
        return x

    with pytest.raises(ProfileError, match="batch size 4: ValueError: bad shape"):
        profile(broken, [np.ones((1, 2))], ProfileConfig(**FAST, sweep_up_to=8))


# -- config and JSON -------------------------------------------------------------------------------
def test_config_defaults_and_key():
    config = ProfileConfig()
    assert (config.window_s, config.min_window_runs, config.stability_pct, config.stabilization_windows) == \
        (0.05, 3, 10.0, 3)
    assert (config.budget_s, config.sweep_up_to) == (None, None)
    assert (config.min_trials, config.max_trials) == (3, 10)
    assert (config.throughput_cutoff_pct, config.throughput_backoff_limit) == (5.0, 2)
    key = config.as_key()
    json.dumps(key)
    assert ProfileConfig.from_dict(key) == config
    assert ProfileConfig(batch_sizes=[4, 1]).as_key()["batch_sizes"] == [1, 4]
    assert hash(ProfileConfig(batch_sizes=(1, 2)))
    # a TOML integer where a float is meant gives the same key as the default
    assert ProfileConfig.from_dict({"stability_pct": 10, "warmup_s": 0}).as_key() == \
        ProfileConfig(warmup_s=0.0).as_key()
    assert isinstance(ProfileConfig(stability_pct=10).as_key()["stability_pct"], float)


@pytest.mark.parametrize("bad", [dict(min_window_runs=0), dict(max_trials=2), dict(budget_s=-1),
                                 dict(min_window_runs=10, max_window_runs=5), dict(batch_sizes=()),
                                 dict(batch_sizes=(0, 1)), dict(timer="sundial"), dict(stability_pct=-1)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ProfileConfig(**bad)


def test_config_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="windw_size"):
        ProfileConfig.from_dict({"windw_size": 3})


@pytest.mark.parametrize("key, says", [
    ("max_batch_size", "was renamed sweep_up_to: the model's own max_batch_size is another setting"),
    ("slower_than_best", "no longer an option: a profile reads no other target's figures"),
])
def test_retired_keys_say_what_to_write_instead(key, says):
    from navbuild.measure.settings import SettingsError

    with pytest.raises(SettingsError, match=says) as caught:
        ProfileConfig.from_dict({key: 8})
    assert caught.value.key == key and caught.value.fix


def test_result_json_round_trip():
    config = _fixed_point_config(batch_sizes=(1, 2, 4))
    result = _profile_with(lambda b, n: 0.00123456789 * b ** 0.5, config, runner_name="fake", device="cpu")
    data = json.loads(json.dumps(result.to_dict()))
    back = ProfileResult.from_dict(data)
    assert back.batch_sizes == [1, 2, 4] and back.runner == "fake"
    assert back.point(2).p50_ms == pytest.approx(result.point(2).p50_ms, rel=1e-4)
    assert back.config == config.as_key()
    assert back.to_dict() == data  # rounding is idempotent
    assert data["points"][0]["p50_ms"] == 1.2346  # five significant digits
    with pytest.raises(ValueError):
        ProfileResult.from_dict({"format": "something-else"})


def test_point_latency_accessor():
    point = ProfilePoint(1, 1.0, 0.1, 0.9, 2.0, 1.0, 1.2, 1.3, 1.5, 1000.0, 3, 30, True)
    assert point.latency("p95") == 1.3 and point.latency("mean") == 1.0
    with pytest.raises(ValueError):
        point.latency("p42")


# -- batches ---------------------------------------------------------------------------------------
def test_tile_array_slices_and_tiles():
    a = np.arange(6).reshape(3, 2)
    assert tile_array(a, 2).tolist() == [[0, 1], [2, 3]]
    assert tile_array(a, 5)[:, 0].tolist() == [0, 2, 4, 0, 2]
    assert tile_array(a, 3) is a
    assert tile_array(np.arange(4).reshape(2, 2), 3, batch_dim=1).shape == (2, 3)
    assert tile_array(np.float32(3.0), 8).shape == ()


def test_tile_value_nests_and_torch():
    torch = pytest.importorskip("torch")
    sample = ({"x": torch.ones(2, 3)}, [np.zeros((1, 4))], 7, "text")
    tiled = tile_value(sample, 5)
    assert tuple(tiled[0]["x"].shape) == (5, 3) and isinstance(tiled[0]["x"], torch.Tensor)
    assert tiled[1][0].shape == (5, 4) and tiled[2] == 7 and tiled[3] == "text"


# -- real models -----------------------------------------------------------------------------------
def test_profile_torch_callable():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    config = ProfileConfig(batch_sizes=(1, 4, 16), warmup_s=0.0, window_s=0.002)
    with torch.inference_mode():
        result = profile(lambda x: model(x), [torch.randn(4, 8)], config)
    assert result.batch_sizes == [1, 4, 16] and result.device == "cpu"
    for point in result.points:
        assert 0 < point.p50_ms <= point.p90_ms <= point.p95_ms <= point.p99_ms <= point.max_ms
        assert point.throughput > 0 and point.windows >= 1
        assert point.p25_ms <= point.p50_ms <= point.p75_ms


def test_profile_calling_convention():
    seen = []

    def func(a, b=None, *, c=None):
        seen.append((np.shape(a), np.shape(b), c))

    profile(func, [(np.ones((2, 3)), np.ones((2, 1)))], ProfileConfig(**FAST, batch_sizes=(4,)))
    assert seen[-1] == ((4, 3), (4, 1), None)
    profile(func, [{"a": np.ones((1, 3)), "c": 5}], ProfileConfig(**FAST, batch_sizes=(2,)))
    assert seen[-1] == ((2, 3), (), 5)
    with pytest.raises(ValueError, match="no sample"):
        profile(func, [], ProfileConfig(**FAST))


class TorchEagerRunner(Runner):
    """A minimal runner over a live torch module (the rule families have the real ones)."""

    name = "test-eager"

    def __init__(self, module, model):
        super().__init__(None, model)
        self.module = module
        self.prepared_batches: list[int] = []
        self.synced = 0

    def activate_impl(self):
        self.module.eval()

    def prepare_impl(self, feed):
        import torch

        self.prepared_batches.append(feed["x"].shape[0])
        return torch.from_numpy(feed["x"])

    def run_prepared_impl(self, prepared):
        import torch

        with torch.inference_mode():
            return self.module(prepared)

    def infer_impl(self, feed):
        return {"y": self.run_prepared_impl(self.prepare_impl(feed)).numpy()}

    def synchronize_impl(self):
        self.synced += 1


def test_a_model_without_a_batch_dimension_is_measured_once_as_it_is():
    """max_batch_size 0: one point ("batch" 1), the sample neither tiled nor sliced, whatever the
    [profile] batch sizes say (they are for the models that batch)."""
    torch = pytest.importorskip("torch")
    spec = ModelSpec(name="pair", framework="torch", entry="m.py:f", root=Path("."), inputs=("x",),
                     max_batch_size=0)
    runner = TorchEagerRunner(torch.nn.Linear(8, 2), spec)
    config = ProfileConfig(**{**FAST, "batch_sizes": (1, 2, 4)})
    assert config.plan(0) == ([1], False) and config.resolved("cpu", 0)["batch_plan"] == [1]
    result = profile_runner(runner, {"x": np.random.rand(3, 8).astype(np.float32)}, config,
                            timer=ScriptedTimer(lambda b, n: 0.001))
    assert result.batch_sizes == [1]
    assert runner.prepared_batches == [3]  # the sample's own 3 rows: dimension 0 is no batch


def test_profile_runner_prepares_once_per_batch_size():
    torch = pytest.importorskip("torch")
    spec = ModelSpec(name="mlp", framework="torch", entry="m.py:f", root=Path("."), inputs=("x",),
                     max_batch_size=4)
    runner = TorchEagerRunner(torch.nn.Linear(8, 2), spec)
    events = []
    result = profile_runner(runner, [{"x": np.random.rand(2, 8).astype(np.float32)}],
                            ProfileConfig(**FAST), progress=events.append,
                            timer=ScriptedTimer(lambda b, n: 0.001))  # throughput doubles: no early stop
    assert result.batch_sizes == [1, 2, 4]  # the sweep's top is the model's max_batch_size
    assert runner.prepared_batches == [1, 2, 4]
    assert runner.synced > 3 * 5 * 3
    assert result.runner == "test-eager" and result.device == "cpu"
    assert not runner.active  # it activated the runner, so it deactivated it
    assert events[-1].kind == "done"


def test_profiling_modules_do_not_import_frameworks():
    code = ("import sys, navbuild.measure.profiling, navbuild.measure.selection, navbuild.view.report, navbuild.view.plots, "
            "navbuild.view.graph_dot; bad = [m for m in ('torch', 'tensorflow', 'jax', 'onnxruntime', 'matplotlib') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
