"""Issue 27: what the user takes out (``Package.get_model``, in-place modules) hands its tensors to the
runner as they are and gets the model's own structure and types back; the per-call work is decided
once (the call's structure is matched, not recorded again); CUDA graphs are asked for per model.

CUDA-free: "the host" cannot be told from "the device" on a CPU, so what is checked here is that no
numpy conversion happens on the way (they are made to raise) and that the runner receives the very
tensor the caller passed. The CUDA-graph test runs where a GPU is.
"""
from __future__ import annotations

import pytest
import torch

import navbuild as nav
from navbuild.api import calls, inplace


class Scorer(torch.nn.Module):
    """A dict of a float and an integer tensor, and a keyword constant in its call."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, *, scale: float = 1.0) -> dict[str, torch.Tensor]:
        return {"logits": self.linear(x) * scale, "positive": (x > 0).sum(-1)}


class Pipeline:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.scorer = Scorer().eval()
        self.head = torch.nn.Linear(3, 2).eval()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scored = self.scorer(x, scale=2.0)
        return self.head(scored["logits"]), scored["positive"]


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """The scorer optimized in place once: TorchScript at fp32 and fp16, ONNX at fp32 (no profiles)."""
    inplace.forget()
    pipe = Pipeline()
    batches = [torch.randn(4, 6), torch.randn(2, 6)]
    with torch.no_grad():
        expected = [pipe(batch) for batch in batches]
    pipe.scorer = nav.Module(pipe.scorer, name="scorer")
    config = nav.OptimizeConfig(target_formats=("torchscript-trace", "onnx"), target_precisions=("fp32", "fp16"),
                                target_device="cpu", workspace=tmp_path_factory.mktemp("resident"), profiling=False)
    packages = nav.optimize(pipe, [(batch,) for batch in batches], config, quiet=True)
    yield pipe, batches, expected, packages["scorer"]
    inplace.forget()


def refuse_numpy(monkeypatch):
    """Any way to numpy on the path raises."""
    from navbuild import runner, tensors

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor went through numpy")

    monkeypatch.setattr(tensors, "to_numpy", refuse)
    monkeypatch.setattr(runner, "host_array", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)


def recording(model):
    """What the runner's prepare receives, call after call."""
    seen = []
    original = model.runner.prepare_impl

    def prepare_impl(feed):
        seen.append(dict(feed))
        return original(feed)

    model.runner.prepare_impl = prepare_impl
    return seen


def targets(package):
    fp32, fp16 = sorted((name for name, t in package.targets.items() if t.format == "torchscript-trace"),
                        key=lambda name: package.targets[name].precision == "fp16")
    assert package.targets[fp16].precision == "fp16" and all(t.correct for t in package.targets.values())
    return fp32, fp16


def test_a_torch_input_reaches_the_runner_as_it_is_without_numpy(optimized, monkeypatch):
    _, batches, _, package = optimized
    fp32, fp16 = targets(package)
    model = package.get_model(target=fp32)
    seen = recording(model)
    refuse_numpy(monkeypatch)
    x = batches[0]
    model(x, scale=2.0)
    assert len(seen) == 1 and seen[0] == {"input__0": x} and seen[0]["input__0"] is x  # the caller's tensor itself
    half = package.get_model(target=fp16)
    seen = recording(half)
    half(x, scale=2.0)
    received = seen[0]["input__0"]
    assert isinstance(received, torch.Tensor) and received.dtype == torch.float16  # cast by torch, once


def test_outputs_keep_the_models_structure_and_dtypes(optimized, monkeypatch):
    pipe, batches, _, package = optimized
    refuse_numpy(monkeypatch)
    original = pipe.scorer.__wrapped__
    for target in targets(package):
        model = package.get_model(target=target)
        for x in batches:
            with torch.no_grad():
                want = original(x, scale=2.0)
            got = model(x, scale=2.0)
            assert type(got) is dict and list(got) == ["logits", "positive"]
            assert got["logits"].dtype == torch.float32 and got["positive"].dtype == torch.int64  # the model's
            assert not got["logits"].is_inference()  # autograd may meet it in the user's code
            torch.testing.assert_close(got["logits"], want["logits"], atol=2e-2, rtol=2e-2)
            assert torch.equal(got["positive"], want["positive"])
        model.close()


