"""Issue 27: every family's runner takes framework tensors through ``Runner.run`` and returns its
own, which torch reads through DLPack: ONNX Runtime (on the CPU a torch tensor is a numpy view of
the same memory), JAX (a torch tensor shared through DLPack, JAX arrays out) and TensorFlow (in a
process of its own: TensorFlow in this one would break a later import of torch's compiler). The
torch family's path is tests/api/test_device_resident.py's.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from navbuild.rule import ModelSpec
from navbuild.tensors import to_torch

REPO = Path(__file__).resolve().parents[2]


def onnx_linear(folder: Path, dtype: str = "float32") -> Path:
    """``y = x @ w + b`` as model.onnx, made with onnx's helpers (no exporter)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    kind = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(dtype), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(dtype), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", kind, ["batch", 4])], [helper.make_tensor_value_info("y", kind, ["batch", 3])],
        initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    return folder


def spec(tmp_path: Path, framework: str, entry: str = "model.py:build", **fields) -> ModelSpec:
    return ModelSpec(name="m", framework=framework, entry=entry, root=tmp_path, inputs=("x",), **fields)


def test_onnxruntime_reads_a_torch_tensor_in_place_and_returns_its_own_arrays(tmp_path):
    pytest.importorskip("onnxruntime")
    from navbuild_rules.onnx.runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(onnx_linear(tmp_path / "fp32"), spec(tmp_path, "onnx", "model.onnx")).activate()
    x = torch.randn(5, 4)
    prepared = runner.prepare({"x": x})
    assert np.shares_memory(prepared["x"], x.numpy())  # a view of the caller's tensor, no copy
    out = runner.run({"x": x})
    assert isinstance(out["y"], np.ndarray)
    y = to_torch(out["y"])
    assert np.shares_memory(y.numpy(), out["y"])  # torch shares ONNX Runtime's output
    want = x.numpy() @ _initializer(tmp_path / "fp32", "w") + _initializer(tmp_path / "fp32", "b")
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    # an fp16 graph: run returns its float16, infer the host's float32; a float32 tensor is cast first
    half = OnnxRuntimeRunner(onnx_linear(tmp_path / "fp16", "float16"), spec(tmp_path, "onnx", "model.onnx"),
                             precision="fp16").activate()
    assert half.run({"x": x})["y"].dtype == np.float16 and half.infer({"x": x.numpy()})["y"].dtype == np.float32


def _initializer(folder: Path, name: str) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(folder / "model.onnx")
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


JAX_MODEL = '''
import numpy as np

def apply(params, x):
    return {"y": x @ params["w"], "norm": (x * x).sum(axis=1)}

def build():
    return apply, {"w": np.arange(12, dtype=np.float32).reshape(4, 3) / 10}
'''


def test_jax_takes_a_torch_tensor_through_dlpack_and_torch_reads_its_arrays(tmp_path):
    jax = pytest.importorskip("jax")
    from navbuild_rules.jax.runner import JaxJitRunner

    (tmp_path / "model.py").write_text(JAX_MODEL)
    runner = JaxJitRunner(None, spec(tmp_path, "jax", outputs=("y", "norm"))).activate()
    x = torch.randn(5, 4)
    out = runner.run({"x": x})
    assert all(isinstance(value, jax.Array) for value in out.values())
    y = to_torch(out["y"])  # through DLPack, on the device JAX put it
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    w = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 10
    torch.testing.assert_close(y, x @ w)
    torch.testing.assert_close(to_torch(out["norm"]), (x * x).sum(1))


TF_SCRIPT = '''
import json, sys, numpy as np, tensorflow as tf, torch
from pathlib import Path
from navbuild.rule import ModelSpec
from navbuild.tensors import to_torch
from navbuild_rules.tensorflow.runner import SavedModelRunner

folder = Path(sys.argv[1])
w = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)

class Linear(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.matmul(x, w)}

module = Linear()
tf.saved_model.save(module, str(folder / "savedmodel"), signatures={"serving_default": module.serve})
spec = ModelSpec(name="m", framework="tensorflow", entry="m.py:f", root=folder, inputs=("x",))
runner = SavedModelRunner(folder, spec).activate()
x = torch.randn(5, 4)
out = runner.run({"x": x})
y = to_torch(out["y"])
expected = x @ (torch.arange(12, dtype=torch.float32).reshape(4, 3) / 10)
print(json.dumps({"type": type(out["y"]).__module__, "torch": type(y).__name__,
                  "close": bool(torch.allclose(y, expected, atol=1e-5))}))
'''


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_tensorflow_takes_a_torch_tensor_and_torch_reads_its_outputs(tmp_path):
    script = tmp_path / "tf_native.py"
    script.write_text(textwrap.dedent(TF_SCRIPT))
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["type"].startswith("tensorflow") and found["torch"] == "Tensor" and found["close"]


