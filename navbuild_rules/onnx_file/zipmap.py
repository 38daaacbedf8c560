"""Outputs that are not tensors: ZipMap's sequence of maps, read as the tensor it was made from.

A classifier converted by skl2onnx ends, by default, in a ZipMap: its ``output_probability`` is a
sequence of maps class label -> probability, one map per row, which neither a tensor comparison,
Triton nor TensorRT takes. navbuild reads such an output as the ZipMap's input, the probabilities
tensor ``[rows, classes]`` with its columns in the ZipMap's label order (what skl2onnx writes with
``options={"zipmap": False}``):
- the reference runs the file as it is and turns each list of maps into that tensor (``dense``);
- the ``onnx`` target leaves the ZipMap out (``without_zipmaps``): the node that computed the
  probabilities writes the output, so every later target, the checks and the deployments see the
  tensor.
Any other output that is not a tensor (a sequence of tensors, a map) is refused with its name
(``refuse_other_kinds``).
"""
from __future__ import annotations

from typing import Any, Sequence

from navbuild.lazy import lazy_import

np = lazy_import("numpy")
onnx = lazy_import("onnx")

ZIPMAP = ("ai.onnx.ml", "ZipMap")


def zipmaps(proto: Any) -> dict[str, tuple[Any, list[Any]]]:
    """Graph output name -> (the ZipMap node writing it, its class labels in column order)."""
    outputs = {value.name for value in proto.graph.output}
    found = {}
    for node in proto.graph.node:
        if (node.domain, node.op_type) == ZIPMAP and node.output[0] in outputs:
            found[node.output[0]] = (node, _labels(node))
    return found


def refuse_other_kinds(model_name: str, proto: Any) -> None:
    """ValueError naming every graph output that is neither a tensor nor a ZipMap's output."""
    read_as_tensors = set(zipmaps(proto))
    others = [(value.name, _type_text(value.type)) for value in proto.graph.output
              if value.type.WhichOneof("value") != "tensor_type" and value.name not in read_as_tensors]
    if others:
        listed = ", ".join(f"{name} ({kind})" for name, kind in others)
        raise ValueError(f"model {model_name}: output{'s' if len(others) > 1 else ''} {listed} of the ONNX file "
                         f"{'are' if len(others) > 1 else 'is'} not a tensor; navbuild checks and deploys tensor "
                         f"outputs only (a ZipMap's sequence of maps is read as its probabilities). Export the "
                         f"model with tensor outputs")


def dense(value: Any, labels: Sequence[Any]) -> Any:
    """A ZipMap's result (a list of maps label -> probability) as a float32 array ``[rows, classes]``
    in ``labels`` order; anything else unchanged."""
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        return value
    return np.array([[row[label] for label in labels] for row in value], dtype=np.float32).reshape(len(value),
                                                                                                  len(labels))


def without_zipmaps(proto: Any) -> list[str]:
    """Every ZipMap at a graph output taken out of ``proto``: the node that wrote its probabilities
    writes the output itself, declared a float tensor ``[rows, classes]``; the outputs changed."""
    found = zipmaps(proto)
    for name, (node, labels) in found.items():
        probabilities = node.input[0]
        rows = _rows_dim(proto, probabilities)
        if _renamable(proto, probabilities):
            _remove_node(proto.graph, node)
            _rename(proto.graph, probabilities, name)
        else:  # a graph input or output itself: an Identity carries it to the output
            node.CopyFrom(onnx.helper.make_node("Identity", [probabilities], [name], name=node.name))
        output = next(value for value in proto.graph.output if value.name == name)
        output.CopyFrom(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [rows, len(labels)]))
    return sorted(found)


def _renamable(proto: Any, name: str) -> bool:
    graph = proto.graph
    fixed = {value.name for value in [*graph.input, *graph.output]} | {tensor.name for tensor in graph.initializer}
    return name not in fixed


def _remove_node(graph: Any, node: Any) -> None:
    kept = [type(other).FromString(other.SerializeToString()) for other in graph.node if other is not node]
    del graph.node[:]
    graph.node.extend(kept)


def _rename(graph: Any, old: str, new: str) -> None:
    """Value ``old`` called ``new`` wherever the graph's nodes and value infos name it."""
    for node in graph.node:
        node.input[:] = [new if item == old else item for item in node.input]
        node.output[:] = [new if item == old else item for item in node.output]
    for value in graph.value_info:
        if value.name == old:
            value.name = new


def _labels(node: Any) -> list[Any]:
    for attribute in node.attribute:
        if attribute.name == "classlabels_int64s":
            return [int(label) for label in attribute.ints]
        if attribute.name == "classlabels_strings":
            return [label.decode() for label in attribute.strings]
    raise ValueError(f"ZipMap node {node.name!r} has no class labels")


def _rows_dim(proto: Any, name: str) -> Any:
    """The first dimension of value ``name`` as shape inference sees it (a name, a size or None)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.name == name and value.type.tensor_type.shape.dim:
            dim = value.type.tensor_type.shape.dim[0]
            return dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else None)
    return None


def _type_text(value_type: Any) -> str:
    kind = value_type.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_element(value_type.tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({_type_text(value_type.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({_element(value_type.map_type.key_type)}, {_type_text(value_type.map_type.value_type)})"
    return kind or "unknown"


def _element(data_type: int) -> str:
    return onnx.TensorProto.DataType.Name(data_type).lower()
