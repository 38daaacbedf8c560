"""A model without a batch dimension (``max_batch_size = 0``, issue 20) that declares a dynamic axis
(issue 19): its first dimension keeps its size everywhere a shape is declared, while the declared
axis is -1 in the samples' manifest, the status and Triton's config.pbtxt."""
from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.conftest import Project

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime", reason="the ONNX file runs on ONNX Runtime")
pytest.importorskip("tritonclient", reason="config.pbtxt is written with tritonclient's schema")

CONFIG = """
[project]
name = "no-batch-seq"

[profile]
enabled = false

[models.double]
framework = "onnx"
entry = "double.onnx"
samples = "samples.py:rows"
max_batch_size = 0
[models.double.dynamic_axes]
x = { 1 = "seq" }
[models.double.targets]
formats = ["onnx"]
"""

SAMPLES = """
import numpy as np


def rows():
    return [{"x": np.arange(2 * n, dtype=np.float32).reshape(2, n)} for n in (3, 5)]
"""


def double_file() -> "onnx.ModelProto":
    """y = 2 x for x of shape [2, seq]: two rows, no batch, a symbolic length."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "seq"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_first_dimension_stays_and_the_declared_axis_is_minus_one(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    onnx.save(double_file(), str(root / "double.onnx"))
    (root / "samples.py").write_text(SAMPLES)
    (root / "navbuild.toml").write_text(CONFIG)
    project = Project(root)
    records = project.build("all")
    assert records["double:onnx.check"]["status"] == "built"

    from navbuild import tensors

    reference = tensors.load(project.out("double:reference") / "reference.tensors")
    assert [r["y"].shape for r in reference] == [(2, 3), (2, 5)]
    np.testing.assert_array_equal(reference[1]["y"], 2 * np.arange(10, dtype=np.float32).reshape(2, 5))

    from navbuild.deploy import status
    from navbuild.engine.project import open_project

    session = open_project(root / "navbuild.toml")
    try:
        model = status.collect(session)["models"]["double"]
        samples_manifest = session.current_manifest("double:samples")
    finally:
        session.close()
    assert model["inputs"] == [{"name": "x", "dtype": "float32", "shape": [2, -1]}]  # no -1 for a batch
    assert model["outputs"] == [{"name": "y", "dtype": "float32", "shape": [2, -1]}]  # follows seq
    assert samples_manifest["metadata"]["inputs"] == model["inputs"]

    repo = root / "model_repository"
    project.build("triton", "--repo", str(repo), "--target", "double:onnx")
    config = (repo / "double" / "config.pbtxt").read_text()
    assert "max_batch_size" not in config  # 0: no batching
    assert 'name: "x"\n  data_type: TYPE_FP32\n  dims: 2\n  dims: -1\n' in config
    assert 'name: "y"\n  data_type: TYPE_FP32\n  dims: 2\n  dims: -1\n' in config
