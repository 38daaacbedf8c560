"""fp32 -> fp16 conversion of an ONNX graph, keeping float32 graph inputs and outputs.

Every float32 initializer, constant and cast becomes float16; the graph's float inputs are cast to
float16 where they enter and its float outputs back to float32 where they leave, so callers keep
feeding float32. Ops that need float32 operands (``KEEP_FP32``: sizes, scales, indices computed
in float) run in float32 between casts. ONNX Runtime's CPU provider casts around ops it has no
float16 kernel for, so the graph runs everywhere. Inserted nodes and values have names derived
from the tensors they cast, so the same graph always converts to the same bytes.
"""
from __future__ import annotations

from typing import Any, Iterable
from navbuild.lazy import lazy_import

np = lazy_import("numpy")
onnx = lazy_import("onnx")

KEEP_FP32 = frozenset({"Resize", "Upsample", "Range", "NonMaxSuppression", "RoiAlign", "TopK", "CumSum",
                       "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"})
FP16_MAX = 65504.0


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of ``model`` (an onnx.ModelProto) with float32 inputs and outputs."""
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    float_values = _float_values(onnx.shape_inference.infer_shapes(model).graph)
    names = _Names(_all_value_names(converted.graph))
    _convert_graph(converted.graph, float_values, names)
    _keep_float32_io(converted.graph, names)
    return converted


def _convert_graph(graph: Any, float_values: set[str], names: "_Names", subgraph: bool = False) -> None:
    for initializer in graph.initializer:
        if initializer.data_type == onnx.TensorProto.FLOAT:
            initializer.CopyFrom(_tensor_to_fp16(initializer))
    for value in [*graph.input, *graph.output] if subgraph else []:  # the main graph's stay float32
        _value_to_fp16(value)
    del graph.value_info[:]  # stale element types; runtimes infer them again
    nodes = []
    for node in graph.node:
        _convert_node(node, float_values, names)
        if node.op_type in KEEP_FP32:
            nodes.extend(_run_in_float32(node, float_values, names))
        else:
            nodes.append(node)
    _replace_nodes(graph, nodes)


def _convert_node(node: Any, float_values: set[str], names: "_Names") -> None:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == onnx.TensorProto.FLOAT:
            attribute.t.CopyFrom(_tensor_to_fp16(attribute.t))
        for subgraph in _subgraphs(attribute):
            _convert_graph(subgraph, float_values, names, subgraph=True)
    if node.op_type == "Cast":
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.FLOAT16
    if node.op_type == "Constant":
        _constant_floats_to_tensor(node)


def _constant_floats_to_tensor(node: Any) -> None:
    """``value_float(s)`` attributes are float32 by definition: turn them into fp16 tensors."""
    from onnx import numpy_helper

    for index, attribute in enumerate(node.attribute):
        if attribute.name in ("value_float", "value_floats"):
            values = attribute.f if attribute.name == "value_float" else list(attribute.floats)
            tensor = numpy_helper.from_array(np.asarray(values, dtype=np.float16))
            node.attribute[index].CopyFrom(onnx.helper.make_attribute("value", tensor))


def _run_in_float32(node: Any, float_values: set[str], names: "_Names") -> list[Any]:
    """``node`` between casts: its float inputs cast up to float32, its float outputs down to fp16."""
    before, after = [], []
    for index, name in enumerate(node.input):
        if name in float_values:
            cast = names.new(f"{name}_fp32")
            before.append(_cast(name, cast, onnx.TensorProto.FLOAT, names))
            node.input[index] = cast
    for index, name in enumerate(node.output):
        if name in float_values:
            produced = names.new(f"{name}_fp32")
            node.output[index] = produced
            after.append(_cast(produced, name, onnx.TensorProto.FLOAT16, names))
    return [*before, node, *after]


def _keep_float32_io(graph: Any, names: "_Names") -> None:
    """Float graph inputs and outputs stay float32 behind casts."""
    first, last = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            inner = names.new(f"{value.name}_fp16")
            _rename_uses(graph, value.name, inner)
            first.append(_cast(value.name, inner, onnx.TensorProto.FLOAT16, names))
    for value in graph.output:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            inner = names.new(f"{value.name}_fp16")
            _rename_uses(graph, value.name, inner)
            _rename_outputs(graph, value.name, inner)
            last.append(_cast(inner, value.name, onnx.TensorProto.FLOAT, names))
    _replace_nodes(graph, [*first, *graph.node, *last])


def _cast(source: str, target: str, to: int, names: "_Names") -> Any:
    return onnx.helper.make_node("Cast", [source], [target], name=names.new(f"Cast_{target}"), to=to)


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
        for attribute in node.attribute:  # subgraphs may read outer values by name
            for subgraph in _subgraphs(attribute):
                _rename_uses(subgraph, old, new)


def _rename_outputs(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new


def _replace_nodes(graph: Any, nodes: list[Any]) -> None:
    copies = [_copy(node) for node in nodes]
    del graph.node[:]
    graph.node.extend(copies)


def _copy(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _tensor_to_fp16(tensor: Any) -> Any:
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor)
    return numpy_helper.from_array(np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16), tensor.name)


def _value_to_fp16(value: Any) -> None:
    if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16


def _float_values(graph: Any) -> set[str]:
    """Names of every float32 value of the fp32 graph (subgraphs included)."""
    found = set()
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            found.add(value.name)
    found.update(t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in _subgraphs(attribute):
                found |= _float_values(subgraph)
    return found


def _subgraphs(attribute: Any) -> Iterable[Any]:
    if attribute.type == onnx.AttributeProto.GRAPH:
        return [attribute.g]
    if attribute.type == onnx.AttributeProto.GRAPHS:
        return list(attribute.graphs)
    return []


def _all_value_names(graph: Any) -> set[str]:
    names = {value.name for value in [*graph.input, *graph.output, *graph.value_info]}
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        names.add(node.name)
        for attribute in node.attribute:
            for subgraph in _subgraphs(attribute):
                names |= _all_value_names(subgraph)
    return names


class _Names:
    """Fresh, deterministic names: the wanted name, else with the first free numeric suffix."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)

    def new(self, wanted: str) -> str:
        name, index = wanted, 1
        while name in self.taken:
            name, index = f"{wanted}_{index}", index + 1
        self.taken.add(name)
        return name
