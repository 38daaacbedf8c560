"""Issue 23: the Runner base class checks every feed once (names, types, shapes against what the
artifact takes) and applies one conversion policy; runners only declare what their artifact takes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from navbuild.rule import ModelSpec
from navbuild.runner import Runner, RunnerError, TensorSpec


class Echo(Runner):
    """Returns its feed: what reaches ``infer_impl`` is what the base class made of the input."""

    name = "echo"

    def __init__(self, specs: dict[str, TensorSpec] | None, inputs: tuple[str, ...] = ("x", "ids")) -> None:
        super().__init__(None, ModelSpec(name="m", framework="toy", entry="m.py:f", root=Path("."), inputs=inputs))
        self.specs = specs

    def activate_impl(self) -> None:
        pass

    def input_specs_impl(self):
        return self.specs

    def infer_impl(self, feed):
        return feed


SPECS = {"x": TensorSpec("float32", (None, 3)), "ids": TensorSpec("int32", (None,))}


def feed(**changes):
    return {"x": np.ones((2, 3), np.float32), "ids": np.arange(2, dtype=np.int32), **changes}


def test_a_matching_feed_passes_unchanged():
    with Echo(SPECS) as runner:
        out = runner.infer(feed())
    assert out["x"].dtype == np.float32 and out["ids"].dtype == np.int32


@pytest.mark.parametrize("bad, message", [
    ({"y": np.ones((2, 3), np.float32)}, r"inputs \['ids', 'x', 'y'\] do not match the model's inputs \['ids', 'x'\]"),
    ({"x": np.ones((2, 4), np.float32)}, r"echo: input x has shape \[2, 4\], the artifact expects \[\?, 3\]"),
    ({"x": np.ones((2, 3, 1), np.float32)}, r"input x has shape \[2, 3, 1\], the artifact expects rank 2"),
    ({"x": np.ones((2, 3), np.int64)}, "input x is int64, the artifact expects float32"),
    ({"ids": np.array([0, 1 << 40])}, "input ids is int64, the artifact expects int32"),  # does not fit
    ({"ids": np.ones(2, np.float32)}, "input ids is float32, the artifact expects int32"),
])
def test_what_does_not_fit_is_refused_naming_the_input(bad, message):
    with Echo(SPECS) as runner:
        with pytest.raises(RunnerError, match=message):
            runner.infer(feed(**bad))
        with pytest.raises(RunnerError, match=message):
            runner.prepare(feed(**bad))  # the profiler's path is checked the same way


def test_floats_and_fitting_integers_are_cast_to_the_artifacts_types():
    with Echo(SPECS) as runner:
        out = runner.infer(feed(x=np.ones((2, 3), np.float64), ids=np.arange(2, dtype=np.int64)))
    assert out["x"].dtype == np.float32 and out["ids"].dtype == np.int32


def test_a_list_is_read_as_numpy_reads_it():
    with Echo(SPECS) as runner:
        out = runner.infer({"x": [[1.0, 2.0, 3.0]], "ids": [7]})
    assert out["x"].dtype == np.float32 and out["ids"].dtype == np.int32 and out["ids"].tolist() == [7]


def test_without_declared_specs_the_model_names_are_checked_and_the_float_type_applies():
    runner = Echo(None)
    runner.input_float_type = "float16"  # a torch artifact at fp16
    with runner:
        out = runner.run(feed())  # run: the runner's own outputs (infer widens float16 to float32)
        assert out["x"].dtype == np.float16 and out["ids"].dtype == np.int32  # integers stay as they are
        assert runner.infer(feed())["x"].dtype == np.float32
        with pytest.raises(RunnerError, match="do not match the model's inputs"):
            runner.infer({"x": np.ones((2, 3), np.float32)})


def test_types_and_shapes_are_read_from_the_tensor_itself():
    torch = pytest.importorskip("torch")
    with Echo(SPECS) as runner:
        out = runner.prepare({"x": torch.ones(2, 3, dtype=torch.float64), "ids": torch.arange(2)})
        assert out["x"].dtype == torch.float32 and out["ids"].dtype == torch.int32  # cast by torch, no numpy
        with pytest.raises(RunnerError, match=r"input x has shape \[2, 5\]"):
            runner.prepare({"x": torch.ones(2, 5), "ids": torch.arange(2)})
    runner = Echo(None)
    runner.input_float_type = "bfloat16"  # numpy has no bfloat16: the feed becomes a torch tensor
    with runner:
        assert runner.prepare(feed())["x"].dtype == torch.bfloat16
