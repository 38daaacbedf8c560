"""An ONNX file read as data (a protobuf, nothing run) for what would reach outside the model.

ONNX Runtime reads a tensor stored as external data from the path its ``location`` names, relative
to the model's folder: ``../../home/user/.ssh/id_rsa`` or an absolute path would be read, and its
bytes served as weights. And an operator of a domain ONNX Runtime does not define needs a custom
operator library. So a file that arrives from elsewhere (a package) is refused when a tensor names
external data other than a file of the artifact itself, or a node (in the graph, a subgraph or a
function) uses a domain that is neither a standard one nor a function the model defines.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from navbuild.lazy import lazy_import

from navbuild_rules.onnx.loader import ONNX_FILE

onnx = lazy_import("onnx")

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"})


def scan_onnx(folder: Path) -> str | None:
    folder = Path(folder)
    try:
        proto = onnx.load(str(folder / ONNX_FILE), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        return f"{ONNX_FILE} cannot be read as an ONNX model ({type(exc).__name__})"
    own_files = {path.name for path in folder.iterdir() if path.is_file() and path.name != ONNX_FILE}
    local = {function.domain for function in proto.functions}
    allowed = STANDARD_DOMAINS | local
    for entry in proto.opset_import:
        if entry.domain not in allowed:
            return f"{ONNX_FILE} imports operator domain {entry.domain!r}, which is not a standard one " \
                   f"(custom operators are refused)"
    graphs = [("graph", proto.graph)] + [(f"function {f.domain}.{f.name}", f) for f in proto.functions]
    for where, graph in graphs:
        for node_where, node in _nodes(graph, where):
            if node.domain not in allowed:
                return f"{ONNX_FILE}: {node_where} uses operator {node.domain}::{node.op_type}, which is not " \
                       f"of a standard domain (custom operators are refused)"
        for tensor_where, tensor in _tensors(graph, where):
            problem = _external_problem(tensor, own_files)
            if problem:
                return f"{ONNX_FILE}: {tensor_where} {problem}"
    return None


def _nodes(graph: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every node of a graph or function, subgraphs (If, Loop, Scan) included."""
    for node in graph.node:
        here = f"{where}, node {node.name or node.op_type}"
        yield here, node
        for attribute in node.attribute:
            for subgraph in _subgraphs(attribute):
                yield from _nodes(subgraph, f"{here}.{attribute.name}")


def _subgraphs(attribute: Any) -> list[Any]:
    return ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)


def _tensors(graph: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every tensor a graph or function holds: initializers and attribute tensors, in subgraphs too."""
    for tensor in getattr(graph, "initializer", ()):
        yield f"{where}, initializer {tensor.name}", tensor
    for sparse in getattr(graph, "sparse_initializer", ()):
        yield f"{where}, sparse initializer {sparse.values.name}", sparse.values
        yield f"{where}, sparse initializer {sparse.values.name}", sparse.indices
    for node in graph.node:
        here = f"{where}, node {node.name or node.op_type}"
        for attribute in node.attribute:
            tensors = ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
            for sparse in ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []) + \
                    list(attribute.sparse_tensors):
                tensors += [sparse.values, sparse.indices]
            for tensor in tensors:
                yield f"{here}.{attribute.name}", tensor
            for subgraph in _subgraphs(attribute):
                yield from _tensors(subgraph, f"{here}.{attribute.name}")


def _external_problem(tensor: Any, own_files: set[str]) -> str | None:
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    location = next((entry.value for entry in tensor.external_data if entry.key == "location"), None)
    if location is None or location not in own_files or "/" in location or "\\" in location:
        return (f"keeps its data in {location!r}, which is not a file of the artifact (ONNX Runtime would "
                f"read it)")
    return None