def test_an_onnx_target_returns_torch_tensors_in_the_models_structure_and_types(optimized):
    pipe, batches, _, package = optimized
    onnx = [name for name, t in package.targets.items() if t.format == "onnx" and t.precision == "fp32"]
    assert onnx and package.targets[onnx[0]].correct
    model = package.get_model(target=onnx[0])
    original = pipe.scorer.__wrapped__
    for x in batches:
        got = model(x, scale=2.0)
        with torch.no_grad():
            want = original(x, scale=2.0)
        assert type(got) is dict and list(got) == ["logits", "positive"]
        assert got["logits"].dtype == torch.float32 and got["positive"].dtype == torch.int64
        assert got["logits"].device == x.device
        torch.testing.assert_close(got["logits"], want["logits"], atol=1e-4, rtol=1e-4)
        assert torch.equal(got["positive"], want["positive"])
    model.close()


def test_in_place_calls_are_matched_not_recorded_again(optimized, monkeypatch, capsys):
    pipe, batches, expected, _ = optimized
    assert nav.load_optimized(quiet=True)["scorer"] is not None
    refuse_numpy(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("the call's structure was recorded again")

    monkeypatch.setattr(calls, "record", refuse)
    monkeypatch.setattr(calls, "describe", refuse)
    for _ in range(3):
        for x, (logits, positive) in zip(batches, expected):
            got_logits, got_positive = pipe(x)
            torch.testing.assert_close(got_logits, logits, atol=2e-2, rtol=2e-2)
            assert torch.equal(got_positive, positive)
    assert pipe.scorer.fallbacks == 0
    # another constant is another call: the original code runs it, and says so once
    with torch.no_grad():
        other = pipe.scorer(batches[0], scale=3.0)
        want = pipe.scorer.__wrapped__(batches[0], scale=3.0)
    torch.testing.assert_close(other["logits"], want["logits"])
    assert pipe.scorer.fallbacks == 1 and "structure or constants" in pipe.scorer.fallback_reason
    assert "runs its original code" in capsys.readouterr().err


def test_cuda_graphs_asked_for_a_cpu_runner_say_why_and_calls_run_plainly(optimized, capsys):
    _, batches, _, package = optimized
    model = package.get_model(target=targets(package)[0], cuda_graphs=True)
    assert "CUDA graphs need a GPU" in model.cuda_graphs
    assert "runs without CUDA graphs" in capsys.readouterr().err
    assert model(batches[0], scale=2.0)["logits"].shape == (4, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_replay_one_graph_per_shape_with_the_plain_outputs(optimized):
    _, batches, _, package = optimized
    fp32 = targets(package)[0]
    plain = package.get_model(target=fp32, device="cuda")
    graphed = package.get_model(target=fp32, device="cuda", cuda_graphs=True)
    assert graphed.cuda_graphs == "on"
    for _ in range(3):
        for x in batches:
            x = x.cuda()
            want, got = plain(x, scale=2.0), graphed(x, scale=2.0)
            assert got["logits"].device == x.device
            torch.testing.assert_close(got["logits"], want["logits"])
            assert torch.equal(got["positive"], want["positive"])
    assert graphed._graphed.graphs == len(batches)  # one per shape, captured once


# -- the structure matcher, against recording ---------------------------------------------------------
CALLS = [
    ((torch.ones(2, 3),), {}),
    ((torch.ones(2, 3), torch.zeros(2, dtype=torch.long)), {"flag": True, "mode": "x"}),
    ((), {"input_ids": torch.ones(2, 4, dtype=torch.long), "extra": {"mask": torch.ones(2, 4)}}),
    (([torch.ones(1), torch.ones(1)], None, 3), {}),
    ((torch.ones(2, 4), torch.tensor(5.0)), {}),  # a timestep without dimensions
]


@pytest.mark.parametrize("recorded_args, recorded_kwargs", CALLS)
def test_the_binder_accepts_what_recording_calls_the_same_structure(recorded_args, recorded_kwargs):
    recorded, _ = calls.record(recorded_args, recorded_kwargs)
    binder = calls.Binder(recorded)
    for args, kwargs in CALLS + [((torch.ones(5, 3),), {}), ((torch.ones(2, 3),), {"flag": False})]:
        call, leaves = calls.record(args, kwargs)
        found = binder.leaves(args, kwargs)
        assert (found is not None) == call.same_structure(recorded)
        if found is not None:
            assert all(a is b or torch.equal(a, b) for a, b in zip(found, leaves)) and len(found) == len(leaves)