# -- the torch family: the caller's tensors reach the module, torch tensors come back -------------------
TORCH_RULES = ("torch", "torchscript-trace", "torch-export")


@pytest.fixture(scope="module")
def tricky(tmp_path_factory):
    from tests.rules.conftest import reference_outputs, tricky_model, tricky_samples

    folder = tmp_path_factory.mktemp("native")
    spec = tricky_model(folder / "tricky")
    samples = tricky_samples()
    return folder, spec, samples, reference_outputs(folder / "ref", spec, samples)


def no_numpy(monkeypatch) -> None:
    """Every way from a torch tensor to numpy on a runner's path raises."""
    from navbuild import runner, tensors

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor went through numpy")

    monkeypatch.setattr(tensors, "to_numpy", refuse)
    monkeypatch.setattr(runner, "host_array", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch, "from_numpy", refuse)


class Recorder:
    """Stands for a loaded torch module: records the tensors it is called with."""

    def __init__(self, module) -> None:
        self.module, self.calls = module, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.module(*args, **kwargs)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("rule", TORCH_RULES)
def test_a_torch_runner_receives_the_callers_tensors_and_returns_torch_tensors(tricky, monkeypatch, rule, precision,
                                                                              device):
    from tests.rules.conftest import TOLERANCES, build, context, runner_for

    folder, spec, samples, reference = tricky
    ctx = context(folder / f"{rule}-{precision}-{device}", spec, samples, precision=precision, device=device)
    build(rule, ctx)
    runner = runner_for(rule, ctx).activate()
    recorder = runner._module = Recorder(runner._module)
    feeds = [{name: torch.from_numpy(value).to(device) for name, value in sample.items()} for sample in samples]
    no_numpy(monkeypatch)  # on a GPU too: a CUDA tensor that visited the host would go through numpy
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    atol, rtol = TOLERANCES[precision]
    for feed, want in zip(feeds, reference):
        out = runner.run(feed)
        received = list(recorder.calls[-1][0]) + list(recorder.calls[-1][1].values())
        assert all(isinstance(tensor, torch.Tensor) and tensor.dtype == dtype and tensor.device.type == device
                   for tensor in received)
        if precision == "fp32":  # nothing to cast: the very tensors the caller passed
            assert {id(tensor) for tensor in received} == {id(tensor) for tensor in feed.values()}
        assert list(out) == list(want)  # the reference's output names, in its order
        for name, tensor in out.items():
            assert isinstance(tensor, torch.Tensor) and tensor.dtype == dtype, name  # the artifact's own type
            assert tensor.device.type == device, name  # on the runner's device
            torch.testing.assert_close(tensor.float().cpu(), torch.tensor(want[name]), atol=atol, rtol=rtol)
    runner.deactivate()


def test_the_feed_check_runs_once_per_input_signature(tricky, monkeypatch):
    from tests.rules.conftest import build, context, runner_for

    folder, spec, samples, _ = tricky
    ctx = context(folder / "plan", spec, samples)
    build("torchscript-trace", ctx)
    runner = runner_for("torchscript-trace", ctx).activate()
    feed = {name: torch.from_numpy(value) for name, value in samples[1].items()}
    checked = []
    original = runner._feed_plan

    def counting(feed):
        checked.append(sorted(feed))
        return original(feed)

    monkeypatch.setattr(runner, "_feed_plan", counting)
    first = runner.run(feed)
    for _ in range(3):
        again = runner.run({name: value.clone() for name, value in feed.items()})
    assert len(checked) == 1  # the same names, types and shapes: decided once
    assert all(torch.equal(first[name], again[name]) for name in first)
    runner.run({name: value[:1] for name, value in feed.items()})  # another batch: checked again
    assert len(checked) == 2
    from navbuild.runner import RunnerError

    with pytest.raises(RunnerError, match="do not match the model's inputs"):  # nor hides a bad feed
        runner.run({"x": feed["x"], "masks": feed["mask"]})
    runner.deactivate()
