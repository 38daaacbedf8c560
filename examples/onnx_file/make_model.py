"""Writes model.onnx, the example ONNX file (run it again to regenerate; the bytes are fixed).

A small image classifier written with onnx.helper, the way an exported file arrives from elsewhere:
Conv + Relu, global average pooling, a Gemm head. It also carries what exporters often leave behind
and ``onnx-slim`` removes: an Identity, and a scale computed from two constants at run time.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(12)
    weights = {
        "conv_w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "conv_b": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "fc_w": (rng.standard_normal((10, 8)) * 0.3).astype(np.float32),
        "fc_b": (rng.standard_normal(10) * 0.1).astype(np.float32),
        "half": np.array(0.5, np.float32),
        "two": np.array(2.0, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Identity", ["relu"], ["relu_copy"]),
        helper.make_node("Mul", ["half", "two"], ["one"]),  # constant: folded by onnx-slim
        helper.make_node("Mul", ["relu_copy", "one"], ["scaled"]),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "onnx_file_example",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_model.py")
    model.ir_version = 8  # what ONNX Runtime and TensorRT of the last years read
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    onnx.save(build(), str(HERE / "model.onnx"))
