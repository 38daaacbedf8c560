"""fp32 -> fp16 conversion of an ONNX graph by onnxconverter-common, float32 inputs and outputs kept.

``onnxconverter_common.float16.convert_float_to_float16`` with ``keep_io_types=True``: float32
weights, constants and values become float16, and the graph's float inputs and outputs stay float32
behind casts, so callers keep feeding float32. Operators in ``op_block_list`` run in float32
between casts: the converter's own list (``DEFAULT_OP_BLOCK_LIST``: ops that need float32 operands
or have no float16 kernel), every ``ai.onnx.ml`` operator of the graph (classic ML runs in float32
only) and the random generators.

Four things make the conversion safe on files as people have them:
- initializers that older files (IR version < 4) also list as graph inputs are taken out of the
  inputs first (the IR version raised to 4, which allows that): otherwise the converter keeps their
  float32 declaration while their data becomes float16 ("Tensor element type mismatch");
- unnamed nodes get a name from their position: the converter names its casts after the nodes;
- a Constant's ``value_float(s)`` (float32 by definition, which the converter leaves alone while
  declaring the value float16) becomes the same numbers as a ``value`` tensor, which it converts;
- the converted graph must load in ONNX Runtime (CPU provider), else the build fails with ONNX
  Runtime's reason rather than writing a graph that only fails at its check.

A graph where nothing computes in float16 (every float op blocked, as in a scikit-learn model, or
no float32 tensor at all, a float64 model) is not a float16 model: ``NothingToConvert`` says so and
the target is skipped with that reason. Converting the same graph twice gives the same bytes.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from navbuild.lazy import lazy_import
from navbuild_rules.onnx.loader import PROTOBUF_LIMIT, drop_initializer_inputs

np = lazy_import("numpy")
onnx = lazy_import("onnx")
onnxruntime = lazy_import("onnxruntime")

ML_DOMAIN = "ai.onnx.ml"
# besides the converter's defaults: generators whose dtype attribute the converter does not change
ALSO_BLOCKED = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial"})


class NothingToConvert(ValueError):
    """The graph has no float32 computation left to run in float16."""


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of ``model`` (an onnx.ModelProto) with float32 inputs and outputs; raises
    ``NothingToConvert`` when nothing in it would compute in float16."""
    from onnxconverter_common import float16

    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    drop_initializer_inputs(prepared)
    _name_unnamed_nodes(prepared.graph)
    _constant_floats_as_tensors(prepared.graph)
    converted = float16.convert_float_to_float16(prepared, keep_io_types=True, op_block_list=blocked_ops(prepared))
    _drop_stale_value_info(converted.graph)
    if not _computes_in_fp16(converted.graph):
        raise NothingToConvert(_nothing_to_convert(model))
    return converted


def blocked_ops(model: Any) -> list[str]:
    """Operator types that stay float32: the converter's defaults, the graph's ai.onnx.ml operators
    and the random generators (sorted: the converter's output does not depend on set order)."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    ml_ops = {node.op_type for node in _all_nodes(model.graph) if node.domain == ML_DOMAIN}
    return sorted(set(DEFAULT_OP_BLOCK_LIST) | ALSO_BLOCKED | ml_ops)


def check_loads(model: Any) -> None:
    """ONNX Runtime's CPU provider loads ``model``, else RuntimeError with its reason. Without
    onnxruntime installed, or past protobuf's 2 GB (no bytes to hand over), nothing is checked here:
    the target's check loads the written file anyway."""
    if importlib.util.find_spec("onnxruntime") is None or model.ByteSize() > PROTOBUF_LIMIT:
        return
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RuntimeError(f"ONNX Runtime refuses the float16 graph: {exc}") from exc


def _name_unnamed_nodes(graph: Any) -> None:
    """Every node of ``graph`` (and of its subgraphs) named; a name from the op type and position."""
    taken = {node.name for node in _all_nodes(graph) if node.name}
    for index, node in enumerate(_all_nodes(graph)):
        if not node.name:
            name, suffix = f"{node.op_type}_{index}", 1
            while name in taken:
                name, suffix = f"{node.op_type}_{index}_{suffix}", suffix + 1
            node.name = name
            taken.add(name)


def _constant_floats_as_tensors(graph: Any) -> None:
    """Constant nodes' ``value_float``/``value_floats`` rewritten as a float32 ``value`` tensor."""
    from onnx import numpy_helper

    for node in _all_nodes(graph):
        if node.op_type != "Constant":
            continue
        for index, attribute in enumerate(node.attribute):
            if attribute.name in ("value_float", "value_floats"):
                values = attribute.f if attribute.name == "value_float" else list(attribute.floats)
                tensor = numpy_helper.from_array(np.asarray(values, dtype=np.float32))
                node.attribute[index].CopyFrom(onnx.helper.make_attribute("value", tensor))


def _computes_in_fp16(graph: Any) -> bool:
    """Whether an operator of ``graph`` other than a cast reads or writes float16."""
    fp16 = onnx.TensorProto.FLOAT16
    nodes = _all_nodes(graph)
    names = {tensor.name for tensor in graph.initializer if tensor.data_type == fp16}
    names |= {value.name for value in graph.value_info if value.type.tensor_type.elem_type == fp16}
    for node in nodes:
        for attribute in node.attribute:
            casts_to_fp16 = node.op_type == "Cast" and attribute.name == "to" and attribute.i == fp16
            holds_fp16 = attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == fp16
            if casts_to_fp16 or holds_fp16:
                names.update(node.output)
    return any(name in names for node in nodes if node.op_type != "Cast" for name in [*node.input, *node.output])


def _drop_stale_value_info(graph: Any) -> None:
    """value_info of names no node reads or writes any more (the converter leaves them behind)."""
    used = {name for node in graph.node for name in [*node.input, *node.output]}
    kept = [value for value in graph.value_info if value.name in used]
    if len(kept) != len(graph.value_info):
        copies = [type(value).FromString(value.SerializeToString()) for value in kept]
        del graph.value_info[:]
        graph.value_info.extend(copies)


def _nothing_to_convert(model: Any) -> str:
    ml_ops = sorted({node.op_type for node in _all_nodes(model.graph) if node.domain == ML_DOMAIN})
    if ml_ops:
        why = f"its operators ({', '.join(ml_ops)}) are ai.onnx.ml ones, which run in float32 only"
    else:
        why = "it has no float32 computation that float16 could replace (its inputs and weights are of other types)"
    return f"float16 does not apply: {why}; the fp32 target is the model"


def _all_nodes(graph: Any) -> list[Any]:
    """The nodes of ``graph`` and of every subgraph (If, Loop, Scan bodies), depth first."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes.extend(_all_nodes(attribute.g))
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    nodes.extend(_all_nodes(subgraph))
    return nodes
