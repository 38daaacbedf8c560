"""Selection strategies over synthetic profiles (figures chosen, not measured)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from navbuild.measure.profiling import ProfilePoint, ProfileResult
from navbuild.measure.selection import (
    Candidate, CallableStrategy, MaxThroughput, MaxThroughputUnderLatencyBudget, MinLatency, Selection,
    parse_strategy, select,
)


def point(batch: int, p50: float, p95: float | None = None, stable: bool = True) -> ProfilePoint:
    p95 = p95 if p95 is not None else p50 * 1.1
    return ProfilePoint(batch, p50, 0.0, p50, p95 * 1.2, p50, p95 * 0.95, p95, p95 * 1.1,
                        batch / p50 * 1e3, 3, 75, stable)


def result(runner: str, *points: ProfilePoint) -> ProfileResult:
    return ProfileResult(list(points), runner=runner)


# eager: slow everywhere; onnx: best at batch 1; trt: best throughput at batch 64 but 8 ms there
EAGER = result("torch-eager", point(1, 2.0), point(8, 4.0), point(64, 20.0))
ONNX = result("onnxruntime", point(1, 0.5), point(8, 1.2), point(64, 9.0))
TRT = result("tensorrt", point(1, 0.8), point(8, 1.0), point(64, 4.0, p95=8.0))
CANDIDATES = {"m:eager": Candidate(EAGER, True), "m:onnx": Candidate(ONNX, True), "m:trt": Candidate(TRT, True)}


def test_max_throughput():
    selection = select(CANDIDATES, MaxThroughput())
    assert selection.target == "m:trt" and selection.chosen.batch_size == 64
    assert selection.chosen.figures["throughput"] == pytest.approx(16000)
    assert selection.runner_up.target == "m:onnx"
    assert [c.target for c in selection.ranking] == ["m:trt", "m:onnx", "m:eager"]
    assert selection.chosen.runner == "tensorrt"


def test_min_latency_uses_the_smallest_common_batch():
    selection = select(CANDIDATES, MinLatency())
    assert selection.target == "m:onnx" and selection.chosen.batch_size == 1
    assert selection.chosen.figures["latency_ms"] == 0.5
    assert selection.runner_up.target == "m:trt"
    # a candidate without batch 1 moves the comparison to batch 8, where trt is fastest
    only8 = dict(CANDIDATES, **{"m:big": Candidate(result("x", point(8, 3.0)), True)})
    assert select(only8, MinLatency()).target == "m:trt"


def test_min_latency_percentile():
    noisy = result("noisy", point(1, 0.4, p95=3.0))
    candidates = dict(CANDIDATES, **{"m:noisy": Candidate(noisy, True)})
    assert select(candidates, MinLatency()).target == "m:noisy"
    assert select(candidates, MinLatency("p95")).target == "m:onnx"


def test_latency_budget():
    # p95 <= 5 ms: trt's batch 64 (p95 8 ms) is out; onnx's batch 64 is 9.9 ms, out too;
    # trt batch 8 (8000/s) beats onnx batch 8 (6667/s)
    selection = select(CANDIDATES, MaxThroughputUnderLatencyBudget(5.0))
    assert selection.target == "m:trt" and selection.chosen.batch_size == 8
    assert selection.chosen.figures["budget_ms"] == 5.0
    # a budget only onnx meets at batch 1
    selection = select(CANDIDATES, MaxThroughputUnderLatencyBudget(0.6))
    assert selection.target == "m:onnx" and selection.runner_up is None
    assert "no batch size meets p95 <= 0.6 ms" in selection.excluded["m:eager"]
    # p50 instead of p95: trt's batch 64 fits 5 ms
    assert select(CANDIDATES, MaxThroughputUnderLatencyBudget(5.0, "p50")).chosen.batch_size == 64


def test_incorrect_and_empty_candidates_do_not_compete():
    oom = ProfileResult([], runner="tensorrt", oom_batch_size=1)
    candidates = {"m:eager": Candidate(EAGER, True), "m:trt": Candidate(TRT, False),
                  "m:empty": (oom, True)}
    selection = select(candidates, "max-throughput")
    assert selection.target == "m:eager" and selection.runner_up is None
    assert selection.excluded["m:trt"] == "failed its correctness check"
    assert "out of memory at batch 1" in selection.excluded["m:empty"]


def test_no_candidate_qualifies():
    selection = select({"m:trt": Candidate(TRT, False)}, "min-latency")
    assert selection.chosen is None and selection.target is None
    assert select({}, "max-throughput").chosen is None


def test_callable_strategy():
    def cheapest_gpu_memory(target, res):  # prefers onnx, excludes eager
        return {"m:onnx": 2.0, "m:trt": 1.0}.get(target)

    selection = select(CANDIDATES, cheapest_gpu_memory)
    assert selection.target == "m:onnx" and selection.runner_up.target == "m:trt"
    assert "m:eager" in selection.excluded
    assert selection.strategy == "callable:cheapest_gpu_memory"
    assert select(CANDIDATES, CallableStrategy(lambda t, r: 1.0, name="flat")).target == "m:eager"  # tie: by name


@pytest.mark.parametrize("text, cls, name", [
    ("max-throughput", MaxThroughput, "max-throughput"),
    ("min-latency", MinLatency, "min-latency"),
    ("min-latency:p99", MinLatency, "min-latency:p99"),
    ("latency-budget:5ms", MaxThroughputUnderLatencyBudget, "latency-budget:5ms"),
    ("latency-budget:500us", MaxThroughputUnderLatencyBudget, "latency-budget:0.5ms"),
    ("latency-budget:0.01s:p99", MaxThroughputUnderLatencyBudget, "latency-budget:10ms:p99"),
    ("latency-budget:7", MaxThroughputUnderLatencyBudget, "latency-budget:7ms"),
])
def test_parse_strategy(text, cls, name):
    strategy = parse_strategy(text)
    assert isinstance(strategy, cls) and strategy.name == name
    assert parse_strategy(strategy.name).name == name  # names parse back


@pytest.mark.parametrize("text", ["fastest", "latency-budget", "latency-budget:fast", "min-latency:p42",
                                  "latency-budget:-3ms", "max-throughput:5"])
def test_parse_strategy_errors(text):
    with pytest.raises(ValueError):
        parse_strategy(text)


def test_selection_json_round_trip():
    selection = select(dict(CANDIDATES, **{"m:bad": Candidate(EAGER, False)}), "latency-budget:5ms")
    data = json.loads(json.dumps(selection.to_dict()))
    back = Selection.from_dict(data)
    assert back.target == selection.target and back.runner_up.target == selection.runner_up.target
    assert back.excluded == selection.excluded and back.strategy == "latency-budget:5ms"
    assert back.to_dict() == data


# -- stable choices: ties within the measured spread ---------------------------------------------
def spread_point(batch: int, throughput: float, spread_pct: float) -> ProfilePoint:
    p50 = batch / throughput * 1e3
    return ProfilePoint(batch, p50, 0.0, p50, p50, p50, p50, p50, p50, throughput, 3, 30, True,
                        spread_pct=spread_pct, ended="stable")


def candidates(**throughputs: tuple[float, float]) -> dict[str, Candidate]:
    return {f"m:{name}": Candidate(result(name, spread_point(8, figure, spread)), True)
            for name, (figure, spread) in throughputs.items()}


def test_figures_within_the_margin_tie_and_the_declared_order_decides():
    # 5 % apart, spreads of 2 %: within the 10 % margin, so the project's preference wins
    tied = candidates(a=(1000.0, 2.0), b=(1050.0, 2.0))
    assert select(tied, "max-throughput").target == "m:a"  # no order: by name
    selection = select(tied, "max-throughput", order=["m:b", "m:a"])
    assert selection.target == "m:b" and selection.tied == ["m:a", "m:b"]
    assert select(tied, "max-throughput", order=["m:a", "m:b"]).target == "m:a"


def test_the_leaders_spread_widens_the_tie_and_a_clear_win_still_wins():
    # the leader measured with a 40 % spread: its 30 % lead is not clear
    assert select(candidates(a=(1000.0, 3.0), b=(1300.0, 40.0)), "max-throughput").target == "m:a"
    assert select(candidates(a=(1000.0, 3.0), b=(1300.0, 3.0)), "max-throughput").target == "m:b"
    # a noisy runner-up does not tie itself with a steady leader 3x faster (issue 14: a TorchScript
    # target measured while its JIT recompiled, spread 235 %, won by the declared order)
    selection = select(candidates(a=(2246.0, 235.0), b=(7314.0, 5.0)), "max-throughput", order=["m:a", "m:b"])
    assert selection.target == "m:b" and selection.tied == ["m:b"]
    # a spread of 200 % ties what is within 3x, never a target 30x slower
    selection = select(candidates(a=(30.0, 15.0), b=(1000.0, 200.0)), "max-throughput", order=["m:a", "m:b"])
    assert selection.target == "m:b" and selection.tied == ["m:b"]


def test_a_previous_choice_stays_unless_clearly_beaten():
    noisy = candidates(a=(1000.0, 2.0), b=(1080.0, 2.0))
    selection = select(noisy, "max-throughput", order=["m:a", "m:b"], previous="m:b")
    assert selection.target == "m:b" and selection.kept_previous
    beaten = candidates(a=(1000.0, 2.0), b=(2000.0, 2.0))
    selection = select(beaten, "max-throughput", previous="m:a")
    assert selection.target == "m:b" and not selection.kept_previous
    assert select(noisy, "max-throughput", previous="m:gone").target == "m:a"  # no longer a candidate


def test_min_latency_ties_compare_latencies():
    tied = {"m:a": Candidate(result("a", spread_point(1, 1000.0, 1.0)), True),  # 1.00 ms
            "m:b": Candidate(result("b", spread_point(1, 1080.0, 1.0)), True)}  # 0.93 ms
    assert select(tied, "min-latency", order=["m:a", "m:b"]).target == "m:a"
    clear = dict(tied, **{"m:c": Candidate(result("c", spread_point(1, 2000.0, 1.0)), True)})  # 0.5 ms
    assert select(clear, "min-latency", order=["m:a", "m:b"]).target == "m:c"


def test_the_tie_margin_is_a_setting_and_defaults_by_device():
    # 5 % apart, spreads of 2 %
    close = candidates(a=(1000.0, 2.0), b=(1050.0, 2.0))
    assert select(close, "max-throughput", order=["m:a", "m:b"]).margin_pct == 10.0  # measured on a CPU
    assert select(close, "max-throughput", order=["m:a", "m:b"], margin_pct=0).target == "m:b"  # exact
    assert select(close, "max-throughput", order=["m:a", "m:b"], margin_pct=4.0).target == "m:b"
    assert select(close, "max-throughput", order=["m:a", "m:b"], margin_pct=6.0).target == "m:a"
    # measured on a GPU, the default is 3 %: a 5 % lead is a lead there (issue 14's caveat: 10 % gave
    # up to 10 % away to the declared order)
    on_gpu = {name: Candidate(dataclasses.replace(c.result, device="cuda"), True) for name, c in close.items()}
    selection = select(on_gpu, "max-throughput", order=["m:a", "m:b"])
    assert selection.target == "m:b" and selection.margin_pct == 3.0 and selection.tied == ["m:b"]
    assert select(on_gpu, "max-throughput", order=["m:a", "m:b"], margin_pct=10.0).target == "m:a"
    # the leader's own spread still widens the tie, whatever the margin
    assert select(candidates(a=(1000.0, 2.0), b=(1050.0, 8.0)), "max-throughput", order=["m:a", "m:b"],
                  margin_pct=0).target == "m:a"
    # a callable compares exactly, whatever the setting
    exact = select(close, lambda target, result: result.best_throughput().throughput, margin_pct=10.0)
    assert exact.target == "m:b" and exact.margin_pct == 0.0
    assert Selection.from_dict(selection.to_dict()).margin_pct == 3.0
