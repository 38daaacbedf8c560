"""File names of the onnx_file family, and how the source file is read (Polygraphy's ``loader.py``).

The model's ``entry`` is the path of an ONNX file. Its targets are ONNX files too, written and run
exactly as navbuild_rules/onnx's: the names, the Triton mapping and the ONNX Runtime session come from
``navbuild_rules.onnx.loader``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild_rules.onnx.loader import ONNX_FILE, ONNXRUNTIME, OUTPUTS, inference_session, load_model

onnx = lazy_import("onnx")

FRAMEWORK = "onnx"
REFERENCE_FILE = "reference.tensors"

__all__ = ["FRAMEWORK", "REFERENCE_FILE", "ONNX_FILE", "ONNXRUNTIME", "OUTPUTS", "source_file", "load_source",
           "source_session", "graph_inputs", "graph_outputs", "load_model"]


def source_file(model: ModelSpec) -> Path:
    """The ONNX file that the model's ``entry`` names."""
    path = model.load_entry()
    if not isinstance(path, Path) or path.suffix != ".onnx" or not path.is_file():
        raise ValueError(f"model {model.name}: entry {model.entry!r} is not an ONNX file (framework "
                         f"{FRAMEWORK!r} reads the path of a .onnx file)")
    return path


def load_source(model: ModelSpec) -> Any:
    """The source file's ModelProto (external data, if any, read from beside it)."""
    return load_model(source_file(model))


def source_session(model: ModelSpec) -> Any:
    """ONNX Runtime on the CPU over the source file itself: what the reference is computed with."""
    return inference_session(source_file(model), ["CPUExecutionProvider"])


def graph_inputs(proto: Any) -> list[str]:
    """The graph's real inputs (older files also list their initializers as inputs)."""
    initializers = {tensor.name for tensor in proto.graph.initializer}
    return [value.name for value in proto.graph.input if value.name not in initializers]


def graph_outputs(proto: Any) -> list[str]:
    return [value.name for value in proto.graph.output]
