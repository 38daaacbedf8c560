"""Byte-reproducible ONNX models: debug text removed, nothing else touched.

Measured with torch 2.13 on CPU, exporting the same model from two checkout folders:
- the TorchScript-based exporter (``dynamo=False``) writes identical bytes; it writes no doc
  strings unless asked (``verbose``), and its node names come from module attribute paths.
- the dynamo exporter writes node ``metadata_props`` (``pkg.torch.onnx.stack_trace`` with absolute
  paths and line numbers, ``pkg.torch.onnx.class_hierarchy`` with the path-dependent name of the
  model's module, ``pkg.torch.onnx.name_scopes``...) and doc strings.

So every ``doc_string`` and ``metadata_props`` in the model (graph, nodes, functions, values,
subgraphs) is cleared. Protobuf serializes the same message to the same bytes.
"""
from __future__ import annotations

from typing import Any

DEBUG_FIELDS = ("doc_string", "metadata_props")


def strip_debug_info(message: Any) -> None:
    """Clear doc strings and metadata properties of a protobuf message and everything inside it."""
    for field, value in message.ListFields():
        if field.name in DEBUG_FIELDS:
            message.ClearField(field.name)
        elif field.type == field.TYPE_MESSAGE:
            for item in [value] if hasattr(value, "ListFields") else value:  # one message or a list
                strip_debug_info(item)
