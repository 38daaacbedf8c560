"""The files of an ONNX target, and how each is written and loaded (Polygraphy's ``loader.py``).
Every family that produces ONNX (navbuild_rules/torch, navbuild_rules/tensorflow, navbuild_rules/onnx_file) writes these
names through ``build.py``; ``runner.py`` and navbuild_rules/tensorrt load them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import TritonModel, tf32_enabled
from navbuild.runner import TensorSpec

onnx = lazy_import("onnx")
onnxruntime = lazy_import("onnxruntime")

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
PROTOBUF_LIMIT = 2_000_000_000  # a larger model keeps its weights in EXTERNAL_DATA_FILE
FIRST_IR_WITHOUT_INITIALIZER_INPUTS = 4  # from IR 4 on, an initializer need not be a graph input
OUTPUTS = (ONNX_FILE, EXTERNAL_DATA_FILE)  # what an ONNX target may write
# written beside model.onnx when its producer laid the graph's convolutions out channels-last
LAYOUT_FILE = "runtime.json"
CHANNELS_LAST = "channels_last"
# Triton's ONNX Runtime backend; external weights keep their file name beside model.onnx
ONNXRUNTIME = TritonModel(backend="onnxruntime", platform="onnxruntime_onnx",
                          files={ONNX_FILE: "model.onnx", EXTERNAL_DATA_FILE: EXTERNAL_DATA_FILE},
                          accelerators=("tensorrt",))


def load_model(path: Path) -> Any:
    """The ``onnx.ModelProto`` at ``path`` (external data, if any, loaded from beside it)."""
    return onnx.load(str(path))


def save_model(proto: Any, path: Path) -> None:
    """``proto`` written to ``path``; weights over protobuf's 2 GB limit go to EXTERNAL_DATA_FILE."""
    large = sum(len(t.raw_data) for t in proto.graph.initializer) > PROTOBUF_LIMIT
    onnx.save_model(proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=EXTERNAL_DATA_FILE, size_threshold=1024)


def drop_initializer_inputs(model: Any) -> bool:
    """Initializers listed as graph inputs (IR < 4 files) taken out of the inputs, the IR version
    raised to 4; whether anything changed. Runtimes read such inputs as overridable constants; a
    model served from a file has no caller that overrides them."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in initializers]
    if len(kept) == len(model.graph.input):
        return False
    copies = [type(value).FromString(value.SerializeToString()) for value in kept]
    del model.graph.input[:]
    model.graph.input.extend(copies)
    model.ir_version = max(model.ir_version, FIRST_IR_WITHOUT_INITIALIZER_INPUTS)
    return True


def write_layout(out_dir: Path, channels_last: bool) -> None:
    """``LAYOUT_FILE`` for a graph exported channels-last (nothing is written otherwise)."""
    if channels_last:
        (Path(out_dir) / LAYOUT_FILE).write_text(json.dumps({"memory_format": CHANNELS_LAST}, indent=2) + "\n")


def channels_last(artifact_dir: Path | None) -> bool:
    """Whether the ONNX target in ``artifact_dir`` was exported channels-last."""
    path = Path(artifact_dir) / LAYOUT_FILE if artifact_dir is not None else None
    if path is None or not path.is_file():
        return False
    return json.loads(path.read_text()).get("memory_format") == CHANNELS_LAST


def io_types(values: Any) -> dict[str, str]:
    """numpy type names of a graph's inputs or outputs (``proto.graph.input``)."""
    return {value.name: str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
            for value in values}


def opset_of(proto: Any) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def cuda_provider_options(precision: str) -> dict[str, str]:
    """Options of ONNX Runtime's CUDA execution provider for a target of ``precision``: TF32, which the
    provider turns on by default, off except for ``tf32``."""
    return {"use_tf32": "1" if tf32_enabled(precision) else "0"}


# ONNX Runtime's type names -> numpy's
NUMPY_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(bfloat16)": "bfloat16", "tensor(int64)": "int64", "tensor(int32)": "int32",
               "tensor(int16)": "int16", "tensor(int8)": "int8", "tensor(uint64)": "uint64",
               "tensor(uint32)": "uint32", "tensor(uint16)": "uint16", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool"}


def input_specs(session: Any) -> dict[str, TensorSpec]:
    """What an ONNX Runtime session's graph takes per input (``Runner.input_specs``): its type, and
    its shape with None for a named or unknown axis."""
    return {value.name: TensorSpec(NUMPY_TYPES.get(value.type),
                                   tuple(d if isinstance(d, int) and d >= 0 else None for d in value.shape))
            for value in session.get_inputs()}


def inference_session(path: Path, providers: list[Any]) -> Any:
    """An ONNX Runtime session for ``path`` on ``providers``, logging errors only (the CPU provider's
    cast warnings are expected for fp16 graphs)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=providers)
