"""ONNX files as people have them, written for the tests (nothing downloaded):

- ``lr.onnx``, ``rf.onnx``: scikit-learn's LogisticRegression and RandomForestClassifier on iris,
  converted by skl2onnx with its defaults (a ZipMap output: a sequence of maps);
- ``squeeze9.onnx``: a SqueezeNet-like CNN (a fire module) written with onnx.helper at opset 9 and IR
  version 3, as old exporters wrote them: every initializer also listed as a graph input;
- ``add.onnx``: onnx's own shipped test model ``pytorch-operator/test_operator_add_broadcast``
  (float64 inputs named "0" and "1" of shapes [2, 3] and [3]: no batch dimension), upgraded from
  opset 6 with onnx's version converter, as ONNX Runtime asks for files older than opset 7;
- ``expand.onnx``: onnx's ``simple/test_expand_shape_model1`` as shipped (opset 9; a float32 and an
  int64 input of unrelated shapes);
- ``ints.onnx``: ``pytorch-operator/test_operator_non_float_params`` upgraded the same way (int64
  input "0", its second operand an initializer also listed as an input).

``SAMPLES`` is the samples module of the project; the shipped test models are fed onnx's own test
inputs, and ``expected(name)`` gives onnx's expected outputs for them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHIPPED = {"add": "pytorch-operator/test_operator_add_broadcast", "expand": "simple/test_expand_shape_model1",
           "ints": "pytorch-operator/test_operator_non_float_params"}
UPGRADE_TO = 13  # what onnx.version_converter writes for the opset-6 files

SAMPLES = '''
"""Samples of the ONNX-file models: iris-like rows, images, and onnx's own test inputs."""
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def iris():
    rng = np.random.default_rng(0)
    return [{"X": (rng.random((batch, 4)) * 6).astype(np.float32)} for batch in (1, 3)]


def images():
    rng = np.random.default_rng(0)
    return [{"data": rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)} for batch in (1, 2)]


def shipped(test, names):
    """onnx's test inputs of ``test``, twice (a no-batch model's samples all have one shape)."""
    folder = DATA / test / "test_data_set_0"
    arrays = [numpy_helper.to_array(onnx.load_tensor(str(folder / f"input_{i}.pb"))) for i in range(len(names))]
    sample = dict(zip(names, arrays))
    return [sample, {name: array.copy() for name, array in sample.items()}]


def add():
    return shipped("pytorch-operator/test_operator_add_broadcast", ["0", "1"])


def expand():
    return shipped("simple/test_expand_shape_model1", ["X", "shape"])


def ints():
    return shipped("pytorch-operator/test_operator_non_float_params", ["0"])
'''


def onnx_data() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def expected(name: str) -> np.ndarray:
    """onnx's expected output of the shipped test model ``name`` on its test inputs."""
    import onnx
    from onnx import numpy_helper

    return numpy_helper.to_array(onnx.load_tensor(str(onnx_data() / SHIPPED[name] / "test_data_set_0" / "output_0.pb")))


def sklearn_classifier(kind: str):
    """skl2onnx's conversion (defaults: a ZipMap output) of a classifier fitted on iris."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    features, labels = load_iris(return_X_y=True)
    features = features.astype(np.float32)
    model = (LogisticRegression(max_iter=500) if kind == "lr"
             else RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0))
    return to_onnx(model.fit(features, labels), features[:1], target_opset={"": 17, "ai.onnx.ml": 3})


def squeeze_opset9():
    """Conv, a fire module (squeeze 1x1, expand 1x1 and 3x3, Concat), Dropout, pooling, a Reshape
    by an int64 initializer, Gemm and Softmax; opset 9, IR 3, initializers listed as inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    initializers = {"conv1_w_0": weight(8, 3, 3, 3), "conv1_b_0": weight(8), "squeeze_w": weight(4, 8, 1, 1),
                    "squeeze_b": weight(4), "expand1_w": weight(6, 4, 1, 1), "expand1_b": weight(6),
                    "expand3_w": weight(6, 4, 3, 3), "expand3_b": weight(6), "fc_w": weight(10, 12),
                    "fc_b": weight(10), "flat_shape": np.array([0, -1], np.int64)}
    node = helper.make_node
    nodes = [node("Conv", ["data", "conv1_w_0", "conv1_b_0"], ["conv1"], strides=[2, 2]),
             node("Relu", ["conv1"], ["relu1"]),
             node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[3, 3], strides=[2, 2]),
             node("Conv", ["pool1", "squeeze_w", "squeeze_b"], ["squeeze"]), node("Relu", ["squeeze"], ["squeezed"]),
             node("Conv", ["squeezed", "expand1_w", "expand1_b"], ["expand1"]), node("Relu", ["expand1"], ["e1"]),
             node("Conv", ["squeezed", "expand3_w", "expand3_b"], ["expand3"], pads=[1, 1, 1, 1]),
             node("Relu", ["expand3"], ["e3"]), node("Concat", ["e1", "e3"], ["fire"], axis=1),
             node("Dropout", ["fire"], ["dropped"], ratio=0.5), node("GlobalAveragePool", ["dropped"], ["pooled"]),
             node("Reshape", ["pooled", "flat_shape"], ["flat"]),
             node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
             node("Softmax", ["logits"], ["prob"], axis=1)]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 32, 32])]
    inputs += [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
               for name, value in initializers.items()]
    graph = helper.make_graph(nodes, "squeeze9", inputs, [helper.make_tensor_value_info("prob", TensorProto.FLOAT,
                                                                                        ["N", 10])],
                              [numpy_helper.from_array(value, name) for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="tests")
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def shipped_model(name: str, upgrade: bool):
    import onnx
    from onnx import version_converter

    model = onnx.load(str(onnx_data() / SHIPPED[name] / "model.onnx"))
    return version_converter.convert_version(model, UPGRADE_TO) if upgrade else model


def write_files(root: Path) -> None:
    """Every file above, and ``samples.py``, into ``root``."""
    import onnx

    models = {"lr": sklearn_classifier("lr"), "rf": sklearn_classifier("rf"), "squeeze9": squeeze_opset9(),
              "add": shipped_model("add", upgrade=True), "expand": shipped_model("expand", upgrade=False),
              "ints": shipped_model("ints", upgrade=True)}
    for name, model in models.items():
        onnx.save(model, str(root / f"{name}.onnx"))
    (root / "samples.py").write_text(SAMPLES)
