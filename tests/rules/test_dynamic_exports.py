"""Exports of a model with a dynamic sequence axis (issue 19): torch.export with bounded Dims names
torch's suggested bound in navbuild.toml's terms; a trace that fixed the sequence length fails at
build time instead of serving wrong values; ONNX names the output axes that follow the sequence."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.rules.conftest import build, context, write_model

torch = pytest.importorskip("torch")

# positions from a table of 16: torch.export proves seq <= 16
POSITIONS = """
import torch


class Positions(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 8)
        self.position = torch.nn.Parameter(torch.randn(16, 8))

    def forward(self, tokens):
        return self.embed(tokens) + self.position[: tokens.shape[1]]


def build_model():
    return Positions().eval()
"""

# the mean over the sequence divides by a Python int: a trace records the example's length
MEAN = """
import torch


class Mean(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1) / int(x.shape[1])


def build_model():
    return Mean().eval()
"""


def tokens(*shapes: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"tokens": rng.integers(0, 50, shape).astype(np.int64)} for shape in shapes]


def test_export_past_the_model_s_range_names_the_bound_to_declare(tmp_path: Path) -> None:
    spec = write_model(tmp_path / "src", POSITIONS, name="positions", inputs=("tokens",))
    spec.dynamic_axes = {"tokens": {1: "seq"}}
    spec.axis_bounds = {"seq": {"max": 512}}
    with pytest.raises(RuntimeError) as failure:
        build("torch-export", context(tmp_path, spec, tokens((1, 8), (2, 12))))
    headline = str(failure.value).splitlines()[0]
    assert headline.startswith("model positions: torch.export.export failed:")
    assert 'torch.export found the model valid for a smaller range of seq (max = 16): ' \
           'dynamic_axes.tokens.1 = { name = "seq", max = 16 }' in headline
    spec.axis_bounds = {"seq": {"max": 16}}  # what it suggested: builds, and serves 16
    metadata = build("torch-export", context(tmp_path, spec, tokens((1, 8), (2, 12)), name="bounded"))
    assert metadata["checked_sizes"] == {"seq": 8}  # exported at 12 (the first sample of batch 2), run at 8
    program = torch.export.load(str(tmp_path / "bounded" / "out" / "model.pt2")).module()
    assert program(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 8)


def test_a_trace_that_fixed_the_length_fails_at_build_time(tmp_path: Path) -> None:
    spec = write_model(tmp_path / "src", MEAN, name="mean", inputs=("x",))
    spec.dynamic_axes = {"x": {1: "seq"}}
    samples = [{"x": np.ones((2, 4, 3), np.float32)}, {"x": np.ones((2, 6, 3), np.float32)}]
    with pytest.raises(RuntimeError) as failure:
        build("torchscript-trace", context(tmp_path, spec, samples))
    assert "the torch.jit.trace artifact gives output 0 of shape [2, 3] at seq = 6" in str(failure.value)
    assert "use torch-export or torchscript-script" in str(failure.value)
    metadata = build("torchscript-script", context(tmp_path, spec, samples, name="script"))
    assert metadata["checked_sizes"] == {"seq": 6}
    spec.dynamic_axes = {}  # undeclared, the trace is built (the samples' check catches it)
    build("torchscript-trace", context(tmp_path, spec, samples[:1], name="static"))


def test_onnx_names_the_output_axes_that_follow_the_sequence(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    spec = write_model(tmp_path / "src", POSITIONS, name="positions", inputs=("tokens",), outputs=("hidden",))
    spec.dynamic_axes = {"tokens": {1: "seq"}}
    build("onnx", context(tmp_path, spec, tokens((1, 8), (2, 12))))
    graph = onnx.load(str(tmp_path / "build" / "out" / "model.onnx")).graph
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*graph.input, *graph.output]}
    assert dims == {"tokens": ["batch", "seq"], "hidden": ["batch", "seq", 8]}


def test_an_axis_the_model_cannot_vary_is_named_at_build_time(tmp_path: Path) -> None:
    source = ("import torch\n\ndef build_model():\n    torch.manual_seed(0)\n"
              "    return torch.nn.Linear(16, 4).eval()\n")
    spec = write_model(tmp_path / "src", source, name="mlp", inputs=("x",))
    spec.dynamic_axes = {"x": {1: "features"}}  # one size in the samples: 15 is tried
    for fmt in ("torchscript-trace", "onnx"):
        with pytest.raises(RuntimeError) as failure:
            build(fmt, context(tmp_path, spec, [{"x": np.ones((2, 16), np.float32)}], name=fmt))
        assert str(failure.value).startswith("model mlp: the model itself fails at features = 15, a size its "
                                             "dynamic_axes allow: RuntimeError: mat1 and mat2"), fmt


def test_an_onnx_file_with_a_fixed_axis_declared_dynamic_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from navbuild.rule import ModelSpec

    path = tmp_path / "mean.onnx"
    example = torch.ones(2, 4, 3)
    torch.onnx.export(torch.nn.Flatten(), (example,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)  # axis 1 fixed at 4
    spec = ModelSpec(name="flat", framework="onnx", entry="mean.onnx", root=tmp_path, inputs=("x",),
                     max_batch_size=4, dynamic_axes={"x": {1: "seq"}})
    with pytest.raises(ValueError, match="input x has a fixed size 4 on axis 1 in mean.onnx, which dynamic_axes "
                                         "declares dynamic"):
        build("onnx", context(tmp_path, spec, [{"x": np.ones((2, 4, 3), np.float32)}]))
